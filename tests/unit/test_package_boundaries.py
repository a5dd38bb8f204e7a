"""Imports run one way. The operator, the Workflow runner, the CLI and the agent image are
programs of their own: each imports `foundation_common` and never another of them, and
`foundation_common` imports none of them. Inside the operator, `core` is generic: it imports
neither a resource's package (`agents`, `workflows`) nor the modules that wire them up, and
the two resources do not import each other. No module imports itself back through others."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# import package -> folder
PACKAGES = {
    "foundation_common": REPO / "common",
    "foundation_operator": REPO / "operator",
    "foundation_runner": REPO / "runner",
    "foundation_cli": REPO / "cli",
    "foundation_agent": REPO / "agent_image",
    "localcluster": REPO / "e2e" / "local" / "localcluster",
}
PROGRAMS = {"foundation_operator", "foundation_runner", "foundation_cli", "foundation_agent"}
# What each package may import of the others (itself always).
ALLOWED = {
    "foundation_common": set(),
    **{program: {"foundation_common"} for program in PROGRAMS},
    "localcluster": {"foundation_common"},  # the test node: none of the programs
}
# Inside the operator: module prefix -> prefixes of the operator it must not import.
OPERATOR = "foundation_operator"
LAYERS = {
    f"{OPERATOR}.core": (f"{OPERATOR}.",),  # anything of the operator but core itself
    f"{OPERATOR}.agents": (f"{OPERATOR}.workflows",),
    f"{OPERATOR}.workflows": (f"{OPERATOR}.agents",),
}
LAYER_EXCEPTIONS = {f"{OPERATOR}.core"}


def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Every module's dotted name -> its file."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(path: Path, typing_only: bool = True) -> set[str]:
    """The dotted names a module imports anywhere (inside functions too): for `from a.b import
    c`, both `a.b` and `a.b.c` (c may be a module). `typing_only=False` leaves out what is
    imported for type checkers only (`if TYPE_CHECKING:`), which never runs."""
    names = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (
            not typing_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
        ):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return names


def against_the_grain(packages: dict[str, Path]) -> list[str]:
    """Every import that breaks the rules above, as `module -> imported`."""
    found = []
    for module, path in modules(packages).items():
        package = module.split(".")[0]
        for name in sorted(imported(path)):
            top = name.split(".")[0]
            if top in packages and top != package and top not in ALLOWED[package]:
                found.append(f"{module} -> {name}")
            for layer, barred in LAYERS.items():
                inside = module == layer or module.startswith(f"{layer}.")
                if inside and name.startswith(barred) and not name.startswith(f"{layer}"):
                    found.append(f"{module} -> {name}")
    return found


def cycles(packages: dict[str, Path]) -> list[list[str]]:
    """Groups of modules that import one another, directly or through others (Tarjan)."""
    known = modules(packages)
    edges = {
        m: sorted(n for n in imported(p, typing_only=False) if n in known and n != m)
        for m, p in known.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while (top := stack.pop()) != module:
                group.append(top)
            if group:
                found.append(sorted([*group, module]))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_every_import_runs_one_way() -> None:
    assert against_the_grain(PACKAGES) == []


def test_no_modules_import_each_other() -> None:
    assert cycles(PACKAGES) == []


def users_of_common(packages: dict[str, Path]) -> dict[str, set[str]]:
    """Each module of foundation_common -> the programs that import it, directly or through
    other modules of foundation_common."""
    known = modules(packages)
    common = {m for m in known if m.startswith("foundation_common.")}
    imports = {m: {n for n in imported(p) if n in common} for m, p in known.items()}
    users: dict[str, set[str]] = {m: set() for m in common}
    for module in known:
        program = module.split(".")[0]
        if program not in PROGRAMS:
            continue
        seen, pending = set(), list(imports[module])
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending.extend(imports[name])
        for name in seen:
            users[name].add(program)
    return users


def test_common_holds_only_what_two_programs_use() -> None:
    packages = {"foundation_common": PACKAGES["foundation_common"]} | {
        p: PACKAGES[p] for p in PROGRAMS
    }
    lonely = {
        module: sorted(programs)
        for module, programs in users_of_common(packages).items()
        if len(programs) < 2 and not module.endswith(".__init__")
    }
    assert lonely == {}


def tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    """A copy of the layout with its own modules, for the checks to judge."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {package: tmp_path / folder.name for package, folder in PACKAGES.items()}


@pytest.mark.parametrize(
    ("files", "wrong"),
    [
        # The runner reaching into the operator, at module level or inside a function.
        (
            {"runner/run.py": "from foundation_operator.core import status\n"},
            "foundation_runner.run -> foundation_operator.core",
        ),
        (
            {"cli/main.py": "def f():\n    import foundation_agent.client\n"},
            "foundation_cli.main -> foundation_agent.client",
        ),
        (
            {"common/x.py": "from foundation_operator.agents.api import AgentView\n"},
            "foundation_common.x -> foundation_operator.agents.api",
        ),
        # Core importing a resource, and one resource importing the other.
        (
            {"operator/core/owned.py": "from foundation_operator.agents import objects\n"},
            "foundation_operator.core.owned -> foundation_operator.agents",
        ),
        (
            {"operator/core/owned.py": "from foundation_operator import handlers\n"},
            "foundation_operator.core.owned -> foundation_operator.handlers",
        ),
        (
            {"operator/workflows/objects.py": "from foundation_operator.agents.api import X\n"},
            "foundation_operator.workflows.objects -> foundation_operator.agents.api",
        ),
    ],
)
def test_a_wrong_import_is_found(tmp_path: Path, files: dict[str, str], wrong: str) -> None:
    assert wrong in against_the_grain(tree(tmp_path, files))


def test_right_imports_are_not_found(tmp_path: Path) -> None:
    files = {
        "runner/run.py": "from foundation_common.workflows import plan\n",
        "operator/agents/objects.py": "from foundation_operator.core import rbac\n",
        "operator/handlers.py": "from foundation_operator.agents import controller\n",
    }
    assert against_the_grain(tree(tmp_path, files)) == []


def test_a_cycle_is_found(tmp_path: Path) -> None:
    files = {
        "common/a.py": "from foundation_common import b\n",
        "common/b.py": "def f():\n    from foundation_common.c import x\n",
        "common/c.py": "import foundation_common.a\n",
        "common/d.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import foundation_common.e\n"
        ),
        "common/e.py": "import foundation_common.d\n",
    }
    assert cycles(tree(tmp_path, files)) == [
        ["foundation_common.a", "foundation_common.b", "foundation_common.c"]
    ]


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


def test_the_image_does_not_carry_kubernetes_asyncio() -> None:
    """kopf imports kubernetes_asyncio's models whenever the package is importable (about 35 MB
    and 0.4 s of CPU at the operator's start): only the CLI's extra and the tests install it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("kubernetes")]
    assert [
        d for d in project["optional-dependencies"]["cli"] if d.startswith("kubernetes_asyncio")
    ]


def test_the_operator_runs_where_kubernetes_asyncio_is_not_installed() -> None:
    """As in the image: the operator's handlers, controllers and leadership load without it."""
    script = (
        "import sys; sys.modules['kubernetes_asyncio'] = None; "  # as if not installed
        "import foundation_operator.__main__, foundation_operator.handlers, "
        "foundation_operator.leadership; print('kopf' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert loaded.stdout.split() == [b"True"]


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
