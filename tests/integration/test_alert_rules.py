"""The chart's alert rules under promtool (Debian's prometheus package, which the local cluster's
provisioning installs): rendered with the chart's defaults, checked, and unit-tested with the
series in tests/prometheus/alerts_test.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import helm_python
import yaml

from kube import REPO


def rendered_rules(values: dict | None = None) -> dict:
    chart = helm_python.Chart.load(REPO / "charts/foundation")
    try:
        files = chart.render(
            {**(values or {}), "prometheusRule": {"enabled": True}}, name="fdn", namespace="x"
        )
    finally:
        chart.close()
    rule = yaml.safe_load(files["foundation/templates/prometheusrule.yaml"])
    return {"groups": rule["spec"]["groups"]}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def test_every_alert_rule_passes_promtool_and_its_unit_tests(cluster: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rendered_rules(), sort_keys=False))
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
    shutil.copy(REPO / "tests/prometheus/alerts_test.yaml", tmp_path)
    tested = promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_thresholds_from_values_change_when_alerts_fire(cluster: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rendered_rules({"alerts": {"degradedMinutes": 3}})))
    shutil.copy(REPO / "tests/prometheus/alerts_test.yaml", tmp_path)
    tested = promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    # The tests expect no Degraded alert at 5 minutes: with 3 minutes it fires there.
    assert tested.returncode != 0
    assert "FoundationAgentDegraded, time: 5m" in tested.stdout + tested.stderr
