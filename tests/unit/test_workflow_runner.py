"""The runner's loop without a cluster: an API that keeps one Workflow in memory (and may refuse
its status), and one member that speaks the runtime's task API with scripted actions.

What the local cluster cannot provoke on purpose is tested here: a status the API server
refuses, the whole run's timeout with attempts in flight (one queued, one running), and a
failure while another step is still running."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from foundation_common import rest
from foundation_runner import status as runner_status
from foundation_runner.runner import Runner
from waiting import until

Obj = dict[str, Any]


class Member:
    """The task API of one member (`a-0`): `echo` succeeds with its input, `fail` fails,
    `check` fails if its input has `fail`, `queue` stays queued, `run` stays running until
    `release` is set."""

    def __init__(self) -> None:
        self.tasks: dict[str, Obj] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.release = asyncio.Event()
        self.sent: list[str] = []  # task ids, in the order the member was sent them

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/tasks", self.submit)
        app.router.add_get("/v1/tasks/{id}", self.get)
        app.router.add_post("/v1/tasks/{id}/cancel", self.cancel)
        return app

    def finish(self, task_id: str, status: str, **fields: Any) -> None:
        self.tasks[task_id].update(status=status, **fields)
        self.done[task_id].set()

    async def submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        task_id = body["id"]
        self.sent.append(task_id)
        if task_id not in self.tasks:
            self.tasks[task_id] = {"id": task_id, "status": "queued"}
            self.done[task_id] = asyncio.Event()
            action = body["action"]
            if action == "echo":
                self.finish(task_id, "succeeded", result=body["input"])
            elif action == "check":  # fails for an input that says so
                if (body["input"] or {}).get("fail"):
                    self.finish(task_id, "failed", error="ValueError: told to")
                else:
                    self.finish(task_id, "succeeded", result=body["input"])
            elif action == "fail":
                self.finish(task_id, "failed", error="ValueError: no")
            elif action == "run":
                self.tasks[task_id]["status"] = "running"
                asyncio.get_running_loop().create_task(self._run(task_id))
        return web.json_response(self.tasks[task_id], status=202)

    async def _run(self, task_id: str) -> None:
        await self.release.wait()
        self.finish(task_id, "succeeded", result="ran")

    async def get(self, request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        if task_id not in self.tasks:
            return web.json_response({"error": "unknown"}, status=404)
        wait = float(request.query.get("wait", "0"))
        if wait:
            try:
                await asyncio.wait_for(self.done[task_id].wait(), wait)
            except TimeoutError:
                pass
        return web.json_response(self.tasks[task_id])

    async def cancel(self, request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        if self.tasks[task_id]["status"] != "queued":
            return web.json_response(self.tasks[task_id], status=409)
        self.finish(task_id, "cancelled")
        return web.json_response(self.tasks[task_id])


class Api:
    """One Workflow in memory; `refuse(status)` may return why a status patch is refused."""

    def __init__(self, spec: Obj, address: str, refuse: Any = None) -> None:
        self.workflow: Obj = {
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "resourceVersion": "1"},
            "spec": spec,
            "status": {},
        }
        self.address = address
        self.refuse = refuse or (lambda status: None)
        self.patches: list[Obj] = []
        self.events: list[Obj] = []
        self.changes: asyncio.Queue[Obj] = asyncio.Queue()  # watch events of the Workflow

    async def get(self, path: str, params: Any = None) -> Obj:
        if path.startswith("/apis/discovery.k8s.io/"):  # a server without EndpointSlices
            raise rest.ApiError(404, "not served")
        return copy.deepcopy(self.workflow)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        assert path.endswith("/workflows/w/status")
        problem = self.refuse(body["status"])
        if problem:
            raise rest.ApiError(422, json.dumps({"reason": "Invalid", "message": problem}))
        self.patches.append(copy.deepcopy(body["status"]))
        for key, value in copy.deepcopy(body["status"]).items():  # a merge patch: null deletes
            if value is None:
                self.workflow["status"].pop(key, None)
            else:
                self.workflow["status"][key] = value
        return copy.deepcopy(self.workflow)

    async def create(self, path: str, obj: Obj) -> Obj:
        self.events.append(obj)
        return obj

    async def list_and_watch(
        self, path: str, params: Any = None, timeout_seconds: int = 0
    ) -> AsyncIterator[tuple[str, Obj]]:
        if path.endswith("/workflows"):  # the runner's watch on its Workflow
            assert params == {"fieldSelector": "metadata.name=w"}
            listing = {"items": [copy.deepcopy(self.workflow)], "metadata": {}}
            yield "SYNC", listing
            while True:
                yield "MODIFIED", await self.changes.get()
        assert params == {"fieldSelector": "metadata.name=a"}
        host, port = self.address.split(":")
        endpoints = {
            "subsets": [
                {
                    "addresses": [{"ip": host, "targetRef": {"name": "a-0"}}],
                    "ports": [{"name": "http", "port": int(port)}],
                }
            ]
        }
        yield "SYNC", {"items": [endpoints], "metadata": {"resourceVersion": "1"}}
        await asyncio.Event().wait()

    def status(self) -> Obj:
        return self.workflow["status"]

    def step(self, name: str) -> Obj:
        return next(s for s in self.status()["steps"] if s["name"] == name)


@pytest.fixture
async def member():
    member = Member()
    server = TestServer(member.app(), host="127.0.0.1")
    await server.start_server()
    member.address = f"127.0.0.1:{server.port}"
    yield member
    member.release.set()
    await server.close()


async def run(api: Api, seconds: float = 20.0) -> Runner:
    async with httpx.AsyncClient(timeout=10.0) as http:
        runner = Runner(api, "ns", "w", http)  # type: ignore[arg-type]
        try:
            assert await asyncio.wait_for(runner.run(), seconds) == 0
        finally:
            await runner.directory.close()
    return runner


def step(name: str, action: str, *after: str, **more: Any) -> Obj:
    return {"name": name, "agent": "a", "action": action, "dependsOn": list(after), **more}


async def test_a_refused_status_fails_the_step_whose_result_it_carried(member) -> None:
    def refuse(status: Obj) -> str | None:
        if any("poison" in json.dumps(s.get("result")) for s in status.get("steps") or []):
            return "status.steps[0].result: poison is not allowed"
        return None

    spec = {
        "steps": [
            step("first", "echo", input={"v": "poison"}),
            step("second", "echo", "first", input="{{ steps.first.result.v }}"),
        ]
    }
    api = Api(spec, member.address, refuse)
    await run(api)
    assert api.status()["phase"] == "Failed"
    first = api.step("first")
    assert (first["phase"], first["reason"]) == ("Failed", "StatusRefused")
    assert "poison is not allowed" in first["error"] and "result" not in first
    assert api.step("second")["phase"] == "Pending"
    assert member.sent == ["u1.first.1"]  # the second step was never sent
    assert [e["reason"] for e in api.events] == ["StepFailed", "Failed"]


async def test_the_runs_timeout_cancels_queued_attempts_and_abandons_running_ones(member) -> None:
    spec = {"timeoutSeconds": 1, "steps": [step("waits", "queue"), step("works", "run")]}
    api = Api(spec, member.address)
    await run(api)
    status = api.status()
    assert (status["phase"], status["conditions"][0]["reason"]) == ("Failed", "Timeout")
    waits, works = api.step("waits"), api.step("works")
    assert (waits["phase"], waits["reason"]) == ("Failed", "Cancelled")
    assert member.tasks["u1.waits.1"]["status"] == "cancelled"
    assert (works["phase"], works["reason"]) == ("Failed", "Abandoned")
    assert "may still take effect once, and is not sent again" in works["error"]
    assert member.sent.count("u1.works.1") == 1 and "u1.works.2" not in member.tasks


async def test_after_a_failure_the_steps_in_flight_finish_and_are_recorded(member) -> None:
    spec = {
        "steps": [
            step("breaks", "fail", retry={"limit": 0}),
            step("works", "run"),
            step("later", "echo", "breaks"),
        ]
    }
    api = Api(spec, member.address)
    running = asyncio.create_task(run(api))
    await until(
        lambda: any(
            (p.get("conditions") or [{}])[0].get("reason") == "Failing" for p in api.patches
        ),
        what="a Failing status",
    )
    assert api.status()["phase"] == "Running"
    member.release.set()
    await running
    assert api.status()["phase"] == "Failed"
    assert api.step("works")["phase"] == "Succeeded" and api.step("works")["result"] == "ran"
    assert api.step("later")["phase"] == "Pending"
    assert "step breaks failed" in api.status()["conditions"][0]["message"]


async def test_a_map_over_a_steps_result_gathers_its_items_results_in_order(member) -> None:
    """Fifty items, twenty at a time: each sent once with its own id, the result in the
    items' order, ended items compacted, and far fewer status writes than items."""
    spec = {
        "steps": [
            step("plan", "echo", input={"tasks": [{"n": i} for i in range(50)]}),
            step(
                "fan",
                "echo",
                "plan",
                input={"task": "{{ item }}", "index": "{{ index }}"},
                map={"items": "{{ steps.plan.result.tasks }}", "parallelism": 20},
            ),
            step("sum", "echo", "fan", input="{{ steps.fan.result.49 }}"),
        ]
    }
    api = Api(spec, member.address)
    await run(api)
    status = api.status()
    assert status["phase"] == "Succeeded", status["conditions"]
    fan = api.step("fan")
    assert fan["result"] == [{"task": {"n": i}, "index": i} for i in range(50)]
    assert (fan["items"], fan["progress"], status["itemProgress"]) == (50, "50/50", "50/50")
    assert api.step("sum")["result"] == {"task": {"n": 49}, "index": 49}
    assert sorted(member.sent) == sorted(
        ["u1.plan.1", "u1.sum.1", *(f"u1.fan.{i}.1" for i in range(50))]
    )
    ended = status["items"]
    assert len(ended) == 50 and all(set(i) <= runner_status.ENDED_ITEM for i in ended)
    assert all("result" not in i for i in ended)  # gathered into the step's result
    assert len(api.patches) < 25, len(api.patches)


async def test_item_failures_past_the_tolerance_fail_the_map_and_say_which(member) -> None:
    items = [{"fail": i in (3, 7)} for i in range(10)]
    spec = {
        "steps": [
            step(
                "fan",
                "check",
                input="{{ item }}",
                retry={"limit": 0},
                map={"items": items, "onItemFailure": "Continue", "toleratedFailures": 1},
            )
        ]
    }
    api = Api(spec, member.address)
    await run(api)
    status = api.status()
    assert status["phase"] == "Failed"
    fan = api.step("fan")
    assert (fan["phase"], fan["reason"]) == ("Failed", "ItemsFailed")
    assert (
        "2 of 10 items failed (tolerated 1); the first, item 3: 1 attempt failed (retry.limit 0); "
        "last: ValueError: told to" in (fan["error"])
    )
    assert len(member.sent) == 10  # Continue: every item ran
    phases = {i["name"]: i["phase"] for i in status["items"]}
    assert phases["fan.3"] == phases["fan.7"] == "Failed" and phases["fan.0"] == "Succeeded"
    assert [e["reason"] for e in api.events].count("ItemFailed") == 2


async def test_a_new_runner_sends_a_maps_items_in_flight_again_by_the_same_ids(member) -> None:
    """A runner killed with items in flight: the next one re-sends exactly those ids (the
    member answers with what it has) and starts the rest; no item gets a second attempt."""
    spec = {
        "steps": [
            step("fan", "run", input="{{ index }}", map={"items": list(range(6)), "parallelism": 3})
        ]
    }
    api = Api(spec, member.address)
    first = asyncio.create_task(run(api))
    await until(lambda: len(member.sent) == 3, what="three items sent")
    first.cancel()  # as a SIGKILL would: nothing more is written
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert {i["name"]: i["phase"] for i in api.status()["items"]} == {
        f"fan.{i}": "Running" for i in range(3)
    }
    member.release.set()
    await run(api)
    assert api.status()["phase"] == "Succeeded"
    assert api.step("fan")["result"] == ["ran"] * 6
    assert set(member.tasks) == {f"u1.fan.{i}.1" for i in range(6)}
    assert all(member.sent.count(f"u1.fan.{i}.1") <= 2 for i in range(3))


async def test_clean_up_runs_after_a_failure_and_never_changes_the_outcome(member) -> None:
    spec = {
        "steps": [step("breaks", "fail", retry={"limit": 0})],
        "onExit": [
            step("notify", "echo", input={"was": "{{ workflow.phase }}",
                                          "why": "{{ workflow.failures.0.step }}"}),
            step("tidy", "fail", "notify", retry={"limit": 0}),
        ],
    }  # fmt: skip
    api = Api(spec, member.address)
    await run(api)
    status = api.status()
    assert status["phase"] == "Failed" and status["outcome"]["reason"] == "StepFailed"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["reason"] == "StepFailed"
    assert conditions["CleanedUp"]["status"] == "False"
    assert conditions["CleanedUp"]["message"].startswith("1 of 2 failed; tidy: ")
    assert api.step("notify")["result"] == {"was": "Failed", "why": "breaks"}
    assert member.sent == ["u1.breaks.1", "u1.notify.1", "u1.tidy.1"]
    assert [e["reason"] for e in api.events] == [
        "StepFailed",
        "StepFailed",
        "CleanUpFailed",
        "Failed",
    ]
    # The outcome was written before the first clean-up step was sent.
    first_sent = next(
        i
        for i, p in enumerate(api.patches)
        if any(
            s.get("name") == "notify" and s.get("phase") == "Running" for s in p.get("steps", [])
        )
    )
    assert "outcome" in api.patches[first_sent]  # fmt: skip


async def test_an_approval_waits_for_a_persons_decision_and_later_steps_get_its_input(
    member,
) -> None:
    spec = {
        "steps": [
            step("draft", "echo", input={"subject": "hello"}),
            {
                "name": "review",
                "dependsOn": ["draft"],
                "approval": {
                    "message": "send {{ steps.draft.result.subject }}?",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"subject": {"type": "string"}},
                    },
                },
            },
            step("send", "echo", "review", input="{{ steps.review.result.input.subject }}"),
        ]
    }
    api = Api(spec, member.address)
    running = asyncio.create_task(run(api))
    await until(
        lambda: any(s.get("reason") == "WaitingForApproval" for s in api.status().get("steps", [])),
        what="the approval waiting",
    )
    review = api.step("review")
    assert (review["phase"], review["prompt"]) == ("Running", "send hello?")
    assert member.sent == ["u1.draft.1"]
    # The door records a decision in status.approvals; the runner takes it from its watch.
    verdict = {
        "step": "review",
        "decision": "Approved",
        "by": "alice",
        "at": "2026-12-04T08:00:00Z",
        "message": "fine",
        "input": {"subject": "edited"},
    }
    api.workflow["status"]["approvals"] = [verdict]
    await api.changes.put(copy.deepcopy(api.workflow))
    await running
    assert api.status()["phase"] == "Succeeded"
    assert api.step("review")["result"]["by"] == "alice"
    assert api.step("send")["result"] == "edited"
    assert all("approvals" not in p for p in api.patches)  # the door's to write, never the runner's
    assert ["ApprovalRequested", "Approved"] == [
        e["reason"] for e in api.events if e["reason"] in ("ApprovalRequested", "Approved")
    ]


async def test_an_approval_past_its_timeout_takes_its_default_and_a_rejection_cleans_up(
    member,
) -> None:
    spec = {
        "steps": [
            {"name": "review", "approval": {"message": "ok?", "timeoutSeconds": 1}},
            step("after", "echo", "review"),
        ],
        "onExit": [step("tidy", "echo", input="{{ workflow.failures.0.reason }}")],
    }
    api = Api(spec, member.address)
    await run(api)
    status = api.status()
    assert status["phase"] == "Failed"
    review = api.step("review")
    assert (review["phase"], review["reason"]) == ("Failed", "Rejected")
    assert review["error"] == "rejected by timeout: no decision within timeoutSeconds 1"
    assert api.step("tidy")["result"] == "Rejected"
    assert member.sent == ["u1.tidy.1"]


async def test_a_decision_made_while_no_runner_runs_is_taken_once_by_the_next(member) -> None:
    spec = {
        "steps": [
            {"name": "review", "approval": {"message": "ok?"}},
            step("after", "echo", "review", input="{{ steps.review.result.by }}"),
        ]
    }
    api = Api(spec, member.address)
    first = asyncio.create_task(run(api))
    await until(lambda: api.events, what="the approval requested")
    first.cancel()  # the runner gone while the step waits
    with contextlib.suppress(asyncio.CancelledError):
        await first
    api.workflow["status"]["approvals"] = [
        {"step": "review", "decision": "Approved", "by": "bob", "at": "2026-12-04T08:00:00Z"}
    ]
    await run(api)  # the next runner reads it with the status, and goes on
    assert api.status()["phase"] == "Succeeded"
    assert api.step("after")["result"] == "bob"
    assert member.sent.count("u1.after.1") == 1
    assert [e["reason"] for e in api.events].count("Approved") == 1


def test_the_shared_runner_is_restricted_and_may_send_to_the_namespaces_agents() -> None:
    """What a namespace's shared runner is made of (issue 29): one pod that meets the
    restricted profile, an account that may run every Workflow's status and send tasks to (and
    wake) any Agent of the namespace, and nothing cluster-wide."""
    from foundation_operator.core import defaults, security
    from foundation_operator.workflows import shared

    account, role, binding, deployment = shared.objects("team", "img", defaults.Platform())
    pod = deployment["spec"]["template"]["spec"]
    assert security.violations(pod) == []
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two at once
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "foundation-shared-runner"
    assert pod["containers"][0]["command"] == ["foundation-shared-runner"]
    rules = {(tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]}
    assert (("agents/tasks", "agents/wake"), ("create",)) in rules
    assert (("workflows/status",), ("get", "patch")) in rules
    assert all("resourceNames" not in r for r in role["rules"])
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "foundation-shared-runner", "namespace": "team"}
    ]
    assert {o["metadata"]["namespace"] for o in (account, role, binding, deployment)} == {"team"}
