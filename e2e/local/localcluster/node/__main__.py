"""`python -m localcluster.node`: the test node (kubelet and volume provisioner)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from localcluster.layout import DEFAULT_RESTART_BACKOFF
from localcluster.node import kubelet


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster.node", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--restart-backoff", type=float, default=DEFAULT_RESTART_BACKOFF)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(kubelet.run(args.kubeconfig, args.state, args.restart_backoff))


if __name__ == "__main__":
    main()
