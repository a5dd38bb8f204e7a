"""The kopf handlers the operator registers. Resource handlers arrive with their CRDs.

They register on kopf's default registry, which also holds kopf's login handlers (kubeconfig,
in-cluster): importing this module is what registers them.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from foundation_operator import __version__

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Without the KopfPeering CRDs every replica would be active; until the chart installs
    # them, run standalone rather than warn on every start.
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    logger.info("foundation operator %s starting", __version__)


@kopf.on.probe(id="version")
async def version_probe(**_: Any) -> str:
    return __version__
