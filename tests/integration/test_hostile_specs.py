"""Hostile Agent and Workflow specs against the real API server and operator (hypothesis):
wrong types, huge and negative numbers, unicode, control characters, deep nesting, invalid
names. Each is either refused by the API server with a 4xx that names the field, or accepted
and then given a status condition with a reason; the operator never crashes or logs a
traceback, and an Agent it calls invalid gets no objects at all."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes_asyncio.client.exceptions import ApiException

from kube import REPO, Kube, agent_condition
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator", "log_start")
OPERATOR_LOG = REPO / ".local-cluster/logs/operator-tests-operator.log"

Obj = dict[str, Any]


def deep(depth: int) -> Obj:
    node: Obj = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


HOSTILE = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([-1, 0, 2**31, 2**63, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=80),  # any unicode, control characters included
    st.sampled_from(["", " ", "Ünïcødé", "a" * 20_000, "../../etc", "x\x00y", "🤖" * 30]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(min_value=20, max_value=120).map(deep),
)

AGENT_PATHS = [
    "metadata.name",
    "spec.replicas",
    "spec.agent",
    "spec.image",
    "spec.capabilities",
    "spec.capabilities.0",
    "spec.env",
    "spec.env.0.name",
    "spec.config",
    "spec.code.configMap",
    "spec.supervision.maxRestarts",
    "spec.supervision.strategy",
    "spec.persistence.store",
    "spec.persistence.size",
    "spec.inbox.maxQueued",
    "spec.podTemplate.labels",
    "spec.sidecar.upstreams.0.url",
    "spec.sidecar.upstreams.0.timeoutSeconds",
]

WORKFLOW_PATHS = [
    "metadata.name",
    "spec.steps",
    "spec.steps.0.name",
    "spec.steps.0.agent",
    "spec.steps.0.action",
    "spec.steps.0.input",
    "spec.steps.0.dependsOn",
    "spec.steps.0.retry.limit",
    "spec.steps.0.timeoutSeconds",
    "spec.parallelism",
    "spec.timeoutSeconds",
    "spec.output",
]


def with_value(base: Obj, path: str, value: Any) -> Obj:
    out = copy.deepcopy(base)
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def agent_base(name: str) -> Obj:
    return {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "image": "foundation-agent:dev",
            "agent": "foundation_agent.agents:CounterAgent",
            "replicas": 0,
            "capabilities": ["calc"],
            "env": [{"name": "X", "value": "1"}],
            "code": {"configMap": "code"},
            "sidecar": {"upstreams": [{"name": "llm", "url": "http://127.0.0.1:1"}]},
        },
    }


def workflow_base(name: str) -> Obj:
    return {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {
                    "name": "first",
                    "agent": "nobody",
                    "action": "get",
                    "retry": {"limit": 1},
                    "timeoutSeconds": 5,
                }
            ],
        },
    }


def mentions(message: str, path: str) -> bool:
    """Whether a refusal names the field. Schema errors give its path (list indexes as [0]);
    errors decoding the object's metadata give Go's name for it (`v1.ObjectMeta.Name`)."""
    dotted = ".".join(f"[{p}]" if p.isdigit() else p for p in path.split("."))
    plain = ".".join(p for p in path.split(".") if not p.isdigit())  # 1.20 drops indexes
    forms = {path, dotted.replace(".[", "["), plain, path.rsplit(".", 1)[0]}
    if any(form in message for form in forms):
        return True
    field = next(p for p in reversed(path.split(".")) if not p.isdigit())
    return path.startswith("metadata.") and f"ObjectMeta.{field.capitalize()}" in message


TALLY: dict[str, dict[str, int]] = {}  # plural -> refused/accepted, for the last test


class Checker:
    def __init__(self, kube: Kube, plural: str) -> None:
        self.kube = kube
        self.plural = plural
        self.seen = 0
        self.tally = TALLY.setdefault(plural, {"refused": 0, "accepted": 0})

    async def create(self, body: Obj, path: str) -> Obj | None:
        """The object as created, or None if the API server refused it naming `path`."""
        try:
            return await self.kube.custom.create_namespaced_custom_object(
                "foundation.dev", "v1alpha1", self.kube.ns, self.plural, body
            )
        except ApiException as exc:
            assert 400 <= exc.status < 500, (exc.status, exc.body)
            if exc.status == 409 and path == "metadata.name":
                return None  # a name an earlier example took
            message = json.loads(exc.body).get("message", exc.body)
            assert mentions(message, path), f"{path}: {message}"
            self.tally["refused"] += 1
            return None


def name_for(checker: Checker, path: str) -> str:
    checker.seen += 1
    return f"h{checker.seen}"


HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.fixture(scope="module")
def log_start(session_operator: OperatorProcess) -> int:
    """Where the operator's log stood before the first hostile spec."""
    return OPERATOR_LOG.stat().st_size


@pytest.fixture
def agents(kube: Kube) -> Checker:
    return Checker(kube, "agents")


@pytest.fixture
def workflows(kube: Kube) -> Checker:
    return Checker(kube, "workflows")


# Specs the schema lets through that the operator must judge (and make nothing of), and one
# whose member the API server would refuse (an env name no pod may have).
AGENT_SEMANTIC = st.sampled_from(
    [
        [("spec.capabilities", ["calc", "calc"])],
        [("spec.env", [{"name": "FOUNDATION_AGENT_CLASS", "value": "x"}])],
        [("spec.serviceAccountName", "nobody")],
        [("metadata.name", "a" * 63)],
        [("metadata.name", "a.b")],
        [("spec.sidecar.upstreams.0.url", None)],
        [
            (
                "spec.sidecar.upstreams",
                [{"name": "llm", "url": "http://x"}, {"name": "llm", "url": "http://y"}],
            )
        ],
        [("spec.replicas", 1), ("spec.env.0.name", "a=b")],
        [("spec.replicas", 1), ("spec.resources", {"limits": {"cpu": "lots"}})],
    ]
)
AGENT_CHANGES = st.one_of(
    st.tuples(st.sampled_from(AGENT_PATHS), HOSTILE).map(lambda change: [change]),
    AGENT_SEMANTIC,
)


@HYPOTHESIS
@given(changes=AGENT_CHANGES)
async def test_hostile_agent_specs_are_refused_naming_the_field_or_get_a_reason(
    agents: Checker, operator: OperatorProcess, changes: list[tuple[str, Any]]
) -> None:
    kube = agents.kube
    path, value = changes[-1]
    name = name_for(agents, path)
    body = agent_base(name)
    for changed, new in changes:
        body = with_value(body, changed, new)
    created = await agents.create(body, path)
    if created is None:
        return
    name = created["metadata"]["name"]
    agents.tally["accepted"] += 1
    agent = await kube.wait_agent(
        name,
        lambda a: agent_condition(a, "Ready").get("reason"),
        timeout=30,
        what=f"{name} ({path}={value!r:.80}) given a Ready reason",
    )
    if agent_condition(agent, "Ready")["reason"] in ("InvalidSpec", "NotRestricted"):
        # Nothing half-made: no member, no account, no Service for an invalid Agent.
        selector = f"foundation.dev/agent={name}"
        for kind in ("Pod", "ServiceAccount", "Service", "Role"):
            assert await kube.names(kind, selector) == [], (kind, path, value)
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died"


@HYPOTHESIS
@given(path=st.sampled_from(WORKFLOW_PATHS), value=HOSTILE)
async def test_hostile_workflow_specs_are_refused_naming_the_field_or_get_a_reason(
    workflows: Checker, operator: OperatorProcess, path: str, value: Any
) -> None:
    kube = workflows.kube
    name = name_for(workflows, path)
    body = with_value(workflow_base(name), path, value)
    created = await workflows.create(body, path)
    if created is None:
        return
    name = created["metadata"]["name"]
    workflows.tally["accepted"] += 1
    await kube.wait_workflow(
        name,
        lambda w: (w.get("status") or {}).get("phase"),
        timeout=30,
        what=f"{name} ({path}={value!r:.80}) given a phase",
    )
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died"


def test_the_operator_logged_no_traceback(log_start: int) -> None:
    """Runs after the two above (file order): what the operator logged meanwhile."""
    # Both ways were taken: the API server refused some, the operator judged others.
    for plural in ("agents", "workflows"):
        assert TALLY[plural]["refused"] >= 5 and TALLY[plural]["accepted"] >= 5, TALLY
    print(f"hostile specs: {TALLY}")
    log = OPERATOR_LOG.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]
