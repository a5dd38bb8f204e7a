"""The Helm chart, with Helm 4's own engine (helm-python-sdk): lint, render with several value
sets, validate every object against the Kubernetes schemas kubernetes-validate carries (its
oldest, 1.25, and its newest), and reject bad values clearly."""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/foundation"
EVERYTHING = {
    "serviceMonitor": {"enabled": True},
    "podMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "dashboard": {"enabled": True},
    "networkPolicy": {"enabled": True},
}
VALUE_SETS = {
    "defaults": {},
    "everything": EVERYTHING,
    "namespaced": {**EVERYTHING, "watchNamespaces": ["team-a", "team-b"], "replicas": 3},
    "single": {"replicas": 1, "leaderElection": {"enabled": False}, "logFormat": "text"},
    "console": {"console": {"enabled": True}, "tracing": {"otlpEndpoint": "http://c:4318"}},
    "no-extras": {
        "metrics": {"service": {"enabled": False}},
        "podDisruptionBudget": {"enabled": False},
    },
}
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"


def render(values: dict) -> list[dict]:
    chart = helm_python.Chart.load(CHART)
    try:
        files = chart.render(values, name="fdn", namespace="foundation-system")
    finally:
        chart.close()
    return [
        doc
        for name, text in files.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("kube_version", ["v1.20.2", "v1.25.0", "v1.37.0"])
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_chart_lints_clean_on_old_and_new_clusters(values: dict, kube_version: str) -> None:
    report = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_validates_against_the_kubernetes_schemas(values: dict) -> None:
    objects = render(values)
    assert objects
    for obj in objects:
        if obj["apiVersion"] == PROMETHEUS_OPERATOR:
            continue  # not Kubernetes' own; the rules are checked by promtool
        for version in ("1.25.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(obj, version, strict=True)


def test_defaults_make_a_restricted_operator_of_two_replicas_with_its_objects() -> None:
    objects = render({})
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "APIService",  # people's door
        *["ClusterRole"]
        * 6,  # the operator's, members', callers', readers', cancellers', approvers'
        "ClusterRoleBinding",
        "Deployment",
        "MutatingWebhookConfiguration",  # who created each Workflow
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "RoleBinding",  # the door reads the API server's relay settings in kube-system
        "Secret",  # the door's serving certificate
        "Service",
        "Service",  # the door's
        "ServiceAccount",
    ]
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (operator,) = pod["containers"]
    assert operator["command"] == ["foundation-operator"]
    assert operator["image"] == "foundation-agent:0.1.0"
    assert operator["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e["value"] for e in operator["env"]}
    assert env["FOUNDATION_AGENT_IMAGE"] == "foundation-agent:0.1.0"
    assert env["FOUNDATION_NAMESPACES"] == ""
    assert env["FOUNDATION_LOG_FORMAT"] == "json"
    assert env["FOUNDATION_LEASE_NAMESPACE"] == "foundation-system"
    assert operator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert operator["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_the_door_is_an_apiservice_whose_ca_signs_the_operators_serving_certificate() -> None:
    objects = render({})
    (api_service,) = by_kind(objects, "APIService")
    (secret,) = by_kind(objects, "Secret")
    assert api_service["metadata"]["name"] == "v1alpha1.access.foundation.dev"
    assert api_service["spec"]["service"]["name"] == "fdn-foundation-operator-door"
    assert api_service["spec"]["caBundle"] == secret["data"]["ca.crt"]
    assert "insecureSkipTLSVerify" not in api_service["spec"]
    # The certificate names the door's Service and is signed by the bundle's CA.
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    crt = base64.b64decode(secret["data"]["tls.crt"]).decode()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "ca.crt").write_text(ca)
        (Path(folder) / "tls.crt").write_text(crt)
        checked = subprocess.run(
            ["openssl", "verify", "-CAfile", f"{folder}/ca.crt", "-verify_hostname",
             "fdn-foundation-operator-door.foundation-system.svc", f"{folder}/tls.crt"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (deployment,) = by_kind(objects, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in operator["env"]}
    assert env["FOUNDATION_DOOR_PORT"] == "8443"
    mounts = {m["name"]: m["mountPath"] for m in operator["volumeMounts"]}
    assert mounts["door-tls"] == "/var/run/foundation.dev/door"
    assert mounts["door-token"] == "/var/run/secrets/foundation.dev/serviceaccount"
    # A second release in the cluster leaves the one APIService to the first.
    kinds = {o["kind"] for o in render({"door": {"apiService": {"create": False}}})}
    assert "APIService" not in kinds and "Secret" in kinds
    (webhook,) = by_kind(objects, "MutatingWebhookConfiguration")
    (hook,) = webhook["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert hook["clientConfig"]["service"]["path"] == "/mutate/workflows"
    assert hook["failurePolicy"] == "Fail" and hook["rules"][0]["operations"] == ["CREATE"]
    assert "Secret" not in {o["kind"] for o in render({"door": {"enabled": False}})}


def test_rbac_is_the_operators_written_rules_cluster_wide_or_per_watched_namespace() -> None:
    from foundation_operator.core import rbac

    roles = {r["metadata"]["name"]: r for r in by_kind(render({}), "ClusterRole")}
    assert roles["fdn-foundation-operator"]["rules"] == rbac.cluster_rules()
    assert roles[rbac.MEMBER_CLUSTER_ROLE]["rules"] == rbac.MEMBER_CLUSTER_RULES
    for written in rbac.people_roles():
        role = roles[written["metadata"]["name"]]
        assert role["rules"] == written["rules"]
        assert written["metadata"]["labels"].items() <= role["metadata"]["labels"].items()
    # `view` may not read task records (inputs, results, conversations); `edit` may.
    aggregated = {
        name: {k.rsplit("-", 1)[1] for k in r["metadata"]["labels"] if "aggregate-to" in k}
        for name, r in roles.items()
    }
    assert aggregated["foundation-agent-caller"] == {"edit", "admin"}
    assert aggregated["foundation-agent-reader"] == {"edit", "admin"}
    assert aggregated["foundation-agent-canceller"] == {"admin"}
    assert aggregated["foundation-workflow-approver"] == {"edit", "admin"}

    objects = render({**EVERYTHING, "watchNamespaces": ["team-a", "team-b"]})
    (cluster_role,) = [
        r
        for r in by_kind(objects, "ClusterRole")
        if r["metadata"]["name"] == "fdn-foundation-operator"
    ]
    assert {r["resources"][0] for r in cluster_role["rules"]} == {
        "customresourcedefinitions",
        "namespaces",
        "clusterrolebindings",
        "tokenreviews",
    }
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")
    }
    assert set(roles) == {
        ("team-a", "fdn-foundation-operator"),
        ("team-b", "fdn-foundation-operator"),
        ("foundation-system", "fdn-foundation-operator-leader"),
    }
    assert roles[("team-a", "fdn-foundation-operator")]["rules"] + cluster_role["rules"] == (
        rbac.cluster_rules()
    )
    assert roles[("foundation-system", "fdn-foundation-operator-leader")]["rules"] == (
        rbac.lease_rules()
    )
    (deployment,) = by_kind(objects, "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FOUNDATION_NAMESPACES"] == "team-a,team-b"
    (pod_monitor,) = by_kind(objects, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} == {
        "metrics",
        "sidecar-admin",
    }


def test_optional_objects_come_with_their_flags() -> None:
    objects = render(EVERYTHING)
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"} <= kinds
    dashboards = [o for o in by_kind(objects, "ConfigMap") if "foundation.json" in o["data"]]
    assert dashboards and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    (rule,) = by_kind(objects, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "FoundationAgentRestartIntensityExceeded",
        "FoundationAgentDegraded",
        "FoundationCircuitOpen",
        "FoundationModelUnavailable",
        "FoundationCheckpointSlow",
        "FoundationReconcileErrors",
        "FoundationNoActiveOperator",
        "FoundationWorkflowFailed",
        "FoundationWorkflowStalled",
        "FoundationApprovalWaiting",
    }
    thresholds = render({**EVERYTHING, "alerts": {"degradedMinutes": 42, "checkpointP99Ms": 250}})
    (rule,) = by_kind(thresholds, "PrometheusRule")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rules["FoundationAgentDegraded"]["for"] == "42m"
    assert rules["FoundationCheckpointSlow"]["expr"].rstrip().endswith("> 0.25")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 0}, "replicas"),
        ({"logLevel": "LOUD"}, "logLevel"),
        ({"workers": 1000}, "workers"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"replica": 2}, "replica"),
        ({"serviceMonitor": {"enabled": True, "interval": "often"}}, "interval"),
    ],
)
def test_bad_values_are_refused_naming_the_value(values: dict, message: str) -> None:
    chart = helm_python.Chart.load(CHART)
    try:
        with pytest.raises(helm_python.HelmError, match=message):
            chart.validate_schema(values)
    finally:
        chart.close()


def test_the_operator_is_told_how_members_treat_callers_and_which_namespaces_are_exempt() -> None:
    def env_of(values: dict) -> dict[str, str]:
        (deployment,) = by_kind(render(values), "Deployment")
        return {
            e["name"]: e.get("value", "")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    from foundation_operator.settings import Settings

    defaults = env_of({})
    assert defaults["FOUNDATION_CALLER_AUTH"] == "Required"
    assert "FOUNDATION_PRIVILEGED_NAMESPACES" not in defaults
    assert Settings.from_env(defaults).network_policy is True
    # Members admit the door: the operator's pods of the release's namespace.
    assert Settings.from_env(defaults).door_from == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "foundation-system"}
            },
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "fdn",
                    "app.kubernetes.io/name": "foundation-operator",
                }
            },
        }
    ]
    peer = {"namespaceSelector": {"matchLabels": {"team": "reporting"}}}
    chosen = env_of(
        {
            "agents": {
                "callerAuthentication": "Permissive",
                "privilegedNamespaces": ["gpu", "lab"],
                "networkPolicy": {"enabled": False, "from": [peer]},
            }
        }
    )
    settings = Settings.from_env(chosen)
    assert settings.caller_auth == "Permissive"
    assert settings.privileged_namespaces == ("gpu", "lab")
    assert settings.network_policy is False and settings.network_policy_from == [peer]


def test_the_console_holds_no_credentials_and_traces_go_where_the_values_say() -> None:
    objects = render(VALUE_SETS["console"])
    console = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("console")
    )
    pod = console["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert [v["configMap"]["name"] for v in pod["volumes"]] == ["kube-root-ca.crt"]
    assert pod["containers"][0]["command"][:2] == [
        "foundation-console",
        "--namespace=foundation-system",
    ]
    account = next(
        o
        for o in objects
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"].endswith("console")
    )
    assert account["automountServiceAccountToken"] is False
    assert not any(
        s.get("name", "").endswith("console")
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in o.get("subjects", [])
    )
    operator = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("operator")
    )
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FOUNDATION_TRACING_ENDPOINT"] == "http://c:4318"
    assert env["FOUNDATION_TRACING_SAMPLING_RATIO"] == "1"
    assert not any(o["metadata"]["name"].endswith("console") for o in render({}))
