"""The test node's kubelet rules, on plain dicts."""

import base64

import pytest

from localcluster.node import podspec
from localcluster.node.podspec import ConfigError, ContainerStatus


def test_expand_replaces_known_names_escapes_and_keeps_unknown() -> None:
    env = {"A": "1", "B": "two"}
    assert podspec.expand("$(A)-$(B)", env) == "1-two"
    assert podspec.expand("$$(A) $(MISSING)", env) == "$(A) $(MISSING)"
    assert podspec.expand("cost $$5", env) == "cost $5"


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x", "tier": "1"}},
    "spec": {"nodeName": "n", "serviceAccountName": "sa"},
    "status": {"podIP": "10.244.0.9", "podIPs": [{"ip": "10.244.0.9"}]},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u1"),
        ("metadata.labels['app']", "x"),
        ("status.podIP", "10.244.0.9"),
        ("spec.nodeName", "n"),
        ("spec.serviceAccountName", "sa"),
        ("metadata.labels", 'app="x"\ntier="1"'),
    ],
)
def test_field_values(path: str, value: str) -> None:
    assert podspec.field_value(POD, path) == value


def test_unknown_field_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"spec\.bogus"):
        podspec.field_value(POD, "spec.bogus")


OBJECTS = {
    ("ConfigMap", "cm"): {"metadata": {"namespace": "ns"}, "data": {"k": "v", "other": "o"}},
    ("Secret", "s"): {
        "metadata": {"namespace": "ns"},
        "data": {"pw": base64.b64encode(b"hunter2").decode()},
    },
}


def lookup(kind: str, name: str):
    return OBJECTS.get((kind, name))


def test_env_order_envfrom_then_env_with_expansion() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "CM_k", "value": "overridden"},
            {"name": "REF", "value": "$(CM_other)!"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
        ],
    }
    env = podspec.container_env(POD, container, lookup, path_prefix="/venv/bin")
    assert env["CM_k"] == "overridden"
    assert env["REF"] == "o!"
    assert env["IP"] == "10.244.0.9"
    assert env["PW"] == "hunter2"
    assert "OPT" not in env
    assert env["PATH"].startswith("/venv/bin:")
    assert env["HOSTNAME"] == "p"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.244.0.1"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"configMapKeyRef": {"name": "gone", "key": "k"}}, 'configmap "gone" not found'),
        ({"configMapKeyRef": {"name": "cm", "key": "nokey"}}, "couldn't find key nokey"),
        ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
    ],
)
def test_missing_references_are_config_errors(ref: dict, message: str) -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": ref}]}
    with pytest.raises(ConfigError, match=message):
        podspec.container_env(POD, container, lookup, path_prefix="")


def test_argv_expands_and_needs_a_command() -> None:
    container = {"name": "c", "command": ["run", "$(MODE)"], "args": ["--x=$(MODE)"]}
    assert podspec.container_argv(container, {"MODE": "fast"}) == ["run", "fast", "--x=fast"]
    with pytest.raises(ConfigError, match="set `command`"):
        podspec.container_argv({"name": "c", "args": ["x"]}, {})


def test_restart_delay_is_immediate_then_doubles_to_five_minutes() -> None:
    delays = [podspec.restart_delay(n, 10) for n in range(1, 9)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert podspec.restart_delay(3, 1) == 2


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert podspec.should_restart(policy, code) is restart


def status(state: dict, last: dict | None = None, ready: bool = False) -> ContainerStatus:
    return ContainerStatus("c", "img", state, last or {}, ready=ready)


RUNNING = {"running": {"startedAt": "t"}}
OK = {"terminated": {"exitCode": 0}}
FAILED = {"terminated": {"exitCode": 1}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}
BACKOFF = {"waiting": {"reason": "CrashLoopBackOff"}}


@pytest.mark.parametrize(
    ("policy", "inits", "mains", "phase"),
    [
        ("Always", [], [status(WAITING)], "Pending"),
        ("Always", [], [status(RUNNING)], "Running"),
        ("Always", [], [status(BACKOFF, {"terminated": {"exitCode": 1}})], "Running"),
        ("Never", [], [status(OK), status(OK)], "Succeeded"),
        ("Never", [], [status(OK), status(FAILED)], "Failed"),
        ("Never", [], [status(OK), status(RUNNING)], "Running"),
        ("Never", [status(FAILED)], [status(WAITING)], "Failed"),
        ("OnFailure", [status(FAILED)], [status(WAITING)], "Pending"),
        ("Always", [status(OK)], [status(RUNNING)], "Running"),
        ("Always", [], [status(FAILED)], "Running"),
        ("Always", [], [status(OK)], "Running"),
        ("OnFailure", [], [status(FAILED)], "Running"),
        ("OnFailure", [], [status(OK)], "Succeeded"),
    ],
)
def test_pod_phase(policy: str, inits: list, mains: list, phase: str) -> None:
    assert podspec.pod_phase(policy, inits, mains) == phase


def test_conditions_keep_transition_time_while_unchanged() -> None:
    ready = [status(RUNNING, ready=True)]
    first = podspec.pod_conditions([], ready, [{"type": "PodScheduled", "status": "True"}], "t1")
    again = podspec.pod_conditions([], ready, first, "t2")
    by_type = {c["type"]: c for c in again}
    assert by_type["Ready"] == {
        "type": "Ready",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": "t1",
    }
    assert by_type["PodScheduled"]["status"] == "True"
    not_ready = podspec.pod_conditions([], [status(RUNNING)], again, "t3")
    assert {c["type"]: c for c in not_ready}["Ready"]["lastTransitionTime"] == "t3"
    assert {c["type"]: c for c in not_ready}["Ready"]["reason"] == "ContainersNotReady"


def test_named_ports_resolve_from_the_container() -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert podspec.resolve_port(container, "http") == 8080
    assert podspec.resolve_port(container, 9000) == 9000
    with pytest.raises(ConfigError, match="no port named 'grpc'"):
        podspec.resolve_port(container, "grpc")
