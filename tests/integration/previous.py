"""The previous release's code, for `helm upgrade` from it: its tree at PREVIOUS (the last commit
before people's identities came in), laid out as an installed environment of its own, and an
image name the test node runs from it (localcluster.layout.Layout.images).

No build: the packages are links to the tree's folders (as its pyproject's package-dir maps
them), its console scripts are written as pip writes them, and its dependencies are this
checkout's (.venv's site-packages, by a .pth file: the same versions the release was tested
with, and no editable finder of this checkout's, whose .pth is not read from there). Made once,
under ~/.cache/foundation (FOUNDATION_CACHE), keyed by the commit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from kube import REPO

PREVIOUS = "06ac294e7d6d13f30576e0c4c98bf2caad1842ed"
IMAGE = "foundation-agent:previous"
CACHE = Path(os.environ.get("FOUNDATION_CACHE", Path.home() / ".cache/foundation"))


def environment(commit: str = PREVIOUS) -> Path:
    """The bin folder of the previous release's environment (made if missing)."""
    root = CACHE / "previous" / commit
    done = root / "ready"
    if done.exists():
        return root / "venv" / "bin"
    tree, venv = root / "tree", root / "venv"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    project = tomllib.loads((tree / "pyproject.toml").read_text())
    for package, folder in project["tool"]["setuptools"]["package-dir"].items():
        (site / package).symlink_to(tree / folder)
    ours = REPO / ".venv" / "lib" / version / "site-packages"
    (site / "dependencies.pth").write_text(f"{ours}\n")
    python = venv / "bin" / "python"
    for script, target in project["project"]["scripts"].items():
        module, function = target.split(":")
        path = venv / "bin" / script
        path.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
        )
        path.chmod(0o755)
    done.write_text(commit)
    return venv / "bin"


def chart(into: Path, commit: str = PREVIOUS) -> Path:
    """The previous release's chart, extracted under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "charts/foundation"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "charts" / "foundation"


def crds(chart_folder: Path) -> Path:
    """The chart's CRDs, moved out of it into a folder of their own: a cluster has one set,
    applied with kubectl (Helm 4 would apply a chart's over the set there, in conflict with the
    manager that wrote it), as before an upgrade."""
    moved = chart_folder.parent / "crds"
    shutil.move(chart_folder / "crds", moved)
    return moved


def run_image_from(bin_folder: Path) -> None:
    """The test node runs IMAGE's commands from `bin_folder` (this checkout's otherwise)."""
    images = REPO / ".local-cluster" / "images.json"
    named = json.loads(images.read_text()) if images.exists() else {}
    images.write_text(json.dumps({**named, IMAGE: str(bin_folder)}))
