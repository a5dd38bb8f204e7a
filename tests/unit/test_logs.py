import json
import logging

from foundation_operator.logs import JsonFormatter


def test_json_lines_carry_message_level_and_extra_fields() -> None:
    record = logging.LogRecord(
        "foundation", logging.WARNING, __file__, 1, "agent %s failed", ("a1",), None
    )
    record.namespace = "team-a"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "agent a1 failed"
    assert line["level"] == "WARNING"
    assert line["namespace"] == "team-a"
    assert line["time"].endswith("+00:00")


def test_kopf_object_lines_name_their_object_like_ours() -> None:
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "boom", (), None)
    record.k8s_ref = {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Agent",
        "name": "a1",
        "namespace": "team-a",
        "uid": "u",
    }
    record.settings = object()
    line = json.loads(JsonFormatter().format(record))
    assert (line["namespace"], line["agent"]) == ("team-a", "a1")
    assert "settings" not in line and "k8s_ref" not in line
