"""A2A on the local cluster, with a2a-sdk's own client through the API server's proxy to the
Agent's Service (as a user outside the cluster calls it): the card, the same message twice on
an Agent of two members (some ids owned by the member the proxy did not pick), a member killed
between send and get, cancel of a queued task; and `foundation card`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    SendMessageConfiguration,
    SendMessageRequest,
)
from a2a.utils.errors import A2AError, InternalError, TaskNotCancelableError
from google.protobuf.json_format import MessageToDict, ParseDict

from foundation_agent.runtime.peers import owner_of
from foundation_common.rest import Credentials
from kube import REPO, Kube, in_pod, member_pids, phase

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
async def http(cluster: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with the kubeconfig's credentials, for people's door."""
    credentials = Credentials.from_kubeconfig(cluster)
    async with httpx.AsyncClient(
        verify=credentials.ssl_context(),
        headers={"Authorization": f"Bearer {credentials.token}"},
        timeout=60,
    ) as client:
        yield client


def proxied(cluster: str, namespace: str, agent: str) -> str:
    """The Agent's A2A endpoint through people's door."""
    server = Credentials.from_kubeconfig(cluster).server.rstrip("/")
    return (
        f"{server}/apis/access.foundation.dev/v1alpha1/namespaces/{namespace}/agents/{agent}/a2a/"
    )


async def running(kube: Kube, name: str, replicas: int, **spec: Any) -> None:
    await kube.create_agent(
        name,
        replicas=replicas,
        sidecar={"enabled": False},
        persistence={"store": "ConfigMap"},
        **spec,
    )
    await kube.wait_agent(
        name,
        lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{replicas}/{replicas}",
        timeout=90,
        what=f"{name} Running",
    )


def ask(message_id: str, action: str, input: Any = None, now: bool = False) -> SendMessageRequest:
    data: dict[str, Any] = {"action": action}
    if input is not None:
        data["input"] = input
    message = ParseDict(
        {"role": "ROLE_USER", "messageId": message_id, "parts": [{"data": data}]}, Message()
    )
    return SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(return_immediately=now)
    )


async def sent(client: Any, request: SendMessageRequest) -> dict[str, Any]:
    """The task a message made; sent again while a member says its peer is not ready yet
    ("retry shortly": its view of the other members lags the Agent's status a moment)."""
    for _ in range(40):
        try:
            answers = [MessageToDict(event) async for event in client.send_message(request)]
        except InternalError as exc:
            if "retry shortly" not in str(exc):
                raise
            await asyncio.sleep(0.25)
            continue
        assert len(answers) == 1, answers
        return answers[0]["task"]
    raise AssertionError("a member's peer stayed not ready for 10 s")


THROUGH_SIDECAR = """
import asyncio, json, httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.errors import AgentCardResolutionError
from a2a.types import Message, SendMessageRequest
from google.protobuf.json_format import MessageToDict, ParseDict

async def main():
    async with httpx.AsyncClient(timeout=30) as http:
        # A sidecar's first call to an Agent waits up to 5 s for its discovery's first listing,
        # then answers 503 with Retry-After: a cold start on a busy machine can take longer.
        for attempt in range(30):
            try:
                card = await A2ACardResolver(http, "http://127.0.0.1:15000/a2a/tally/").get_agent_card()
                break
            except AgentCardResolutionError as exc:
                if "503" not in str(exc) or attempt == 29:
                    raise
                await asyncio.sleep(1)
        client = await create_client(card, ClientConfig(httpx_client=http, streaming=False))
        message = ParseDict({"role": "ROLE_USER", "messageId": "from-caller",
                             "parts": [{"data": {"action": "increment", "input": {"by": 1}}}]},
                            Message())
        answers = [MessageToDict(e) async for e in client.send_message(
            SendMessageRequest(message=message))]
        print(json.dumps({"url": card.supported_interfaces[0].url, "task": answers[0]["task"]}))

asyncio.run(main())
"""


def result(task: dict[str, Any]) -> Any:
    return task["artifacts"][0]["parts"][0]["data"]


async def test_the_card_and_exactly_once_across_two_members(
    kube: Kube, cluster: str, http: httpx.AsyncClient
) -> None:
    await running(
        kube,
        "tally",
        2,
        agent="foundation_agent.agents:CounterAgent",
        description="Counts what it is told to.",
        capabilities=["counting"],
    )
    url = proxied(cluster, kube.ns, "tally")
    resolved = await A2ACardResolver(http, url).get_agent_card()
    client = await create_client(resolved, ClientConfig(httpx_client=http, streaming=False))
    card = MessageToDict(resolved)
    assert card["name"] == "tally" and card["description"] == "Counts what it is told to."
    assert card["supportedInterfaces"][0]["url"] == url  # the proxy's, so this client can call
    assert {s["id"] for s in card["skills"]} == {"get", "increment"}
    assert card["skills"][0]["tags"] == ["counting"]
    # Ids owned by each member: the proxy picks either member, and the one that does not own
    # an id forwards it to the one that does.
    ids = [f"add-{i}" for i in range(12)]
    owners = {i: owner_of(i, "tally", 2) for i in ids}
    assert set(owners.values()) == {"tally-0", "tally-1"}
    first = {i: await sent(client, ask(i, "increment", {"by": 1})) for i in ids}
    # Every answer lost; every message sent again: the same tasks, no second effect.
    for i in ids:
        again = await sent(client, ask(i, "increment", {"by": 1}))
        assert again == first[i]
    for member in ("tally-0", "tally-1"):
        counts = sorted(result(first[i])["count"] for i in ids if owners[i] == member)
        assert counts == list(range(1, len(counts) + 1)), (member, counts)
    await client.close()

    # From another Agent's pod, through its sidecar: the card names the sidecar's route.
    await kube.create_agent("caller", sidecar={"enabled": True}, calls={"agents": ["tally"]})
    await kube.wait_agent(
        "caller",
        lambda a: phase(a) == "Running" and a["status"].get("ready") == "1/1",
        timeout=90,
        what="caller Running",
    )
    called = await in_pod(kube, "caller-0", THROUGH_SIDECAR)
    assert called["url"] == "http://127.0.0.1:15000/a2a/tally/"
    # Sent as the caller's account: the member knows who sent it, and keeps the id theirs.
    assert called["task"]["id"] == "from-caller"
    assert called["task"]["metadata"]["foundation.dev/sender"] == (
        f"system:serviceaccount:{kube.ns}:caller"
    )

    # `foundation card` prints the same card.
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(REPO / ".venv/bin/foundation"),
            "--kubeconfig",
            cluster,
            "-n",
            kube.ns,
            "card",
            "tally",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "tally"' in done.stdout and url in done.stdout


async def test_a_member_killed_between_send_and_get_and_cancel_of_a_queued_task(
    kube: Kube, cluster: str, http: httpx.AsyncClient
) -> None:
    await running(kube, "napper", 1, agent="foundation_agent.agents:TaskAgent")
    client = await create_client(
        proxied(cluster, kube.ns, "napper"), ClientConfig(httpx_client=http, streaming=False)
    )
    nap = ask("nap-1", "sleep", {"seconds": 4}, now=True)
    assert (await sent(client, nap))["status"]["state"] in (
        "TASK_STATE_SUBMITTED",
        "TASK_STATE_WORKING",
    )
    queued = await sent(client, ask("nap-2", "sleep", {"seconds": 4}, now=True))
    assert queued["status"]["state"] == "TASK_STATE_SUBMITTED"
    cancelled = MessageToDict(await client.cancel_task(CancelTaskRequest(id="nap-2")))
    assert cancelled["status"]["state"] == "TASK_STATE_CANCELED"
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id="nap-1"))

    # The member is killed while nap-1 runs; it restarts and runs nap-1 again from its store.
    for pid in member_pids(kube.ns, "napper-0"):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    state = ""
    while state != "TASK_STATE_COMPLETED":
        assert time.monotonic() < deadline, f"nap-1 still {state or 'unreachable'}"
        try:
            got = MessageToDict(await client.get_task(GetTaskRequest(id="nap-1")))
            state = got["status"]["state"]
        except (A2AError, httpx.HTTPError) as exc:  # the member restarting
            state = f"unreachable ({type(exc).__name__})"
        if state != "TASK_STATE_COMPLETED":
            await asyncio.sleep(0.5)
    assert got["metadata"]["foundation.dev/attempts"] >= 1
    pod = await kube.pod("napper-0")
    assert pod["status"]["containerStatuses"][0]["restartCount"] >= 1
    # Sent again after all that: the same tasks, and the sleep counted once, the cancelled
    # one never.
    assert (await sent(client, nap))["status"]["state"] == "TASK_STATE_COMPLETED"
    resent = await sent(client, ask("nap-2", "sleep", {"seconds": 4}))
    assert resent["status"]["state"] == "TASK_STATE_CANCELED"
    slept = await sent(client, ask("count", "get", {"key": "slept"}))
    assert result(slept) == {"key": "slept", "value": 1}
    await client.close()
