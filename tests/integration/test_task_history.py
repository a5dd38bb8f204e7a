"""An Agent's task history on the local cluster: `foundation tasks` across two members (pages,
filters, output formats, RBAC), the same list through people's door, and A2A's ListTasks
answering each person with what they may see."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import pytest
import yaml
from test_access import account, bind, token
from test_cli import CLI, running_agent
from test_door import API_AUDIENCE, CA, DOOR, as_person, bind_user, kubeconfig

from foundation_agent.runtime.peers import owner_of
from kube import Kube
from localcluster.layout import API_URL

pytestmark = pytest.mark.usefixtures("operator")


async def run(kube: Kube, config: str, *args: str) -> tuple[int, str, str]:
    done = await asyncio.create_subprocess_exec(
        CLI,
        "--kubeconfig",
        config,
        "-n",
        kube.ns,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(done.communicate(), 120)
    assert done.returncode is not None
    return done.returncode, out.decode(), err.decode()


async def test_an_agents_tasks_across_its_members_newest_first(
    kube: Kube, cluster: str, tmp_path: Path
) -> None:
    await running_agent(kube, "tally", "foundation_agent.agents:CounterAgent", replicas=2)
    # Six tasks, three on each member, one at a time so their order is known; one refused.
    for i in range(6):
        code, out, err = await run(
            kube,
            cluster,
            "send",
            "tally",
            "increment",
            "--input",
            json.dumps({"by": i}),
            "--id",
            f"h-{i}",
            "--member",
            str(i % 2),
            "--wait",
        )
        assert code == 0, err
    code, out, err = await run(kube, cluster, "tasks", "tally", "-o", "json")
    assert code == 0, err
    listed = json.loads(out)
    assert [t["id"] for t in listed["tasks"]] == [f"h-{i}" for i in reversed(range(6))]
    assert {t["member"] for t in listed["tasks"]} == {"tally-0", "tally-1"}
    assert listed["totalSize"] == 6 and listed["nextPageToken"] == ""
    newest = listed["tasks"][0]
    assert newest["input"] == {"by": 5} and newest["status"] == "succeeded"
    assert newest["sender"] and newest["durationMs"] >= 0
    # A page at a time: the table, and the token for the next page on stderr.
    code, out, err = await run(kube, cluster, "tasks", "tally", "--limit", "4")
    rows = out.splitlines()
    assert code == 0 and rows[0].split()[:4] == ["ID", "ACTION", "STATUS", "MEMBER"]
    assert [r.split()[0] for r in rows[1:]] == ["h-5", "h-4", "h-3", "h-2"]
    assert "4 of 6 shown" in err
    after = err.split("--page-token ")[1].split()[0]
    code, out, err = await run(
        kube, cluster, "tasks", "tally", "--limit", "4", "--page-token", after
    )
    assert [r.split()[0] for r in out.splitlines()[1:]] == ["h-1", "h-0"]
    code, out, _ = await run(kube, cluster, "tasks", "tally", "--all", "--limit", "2", "-o", "yaml")
    every = yaml.safe_load(out)["tasks"]
    assert [t["id"] for t in every] == [f"h-{i}" for i in reversed(range(6))]
    code, out, _ = await run(kube, cluster, "tasks", "tally", "--status", "failed", "-o", "json")
    assert json.loads(out)["tasks"] == []
    code, out, _ = await run(kube, cluster, "tasks", "tally", "--since", "1h", "-o", "wide")
    assert len(out.splitlines()) == 7 and "ATTEMPTS" in out.splitlines()[0]
    code, _, err = await run(kube, cluster, "tasks", "tally", "--status", "done")
    assert code == 2 and "status done is not a task status" in err
    # RBAC: a caller (create agents/tasks) may not list the Agent's tasks: the API server's own
    # words, exit 7.
    await account(kube, "caller")
    await bind(kube, "caller", "foundation-agent-caller")
    as_caller = kubeconfig(tmp_path / "caller", await token(kube, "caller", API_AUDIENCE))
    code, _, err = await run(kube, as_caller, "tasks", "tally")
    assert code == 7 and 'cannot get resource "agents/tasks"' in err


async def test_a2a_list_tasks_through_the_door_shows_each_person_what_they_may_see(
    kube: Kube,
) -> None:
    """rita (a reader and a caller) sees everyone's tasks across both members; alice (a
    caller) only the ones she sent; pages by token, 3.1.4's order and page sizes."""
    await running_agent(kube, "desk", "foundation_agent.agents:CounterAgent", replicas=2)
    await bind_user(kube, "alice", "foundation-agent-caller")
    await bind_user(kube, "rita", "foundation-agent-reader")
    await bind_user(kube, "rita", "foundation-agent-caller")
    base = f"{API_URL}{DOOR}/namespaces/{kube.ns}/agents/desk"
    async with httpx.AsyncClient(timeout=60, verify=ssl.create_default_context(cafile=CA)) as http:

        async def a2a(person: str, method: str, params: dict) -> dict:
            answer = await http.post(
                f"{base}/a2a/",
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                headers={**as_person(person), "A2A-Version": "1.0"},
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        for i, person in enumerate(["alice", "rita", "alice", "rita", "alice"]):
            message = {
                "role": "ROLE_USER",
                "messageId": f"a2a-{i}",
                "parts": [{"data": {"action": "increment", "input": {"by": 1}}}],
            }
            sent = await a2a(person, "SendMessage", {"message": message})
            assert "result" in sent, sent
            assert sent["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", sent
        everyone = await a2a("rita", "ListTasks", {"pageSize": 2})
        page = everyone["result"]
        assert page["totalSize"] == 5 and page["pageSize"] == 2
        assert [t["id"] for t in page["tasks"]] == ["a2a-4", "a2a-3"]
        rest = await a2a("rita", "ListTasks", {"pageSize": 100, "pageToken": page["nextPageToken"]})
        assert [t["id"] for t in rest["result"]["tasks"]] == ["a2a-2", "a2a-1", "a2a-0"]
        assert rest["result"]["nextPageToken"] == ""
        for task in page["tasks"] + rest["result"]["tasks"]:  # each named where it is held
            assert task["metadata"]["foundation.dev/member"] == owner_of(task["id"], "desk", 2)
        own = (await a2a("alice", "ListTasks", {}))["result"]
        assert [t["id"] for t in own["tasks"]] == ["a2a-4", "a2a-2", "a2a-0"]
        assert all(t["metadata"]["foundation.dev/sender"] == "alice" for t in own["tasks"])
        wrong = await a2a("rita", "ListTasks", {"pageSize": 101})
        assert wrong["error"]["code"] == -32602 and "pageSize" in wrong["error"]["message"]
        # The task API's listing through the door: the reader's, merged across the members.
        listed = await http.get(f"{base}/tasks?pageSize=10", headers=as_person("rita"))
        assert listed.status_code == 200 and listed.json()["totalSize"] == 5
        # A text message to an Agent without chat: told what it takes, no task made.
        text = {"role": "ROLE_USER", "messageId": "hello", "parts": [{"text": "hi"}]}
        told = (await a2a("alice", "SendMessage", {"message": text}))["result"]["message"]
        assert "takes tasks, not chat" in told["parts"][0]["text"]
        assert (await a2a("rita", "ListTasks", {}))["result"]["totalSize"] == 5
