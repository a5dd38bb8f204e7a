"""The objects an Agent wants, built without a cluster."""

import json

import pytest

from foundation_operator.agents import objects, pods
from foundation_operator.agents.api import AgentView, InvalidSpec


def agent(**spec: object) -> dict:
    return {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "writer", "namespace": "team", "uid": "u-1", "generation": 2},
        "spec": {"image": "foundation-agent:dev", "agent": "pkg.mod:Writer", **spec},
    }


def view(**spec: object) -> AgentView:
    return AgentView.from_body(agent(**spec))


def test_member_pod_is_owned_labelled_and_runs_the_runtime() -> None:
    pod = pods.member_pod(view(capabilities=["summarize"], env=[{"name": "X", "value": "1"}]), 1)
    meta = pod["metadata"]
    assert meta["name"] == "writer-1"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Agent",
            "name": "writer",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["foundation.dev/agent"] == "writer"
    assert meta["labels"]["foundation.dev/member"] == "1"
    assert meta["labels"]["capability.foundation.dev/summarize"] == "true"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["foundation-agent"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FOUNDATION_AGENT_CLASS"]["value"] == "pkg.mod:Writer"
    assert env["X"]["value"] == "1"
    assert pod["spec"]["serviceAccountName"] == "writer"
    assert pod["spec"]["restartPolicy"] == "Always"
    # <agent>-<i>.<agent>.<namespace>.svc on a cluster's DNS, through the headless Service.
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("writer-1", "writer")


def test_template_hash_follows_the_template_not_replicas() -> None:
    base = pods.template_hash(view())
    assert pods.template_hash(view(replicas=5)) == base
    assert pods.template_hash(view(image="other:1")) != base
    assert pods.template_hash(view(config={"k": 1})) != base
    assert pods.member_pod(view(), 0)["metadata"]["annotations"][objects.TEMPLATE_HASH] == base


def test_code_from_a_config_map_is_mounted_read_only_and_first_on_the_import_path() -> None:
    pod = pods.member_pod(view(code={"configMap": "writer-code"}, env=[{"name": "X"}]), 0)
    assert {"name": "code", "configMap": {"name": "writer-code"}} in pod["spec"]["volumes"]
    agent_container, sidecar = pod["spec"]["containers"]
    assert {
        "name": "code",
        "mountPath": "/var/lib/foundation/code",
        "readOnly": True,
    } in agent_container["volumeMounts"]
    names = [e["name"] for e in agent_container["env"]]
    assert {"name": "PYTHONPATH", "value": "/var/lib/foundation/code"} in agent_container["env"]
    assert names.index("PYTHONPATH") < names.index("X")  # spec.env may still override it
    # The sidecar runs no agent code.
    assert all(m["name"] != "code" for m in sidecar["volumeMounts"])
    # Without it, nothing of the kind.
    plain = pods.member_pod(view(), 0)
    assert all(v["name"] != "code" for v in plain["spec"]["volumes"])
    assert "PYTHONPATH" not in {e["name"] for e in plain["spec"]["containers"][0]["env"]}
    with pytest.raises(InvalidSpec, match=r"spec\.code\.configMap"):
        view(code={"configMap": "Not_A_Name"})


def test_pod_template_overrides_reach_the_pod() -> None:
    pod = pods.member_pod(
        view(
            podTemplate={
                "labels": {"team": "a"},
                "annotations": {"note": "x"},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "securityContext": {"runAsNonRoot": True},
            }
        ),
        0,
    )
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["annotations"]["note"] == "x"
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert pod["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True}


def test_role_allows_exactly_own_state_status_discovery_and_the_declared_calls() -> None:
    own = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["writer-0-state", "writer-1-state"],
            "verbs": ["get", "update", "patch"],
        },
        # Its Agent read, never patched: a member cannot change what it runs or holds.
        {
            "apiGroups": ["foundation.dev"],
            "resources": ["agents"],
            "resourceNames": ["writer"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["foundation.dev"],
            "resources": ["agents/status"],
            "resourceNames": ["writer"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["services", "endpoints"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    assert objects.role(view(replicas=2))["rules"] == own
    calling = view(replicas=2, calls={"agents": ["counter"], "capabilities": ["summarize"]})
    callees = objects.callees(calling, {"summarize": ["sum-a", "counter"], "other": ["x"]})
    assert callees == ["counter", "sum-a"]
    assert objects.role(calling, callees)["rules"] == [
        *own,
        {
            "apiGroups": ["access.foundation.dev"],
            "resources": ["agents/tasks", "agents/wake"],
            "resourceNames": ["counter", "sum-a"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["access.foundation.dev"],
            "resources": ["agents/actions", "agents/a2a"],
            "resourceNames": ["counter", "sum-a"],
            "verbs": ["get"],
        },
    ]
    binding = objects.role_binding(view(serviceAccountName="custom"))
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "custom", "namespace": "team"}
    ]


def test_capability_service_selects_the_capability_and_has_every_owner() -> None:
    owners = [objects.owner_reference(view(), controller=False)]
    service = objects.capability_service("team", "summarize", owners)
    assert service["metadata"]["name"] == "foundation-cap-summarize"
    assert service["spec"]["selector"] == {"capability.foundation.dev/summarize": "true"}
    assert service["metadata"]["ownerReferences"][0]["controller"] is False


def test_discovery_services_are_headless_on_the_members_port() -> None:
    """The task API on both; A2A (for the whole Agent) on the Agent's own Service."""
    owners = [objects.owner_reference(view(), controller=False)]
    http = {"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http"}
    agent = objects.agent_service(view())
    capability = objects.capability_service("team", "summarize", owners)
    assert agent["spec"]["clusterIP"] == capability["spec"]["clusterIP"] == "None"
    assert capability["spec"]["ports"] == [http]
    a2a = {"name": "a2a", "protocol": "TCP", "port": 8081, "targetPort": "a2a"}
    assert agent["spec"]["ports"] == [http, a2a]
    ports = pods.container(view())["ports"]
    assert {p["name"]: p["containerPort"] for p in ports} == {
        "http": 8080,
        "a2a": 8081,
        "metrics": 8082,
    }
    assert agent["spec"]["selector"] == {"foundation.dev/agent": "writer"}


def test_an_agent_service_from_before_a2a_gains_its_port() -> None:
    want = objects.agent_service(view())
    old = json.loads(json.dumps(want))
    old["spec"]["ports"] = old["spec"]["ports"][:1]
    assert objects.drifted(want, old)
    assert not objects.drifted(want, json.loads(json.dumps(want)))


def test_problems_the_schema_cannot_express() -> None:
    assert objects.problems(view()) == []
    dupes = objects.problems(view(capabilities=["a", "a"]))
    assert dupes == ["spec.capabilities lists a more than once"]
    reserved = objects.problems(view(env=[{"name": "FOUNDATION_AGENT_CLASS", "value": "x"}]))
    assert "FOUNDATION_AGENT_CLASS" in reserved[0]
    body = agent()
    body["metadata"]["name"] = "9lives"
    assert "DNS-1035" in objects.problems(AgentView.from_body(body))[0]


def test_unparseable_spec_names_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.replicas"):
        AgentView.from_body(agent(replicas=-3))


def test_each_member_gets_a_state_object_owned_by_the_agent() -> None:
    configmap = objects.state_object(view(), 1)
    assert (configmap["kind"], configmap["metadata"]["name"]) == ("ConfigMap", "writer-1-state")
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert "data" not in configmap  # the runtime writes it
    assert objects.state_object(view(persistence={"store": "None"}), 0) is None

    pvc_view = view(persistence={"store": "PVC", "size": "2Gi", "storageClassName": "fast"})
    claim = objects.state_object(pvc_view, 0)
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    pod = pods.member_pod(pvc_view, 0)
    token = {
        "name": "foundation-token",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "foundation.dev",
                        "expirationSeconds": 3600,
                        "path": "token",
                    }
                }
            ],
        },
    }
    assert pod["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        token,
        {"name": "state", "persistentVolumeClaim": {"claimName": "writer-0-state"}},
    ]
    token_mount = {
        "name": "foundation-token",
        "mountPath": "/var/run/secrets/foundation.dev/serviceaccount",
        "readOnly": True,
    }
    for container in pod["spec"]["containers"]:  # the runtime's and the sidecar's
        assert token_mount in container["volumeMounts"]
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert mounts == [
        {"name": "tmp", "mountPath": "/var/lib/foundation/tmp"},
        token_mount,
        {"name": "state", "mountPath": "/var/lib/foundation/state"},
    ]
    # The PVC is writable by the pod's fsGroup.
    assert pod["spec"]["securityContext"]["fsGroup"] == 10001
    assert pods.member_pod(view(), 0)["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        token,
    ]


def test_the_runtime_is_told_its_store_and_inbox() -> None:
    pod = pods.member_pod(
        view(inbox={"maxQueued": 7}, persistence={"store": "PVC", "groupCommit": False}), 0
    )
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["FOUNDATION_STATE_STORE"] == "PVC"
    assert env["FOUNDATION_INBOX_MAX_QUEUED"] == "7"
    assert env["FOUNDATION_GROUP_COMMIT"] == "false"
    assert env["FOUNDATION_REPORT_STATUS"] == "true"


def test_every_member_gets_the_sidecar_with_its_configuration() -> None:
    upstream = {
        "name": "llm",
        "url": "https://api.example.test",
        "rateLimit": {"requestsPerSecond": 5},
    }
    pod = pods.member_pod(view(sidecar={"upstreams": [upstream]}), 0)
    agent_container, sidecar = pod["spec"]["containers"]
    assert sidecar["name"] == "sidecar" and sidecar["command"] == ["foundation-sidecar"]
    assert sidecar["image"] == agent_container["image"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    config = json.loads(env["FOUNDATION_SIDECAR_CONFIG"])
    assert config["upstreams"][0]["rateLimit"] == {
        "requestsPerSecond": 5,
        "burst": None,
        "maxWaitMs": 0,
    }
    assert config["upstreams"][0]["circuitBreaker"]["failureThreshold"] == 5
    assert "enabled" not in config
    assert sidecar["readinessProbe"]["httpGet"]["port"] == "sidecar-admin"
    agent_env = {e["name"]: e.get("value") for e in agent_container["env"]}
    assert agent_env["FOUNDATION_SIDECAR_URL"] == "http://127.0.0.1:15000"
    # A sidecar change rolls the members; disabling it leaves the agent alone in its pod.
    assert pods.template_hash(view(sidecar={"upstreams": [upstream]})) != pods.template_hash(view())
    alone = pods.member_pod(view(sidecar={"enabled": False}), 0)
    assert [c["name"] for c in alone["spec"]["containers"]] == ["agent"]


def test_an_upstreams_api_key_goes_from_its_secret_to_the_sidecar_only() -> None:
    upstream = {
        "name": "open-ai",
        "url": "https://api.example.com",
        "authorization": {"secretKeyRef": {"name": "keys", "key": "openai"}},
    }
    pod = pods.member_pod(view(sidecar={"upstreams": [upstream]}), 0)
    agent_container, sidecar = pod["spec"]["containers"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["FOUNDATION_UPSTREAM_SECRET_OPEN_AI"] == {
        "name": "FOUNDATION_UPSTREAM_SECRET_OPEN_AI",
        "valueFrom": {"secretKeyRef": {"name": "keys", "key": "openai"}},
    }
    assert "FOUNDATION_UPSTREAM_SECRET_OPEN_AI" not in {e["name"] for e in agent_container["env"]}
    # The sidecar's config names the Secret, never holds its value.
    config = json.loads(env["FOUNDATION_SIDECAR_CONFIG"]["value"])
    assert config["upstreams"][0]["authorization"]["secretKeyRef"] == {
        "name": "keys",
        "key": "openai",
    }


def test_sidecar_rules_the_schema_cannot_say_are_invalid_specs() -> None:
    twice = [{"name": "llm", "url": "http://a.test"}, {"name": "llm", "url": "http://b.test"}]
    with pytest.raises(InvalidSpec, match=r"spec\.sidecar.*upstream names must be unique: llm"):
        AgentView.from_body(agent(sidecar={"upstreams": twice}))


def test_the_image_is_the_agents_own_or_the_operators_default() -> None:
    body = agent()
    assert AgentView.from_body(body, "registry.test/agent:1").image == "foundation-agent:dev"
    del body["spec"]["image"]
    with_default = AgentView.from_body(body, "registry.test/agent:1")
    assert pods.member_pod(with_default, 0)["spec"]["containers"][0]["image"] == (
        "registry.test/agent:1"
    )
    assert pods.member_pod(with_default, 0)["spec"]["containers"][1]["image"] == (
        "registry.test/agent:1"
    )
    with pytest.raises(InvalidSpec, match=r"spec\.image: set it, or give the operator a default"):
        AgentView.from_body(body)


def test_the_network_policy_admits_foundations_pods_the_given_peers_and_prometheus() -> None:
    import kubernetes_validate

    api_server = {"ipBlock": {"cidr": "10.0.0.1/32"}}
    policy = objects.network_policy(view(), [api_server])
    assert policy["spec"]["podSelector"] == {"matchLabels": {"foundation.dev/agent": "writer"}}
    calls, metrics = policy["spec"]["ingress"]
    assert [p["port"] for p in calls["ports"]] == [8080, 8081]
    assert calls["from"] == [
        {"podSelector": {"matchExpressions": [{"key": k, "operator": "Exists"}]}}
        for k in ("foundation.dev/agent", "foundation.dev/workflow")
    ] + [api_server]
    assert metrics == {"ports": [{"protocol": "TCP", "port": 8082}]}  # from anywhere
    for version in ("1.28.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(policy, version, strict=True)
    # Owned with the rest, or not at all when the operator is told so.
    kinds = [o["kind"] for o in objects.owned_objects(view(), (), [])]
    assert "NetworkPolicy" in kinds
    assert "NetworkPolicy" not in [o["kind"] for o in objects.owned_objects(view())]
    changed = json.loads(json.dumps(policy))
    changed["spec"]["ingress"][0]["from"] = []
    assert objects.drifted(policy, changed)


def test_the_members_binding_is_merged_with_what_other_operators_wrote() -> None:
    def subject(namespace: str, name: str) -> dict:
        return {"kind": "ServiceAccount", "name": name, "namespace": namespace}

    have = {"subjects": [subject("demo", "greeter"), subject("team", "gone"), subject("team", "a")]}
    mine = {("team", "a"), ("team", "b")}
    # `team` is this operator's: its index decides (gone goes, b comes); `demo` is another's.
    merged = objects.merged_subjects(have, mine, lambda namespace: namespace != "demo")
    assert merged == [subject("demo", "greeter"), subject("team", "a"), subject("team", "b")]
    binding = objects.members_binding(mine)
    assert binding["roleRef"]["name"] == binding["metadata"]["name"] == "foundation-agent-member"
