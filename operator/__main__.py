"""`foundation-operator`: configure logging and metrics, then run the kopf operator."""

from __future__ import annotations

import asyncio
import logging
import sys

import kopf

from foundation_operator import handlers, logs, metrics  # noqa: F401 (registers handlers)
from foundation_operator.settings import Settings, SettingsError

logger = logging.getLogger("foundation_operator")


async def run(settings: Settings) -> None:
    await kopf.operator(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=settings.liveness_endpoint,
    )


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"foundation-operator: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level, settings.log_format)
    metrics.serve(settings.metrics_port)
    logger.info(
        "watching %s; health on %s; metrics on :%s",
        ",".join(settings.namespaces) or "all namespaces",
        settings.liveness_endpoint,
        settings.metrics_port or "(off)",
    )
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
