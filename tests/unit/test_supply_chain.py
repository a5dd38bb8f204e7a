"""What the image and CI install is pinned and checked (issue 26): every dependency in a lock
file with its hashes, installed with --require-hashes; the locks name no machine's paths."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"^([A-Za-z0-9_.-]+)==([^ \\]+) \\$")


def locked(path: Path) -> dict[str, list[str]]:
    """{normalised name: its hashes} of a pip-compile lock file."""
    out: dict[str, list[str]] = {}
    name = None
    for line in path.read_text().splitlines():
        pinned = PINNED.match(line)
        if pinned:
            name = re.sub(r"[-_.]+", "-", pinned.group(1)).lower()
            out[name] = []
        elif line.strip().startswith("--hash=sha256:") and name is not None:
            out[name].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return out


def names(requirements: list[str]) -> set[str]:
    return {
        re.sub(r"[-_.]+", "-", re.split(r"[<>=!\[; ]", r, maxsplit=1)[0]).lower()
        for r in requirements
        if not r.startswith("foundation[")
    }


def test_every_dependency_is_locked_with_its_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, dev = locked(REPO / "requirements.lock"), locked(REPO / "requirements-dev.lock")
    assert names(project["dependencies"]) <= set(runtime)
    assert names(project["dependencies"] + project["optional-dependencies"]["dev"]) <= set(dev)
    for lock in (runtime, dev):
        assert all(hashes and all(len(h) == 64 for h in hashes) for hashes in lock.values()), [
            n for n, h in lock.items() if not h
        ]
    for path in ("requirements.lock", "requirements-dev.lock"):
        text = (REPO / path).read_text()
        assert "file://" not in text and "--index-url" not in text.replace("emit-index-url", "")
        assert "--find-links" not in text.replace("emit-find-links", "")


def test_the_image_and_the_venv_install_only_what_is_locked() -> None:
    dockerfile = (REPO / "agent_image/Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock" in dockerfile
    assert "pip wheel --no-cache-dir --no-deps" in dockerfile
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert "cyclonedx-py requirements" in (REPO / ".ci/run").read_text()


def test_the_image_is_built_on_a_base_pinned_by_digest() -> None:
    """Every stage starts from the one base named by its digest, of the Python the lock was
    made for; `make pin-base` moves it."""
    dockerfile = (REPO / "agent_image/Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", base[1]), base[1]
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages and set(stages) == {"${PYTHON_IMAGE}"}, stages
    assert "BASE_TAG := 3.11-slim" in (REPO / "Makefile").read_text()
