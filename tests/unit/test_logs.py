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
