"""Files generated from the code: the CRDs (from the pydantic models), at the top and in the
Helm chart, and the chart's copy of the operator's RBAC rules (`foundation_operator.core.rbac`).

    python -m foundation_operator.crds            # rewrite them (`make crds`)
    python -m foundation_operator.crds --check    # exit 1 if a file is stale

pydantic's JSON Schema is turned into a Kubernetes structural schema: references inlined,
optional fields unwrapped, titles dropped, nested objects defaulted to {} so the API server
applies their fields' defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from foundation_common.resources import AGENT, GROUP, SCHEDULE, VERSION, WORKFLOW, WORKFLOW_TEMPLATE
from foundation_common.workflows import api as workflows
from foundation_operator.agents import api as agents
from foundation_operator.core import rbac
from foundation_operator.workflows import schedule as workflow_schedule

Schema = dict[str, Any]
REPO = Path(__file__).resolve().parents[1]
CHART = Path("charts/foundation")


# Marks a node that was `X | None` until its parent has seen it (then removed).
OPTIONAL = "x-foundation-optional"


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """A pydantic JSON Schema node as a structural OpenAPI v3 schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot make a structural schema of anyOf {schema['anyOf']}")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        out = structural({**options[0], **rest}, defs)
        if len(options) < len(schema["anyOf"]):
            out[OPTIONAL] = True  # X | None: absent unless set, so never defaulted to {}
        return out
    out: Schema = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key == "default" and value is None:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema's number form; OpenAPI v3.0 (Kubernetes) has a bound and a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" in out:
        out.pop("additionalProperties", None)  # structural: properties or additionalProperties
    if "properties" in out:
        for sub in out["properties"].values():
            # An object with defaults inside gets {} so the API server fills those in.
            defaults_inside = any("default" in p for p in sub.get("properties", {}).values())
            optional = sub.pop(OPTIONAL, False)
            if (
                sub.get("type") == "object"
                and "default" not in sub
                and "required" not in sub
                and not optional
                and defaults_inside
            ):
                sub["default"] = {}
    return out


def without_defaults(schema: Schema) -> Schema:
    """The schema minus every default (status is written by controllers, never defaulted)."""
    out = {k: v for k, v in schema.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: without_defaults(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = without_defaults(out[key])
    return out


def openapi_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd(
    model: type[Any],
    kind: str,
    plural: str,
    short_names: list[str],
    columns: list[Schema],
    subresources: Schema | None = None,
) -> Schema:
    subresources = {"status": {}} if subresources is None else subresources
    schema = openapi_schema(model)
    props = schema["properties"]
    # metadata is the API server's; status is written by the operator (and the runtime or the
    # runner), never defaulted.
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    if "status" in props:
        props["status"] = without_defaults(props["status"])
    schema["required"] = ["spec"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["foundation"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def agent_crd() -> Schema:
    return crd(
        agents.Agent,
        AGENT.kind,
        AGENT.plural,
        ["ag"],
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
            {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
            {"name": "State version", "type": "integer", "jsonPath": ".status.state.version"},
            AGE,
        ],
        # `kubectl scale agent`, and HorizontalPodAutoscalers: they write spec.replicas, which
        # the operator only reads, so nothing fights them.
        subresources={
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
    )


def workflow_crd() -> Schema:
    return crd(
        workflows.Workflow,
        WORKFLOW.kind,
        WORKFLOW.plural,
        ["wf"],
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Items", "type": "string", "jsonPath": ".status.itemProgress"},
            AGE,
            {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
            {"name": "Creator", "type": "string", "jsonPath": ".status.createdBy", "priority": 1},
        ],
    )


def workflow_template_crd() -> Schema:
    return crd(
        workflows.WorkflowTemplate,
        WORKFLOW_TEMPLATE.kind,
        WORKFLOW_TEMPLATE.plural,
        ["wft"],
        [AGE],
        subresources={},
    )


def schedule_crd() -> Schema:
    return crd(
        workflow_schedule.Schedule,
        SCHEDULE.kind,
        SCHEDULE.plural,
        ["sched"],
        [
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
            {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime"},
            {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
            {"name": "Workflow", "type": "string", "jsonPath": ".status.lastWorkflow"},
            AGE,
        ],
    )


HEADER = "# Generated by `python -m foundation_operator.crds` from {}. Do not edit.\n"


def generated() -> dict[Path, str]:
    """Path (from the repository's root) -> text of every generated file."""
    files: dict[Path, str] = {}
    for definition in (agent_crd(), workflow_crd(), workflow_template_crd(), schedule_crd()):
        name = f"{definition['metadata']['name']}.yaml"
        text = HEADER.format("the pydantic models") + yaml.safe_dump(definition, sort_keys=False)
        files[Path("crds") / name] = text
        files[CHART / "crds" / name] = text
    rules = {
        "clusterRules": rbac.cluster_rules(),
        "secretStoreRules": rbac.SECRET_STORE_RULES,
        "leaseRules": rbac.lease_rules(),
        "memberRole": {"name": rbac.MEMBER_CLUSTER_ROLE, "rules": rbac.MEMBER_CLUSTER_RULES},
        "peopleRoles": rbac.people_roles(),
    }
    files[CHART / "files" / "operator-rules.yaml"] = HEADER.format(
        "operator/core/rbac.py"
    ) + yaml.safe_dump(rules, sort_keys=False)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m foundation_operator.crds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository's root")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        path = args.root / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        sys.exit(f"stale CRDs (run `python -m foundation_operator.crds`): {', '.join(stale)}")
    for path in stale:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
