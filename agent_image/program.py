"""What the image's console scripts share: `--version`, logging, and settings from the
environment, with a bad setting stopping the program with a message that names it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from foundation_common import __version__
from foundation_common.settings import SettingsError

S = TypeVar("S")


def command_line(
    prog: str, description: str | None, argv: list[str] | None, load: Callable[[], S]
) -> S:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return load()
    except SettingsError as exc:
        sys.exit(f"{prog}: {exc}")
