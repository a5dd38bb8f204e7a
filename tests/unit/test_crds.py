"""The CRD files are generated from the pydantic models and stay structural."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from foundation_operator import crds
from foundation_operator.agents.api import AgentSpec

REPO = Path(__file__).resolve().parents[2]


def test_generated_files_match_the_code() -> None:
    files = crds.generated()
    assert {str(p) for p in files} == {
        "crds/agents.foundation.dev.yaml",
        "crds/workflows.foundation.dev.yaml",
        "crds/workflowtemplates.foundation.dev.yaml",
        "crds/schedules.foundation.dev.yaml",
        "charts/foundation/crds/agents.foundation.dev.yaml",
        "charts/foundation/crds/workflows.foundation.dev.yaml",
        "charts/foundation/crds/workflowtemplates.foundation.dev.yaml",
        "charts/foundation/crds/schedules.foundation.dev.yaml",
        "charts/foundation/files/operator-rules.yaml",
    }
    for name, text in files.items():
        path = REPO / name
        assert path.exists(), f"{path} missing: run python -m foundation_operator.crds"
        assert path.read_text() == text, f"{path} is stale: run python -m foundation_operator.crds"


def _walk(node: object, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("make", [crds.agent_crd, crds.workflow_crd])
def test_schema_is_structural(make) -> None:
    crd = make()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node, path
        if path.endswith(".properties") or path.endswith("x-kubernetes-preserve-unknown-fields"):
            continue
        if "properties" in node or "items" in node or "additionalProperties" in node:
            assert "type" in node, f"{path} has no type"
    status = schema["properties"]["status"]
    assert not [p for p, n in _walk(status) if "default" in n], "status must not be defaulted"


def test_names_columns_and_subresources() -> None:
    crd = crds.agent_crd()
    assert crd["spec"]["names"]["shortNames"] == ["ag"]
    assert crd["spec"]["names"]["categories"] == ["foundation"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    assert crds.workflow_crd()["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Ready", "Restarts", "State version", "Age"]


def test_spec_defaults_are_otp_production_settings() -> None:
    spec = AgentSpec.model_validate({"image": "i", "agent": "m:C"})
    assert spec.replicas == 1
    assert (
        spec.supervision.strategy,
        spec.supervision.max_restarts,
        spec.supervision.period_seconds,
        spec.supervision.on_exhausted,
    ) == ("OneForOne", 3, 120, "Stop")
    assert spec.persistence.store == "ConfigMap"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent", "no-colon"),
        ("replicas", -1),
        ("capabilities", ["UPPER"]),
        ("capabilities", ["x" * 49]),
        ("unknownField", 1),
    ],
)
def test_model_rejects_what_the_schema_rejects(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        AgentSpec.model_validate({"image": "i", "agent": "m:C", field: value})


def test_an_optional_object_stays_absent_unless_set() -> None:
    """`X | None` fields are not defaulted to {} by the API server: the sidecar's active health
    check (pool.healthCheck) was on for every upstream, probing GET / every 5 s, because the
    schema defaulted it (seen as a circuit opened by 404s on a model server)."""
    schema = crds.agent_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    upstream = schema["properties"]["spec"]["properties"]["sidecar"]["properties"]["upstreams"]
    pool = upstream["items"]["properties"]["pool"]
    assert pool["default"] == {}  # its own defaults (connections, keep-alive) still apply
    assert "default" not in pool["properties"]["healthCheck"]
    assert "x-foundation-optional" not in str(schema)
