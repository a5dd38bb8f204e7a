"""Traces (foundation_common.tracing) in one process, spans kept in memory: a task's spans join
its caller's trace, its context is kept in its record, a run after a crash continues that
trace, and with tracing off nothing is made while the caller's context still passes on.
(Phoenix, a real trace store, receives them in tests/integration/test_traces.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.server import TaskApi
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores.sqlite import SqliteStore
from foundation_common import tracing

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OPEN = Gate(None, "ns", "tally", "tally", "Permissive")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup("test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def settings() -> Settings:
    return Settings(agent_class="x:Y", agent_name="tally", member_name="tally-0", namespace="ns")


async def served_member(path: Path) -> tuple[Member, TaskApi]:
    member = Member(CounterAgent(), SqliteStore(path / "a.db"), settings())
    await member.load()
    member.start()
    return member, TaskApi(OPEN, member)


def by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


async def test_a_task_joins_its_callers_trace_and_keeps_it_across_a_crash(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    member, api = await served_member(tmp_path)
    async with TestClient(TestServer(api.app())) as http:
        sent = await http.post(
            "/v1/tasks?wait=5",
            json={"id": "t-1", "action": "increment", "input": {"by": 2}},
            headers={"traceparent": CALLER, "tracestate": "vendor=1"},
        )
        record = await sent.json()
    await member.stop()
    assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    found = by_name(spans)
    accepted, invoked = found["accept_task tally"], found["invoke_agent tally"]
    assert accepted.context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)
    assert accepted.parent.span_id == int("b7ad6b7169203331", 16)
    assert invoked.parent.span_id == accepted.context.span_id
    assert invoked.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert invoked.attributes["gen_ai.agent.name"] == "tally"
    assert invoked.attributes[tracing.TASK_ID] == "t-1"
    assert invoked.attributes[tracing.ATTEMPT] == 1
    assert invoked.attributes[tracing.MEMBER] == "tally-0"

    # A task accepted, and the member gone before it ran: the next one runs it in the same
    # trace, under the same accepted span (its context came back from the store).
    spans.clear()
    member = Member(CounterAgent(), SqliteStore(tmp_path / "a.db"), settings())
    await member.load()
    member.ready = True  # taking tasks, its executor not started: as if killed after the 202
    committer = asyncio.get_running_loop().create_task(member.journal.run())
    tracing.INCOMING.set(tracing.carried({"traceparent": CALLER}))
    await member.submit("t-2", "increment", {"by": 1})
    committer.cancel()
    accepted = by_name(spans)["accept_task tally"]
    spans.clear()
    again = Member(CounterAgent(), SqliteStore(tmp_path / "a.db"), settings())
    await again.load()
    again.start()
    done = await again.finished("t-2")
    await again.stop()
    rerun = by_name(spans)["invoke_agent tally"]
    assert done["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert rerun.context.trace_id == accepted.context.trace_id
    assert rerun.parent.span_id == accepted.context.span_id


async def test_a_task_sent_without_a_trace_starts_one_and_shows_it(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    member, _ = await served_member(tmp_path)
    tracing.INCOMING.set(None)
    await member.submit("t-1", "increment", {"by": 1})
    done = await member.finished("t-1")
    await member.stop()
    found = by_name(spans)
    assert found["accept_task tally"].parent is None
    assert done["traceId"] == f"{found['accept_task tally'].context.trace_id:032x}"


async def test_off_nothing_is_made_and_the_callers_context_passes_on(tmp_path: Path) -> None:
    assert not tracing.enabled()
    member, api = await served_member(tmp_path)
    async with TestClient(TestServer(api.app())) as http:
        sent = await http.post(
            "/v1/tasks?wait=5",
            json={"id": "t-1", "action": "increment", "input": {"by": 2}},
            headers={"traceparent": CALLER},
        )
        record = await sent.json()
    await member.stop()
    assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    # What a call made for the task carries: the caller's context, as it came.
    tracing.INCOMING.set(member.records["t-1"]["trace"])
    assert tracing.headers() == {"traceparent": CALLER}


def test_the_standard_variables_turn_it_on_and_off() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing.wanted({})
    assert tracing.wanted(endpoint)
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})
    assert not tracing.wanted({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({**endpoint, "OTEL_TRACES_EXPORTER": "none"})


def test_contexts_are_checked_and_a_workflows_trace_is_its_own() -> None:
    assert tracing.carried({"traceparent": CALLER}) == {"traceparent": CALLER}
    assert tracing.carried({"traceparent": "junk"}) is None
    assert tracing.carried({"traceparent": CALLER, "tracestate": "x" * 900})["tracestate"] == (
        "x" * tracing.MAX_STATE
    )
    one, two = tracing.rooted("uid-1"), tracing.rooted("uid-2")
    assert one == tracing.rooted("uid-1") and one != two
    assert tracing.carried(one) == one and tracing.trace_id(one) != tracing.trace_id(two)


def test_pods_get_the_standard_variables_from_the_platform_or_their_spec() -> None:
    from foundation_operator.agents import pods as agent_pods
    from foundation_operator.agents.api import AgentView
    from foundation_operator.core.defaults import Platform
    from foundation_operator.workflows import objects as workflow_objects
    from foundation_operator.workflows.objects import WorkflowView

    def env(container: dict) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in container["env"]}

    def member(platform: Platform, **spec: Any) -> list[dict[str, str]]:
        body = {
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"image": "i", "agent": "m:C", **spec},
        }
        pod = agent_pods.member_pod(AgentView.from_body(body, platform=platform), 0)
        return [env(c) for c in pod["spec"]["containers"]]

    platform = Platform(tracing_endpoint="http://collector:4318", tracing_sampling_ratio=0.25)
    agent, sidecar = member(platform)
    assert agent["OTEL_EXPORTER_OTLP_ENDPOINT"] == sidecar["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert agent["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert agent["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert agent["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    own = member(platform, tracing={"endpoint": "http://mine:4318", "samplingRatio": 1})[0]
    assert own["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://mine:4318"
    assert own["OTEL_TRACES_SAMPLER_ARG"] == "1"
    assert all("OTEL_EXPORTER_OTLP_ENDPOINT" not in e for e in member(Platform()))
    assert all(
        "OTEL_EXPORTER_OTLP_ENDPOINT" not in e for e in member(platform, tracing={"enabled": False})
    )
    # spec.env comes after: an Agent may still set any OTEL_* variable itself.
    names = [
        e["name"]
        for e in agent_pods.member_pod(
            AgentView.from_body(
                {
                    "metadata": {"name": "a", "namespace": "n", "uid": "u", "generation": 1},
                    "spec": {
                        "image": "i",
                        "agent": "m:C",
                        "env": [{"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.5"}],
                    },
                },
                platform=platform,
            ),
            0,
        )["spec"]["containers"][0]["env"]
    ]
    assert names.index("OTEL_TRACES_SAMPLER_ARG") < len(names) - 1
    assert names[-1] == "OTEL_TRACES_SAMPLER_ARG"
    workflow = WorkflowView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {
                "steps": [{"name": "a", "agent": "x", "action": "get"}],
                "runner": {"tracing": {"endpoint": "http://phoenix:6006"}},
            },
        },
        "image",
        platform=Platform(),
    )
    runner = env(workflow_objects.runner_pod(workflow)["spec"]["containers"][0])
    assert runner["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:6006"
