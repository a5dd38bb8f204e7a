"""The dashboard's queries and the alert rules name only metrics that Foundation exports: a
renamed or removed metric fails here, not silently on a user's Grafana."""

from __future__ import annotations

import re
from pathlib import Path

import prometheus_client

import foundation_agent.chat.metrics  # noqa: F401  (registers the LLM metrics)
import foundation_operator.core.metrics  # noqa: F401  (registers on the default registry)
from foundation_agent.runtime import metrics as runtime
from foundation_agent.sidecar import metrics as sidecar

CHART = Path(__file__).resolve().parents[2] / "charts/foundation"
SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> set[str]:
    names = set()
    for registry in (prometheus_client.REGISTRY, runtime.REGISTRY, sidecar.REGISTRY):
        for family in registry.collect():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "info":
                names.add(family.name + "_info")
    return names


def used(text: str) -> set[str]:
    found = set(re.findall(r"\b(foundation_[a-z0-9_]+)", text))
    return {re.sub(r"(_bucket|_sum|_count)$", "", name) for name in found}


def test_the_dashboard_and_the_alerts_query_exported_metrics() -> None:
    names = exported()
    dashboard = used((CHART / "files/dashboard.json").read_text())
    alerts = used((CHART / "templates/_alerts.tpl").read_text())
    assert {"foundation_llm_tokens_total", "foundation_llm_tool_calls_total"} <= dashboard
    assert "foundation_llm_model_upstream" in alerts
    assert dashboard - names == set()
    assert alerts - names == set()
