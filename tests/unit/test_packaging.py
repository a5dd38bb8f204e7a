"""The distribution installs its import packages and never shadows the standard library."""

import importlib.metadata
import operator
import sys
from pathlib import Path

import foundation_agent
import foundation_operator

REPO = Path(__file__).resolve().parents[2]


def test_operator_folder_is_foundation_operator_and_stdlib_operator_is_intact() -> None:
    assert Path(foundation_operator.__file__).parent == REPO / "operator"
    assert Path(foundation_agent.__file__).parent == REPO / "agent_image"
    assert Path(operator.__file__).parent != REPO / "operator"
    assert operator.itemgetter(1)([0, 1]) == 1
    assert str(REPO) not in [str(Path(p).resolve()) for p in sys.path if p]


def test_console_scripts_point_at_the_entry_points() -> None:
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["foundation-operator"] == "foundation_operator.__main__:main"
    assert scripts["foundation-agent"] == "foundation_agent.__main__:main"
    assert scripts["foundation-sidecar"] == "foundation_agent.sidecar.server:main"


def test_agent_image_dockerfile_runs_as_non_root_with_the_agent_entrypoint() -> None:
    dockerfile = (REPO / "agent_image" / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile
    assert 'ENTRYPOINT ["foundation-agent"]' in dockerfile


def test_the_image_build_copies_every_package_folder() -> None:
    """A package folder left out of the Dockerfile's COPY lines builds an image that fails on
    its first import."""
    import tomllib

    folders = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ].values()
    dockerfile = (REPO / "agent_image" / "Dockerfile").read_text()
    assert sorted(folders) == sorted({"operator", "agent_image", "common", "runner", "cli"})
    for folder in folders:
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """setuptools builds only the listed packages into a wheel (the image's install); an
    editable install finds the others anyway, so only this test notices one left out."""
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for package, folder in setup["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *parts)))
    assert found == listed


def test_the_cli_without_its_extra_says_how_to_install_it() -> None:
    """As where the package is installed without `[cli]` (kubernetes_asyncio not importable)."""
    import subprocess

    script = "import sys; sys.modules['kubernetes_asyncio'] = None; import foundation_cli.main"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'foundation[cli]'" in done.stderr
