"""Package boundaries: the operator and the agent image never import each other; both (and the
test node) share only `foundation_common`, which imports neither."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "foundation_common": REPO / "common",
    "foundation_operator": REPO / "operator",
    "foundation_agent": REPO / "agent_image",
    "localcluster": REPO / "e2e" / "local" / "localcluster",
}
FORBIDDEN = {
    "foundation_common": {"foundation_operator", "foundation_agent", "localcluster"},
    "foundation_operator": {"foundation_agent", "localcluster"},
    "foundation_agent": {"foundation_operator", "localcluster"},
    "localcluster": {"foundation_operator", "foundation_agent"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_package_imports_what_it_must_not(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted(PACKAGES[package].rglob("*.py"))
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from foundation_operator.k8s import call\n")
    assert "foundation_operator" in imported_packages(module)


def loaded_by(*modules: str) -> list[str]:
    """The modules a fresh interpreter holds after importing `modules` (barred ones left out)."""
    script = (
        f"import sys, {', '.join(modules)}; "
        "print(' '.join(m for m in sys.modules if sys.modules[m] is not None))"
    )
    return subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()


def test_the_sidecar_starts_without_the_operator_or_the_api_client() -> None:
    """The sidecar in every member pod carries neither the operator nor kubernetes_asyncio's
    models (about 36 MB), and, until it first discovers members, no API client at all."""
    loaded = loaded_by("foundation_agent.sidecar.server")
    assert "foundation_operator" not in loaded
    assert "kubernetes_asyncio" not in loaded
    assert "httpx" not in loaded and "foundation_common.rest" not in loaded


def test_the_operator_runs_without_kubernetes_asyncio_though_kopf_would_load_it() -> None:
    """kopf imports kubernetes_asyncio's models when the package is importable (it is: the CLI
    uses it); the operator bars it, and its handlers, controllers and leadership load without
    it (about 35 MB less at start)."""
    loaded = loaded_by(
        "foundation_operator.__main__",
        "foundation_operator.handlers",
        "foundation_operator.leadership",
    )
    assert "kopf" in loaded
    assert not [m for m in loaded if m.startswith("kubernetes_asyncio")]


def test_the_member_runtime_starts_without_kubernetes_asyncio() -> None:
    """Every member pod runs the runtime: its ConfigMap store and status reports go through the
    light client, so none pays for kubernetes_asyncio's models (about 35 MB, 0.15 s of CPU)."""
    loaded = loaded_by(
        "foundation_agent.__main__",
        "foundation_agent.stores.configmap",
        "foundation_agent.runtime.status",
    )
    assert "foundation_common.rest" in loaded
    assert not [m for m in loaded if m.startswith("kubernetes_asyncio")]


def test_the_member_runtime_loads_a2a_server_parts_only_when_called() -> None:
    """A2A is served by every member, but a2a-sdk's server parts (and the handler over them)
    cost about 15 MB: they are imported on the first A2A request, not at start."""
    loaded = loaded_by("foundation_agent.__main__")
    assert "foundation_agent.protocols.asgi" in loaded
    assert not [m for m in loaded if m.startswith(("a2a.server", "starlette"))]
    assert "foundation_agent.protocols.a2a_server" not in loaded
