"""Log configuration: plain text for people, JSON lines for log pipelines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# kopf's per-object loggers attach these; `k8s_ref` becomes the same fields our own lines carry.
_KOPF_ONLY = {"settings", "k8s_skip", "k8s_ref"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra attributes of a record become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            if ref.get("namespace"):
                entry["namespace"] = ref["namespace"]
            entry[str(ref.get("kind", "object")).lower()] = ref["name"]
        entry.update(
            {
                k: v
                for k, v in vars(record).items()
                if k not in _RESERVED and k not in _KOPF_ONLY and not k.startswith("_")
            }
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
