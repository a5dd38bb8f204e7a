"""docs/getting-started.md, followed as a newcomer does on the local cluster: the agent class
from a ConfigMap, tasks with the CLI, a member killed, a code change rolled out, the metrics
through the API server's proxy. The page's code blocks are the example files themselves."""

from __future__ import annotations

import asyncio
import re

import pytest
from test_cli import cli

from kube import REPO, Kube, is_ready

pytestmark = pytest.mark.usefixtures("operator")
PAGE = REPO / "docs/getting-started.md"
EXAMPLE = REPO / "examples/greeter"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)


def test_the_page_shows_the_example_files_as_they_are() -> None:
    assert (EXAMPLE / "greeter.py").read_text() in blocks("python")
    manifest = (EXAMPLE / "agent.yaml").read_text()
    shown = blocks("yaml")[0]
    assert shown in manifest  # the file adds only its comment header


async def kubectl(kube: Kube, *args: str, stdin: str | None = None) -> str:
    return await asyncio.to_thread(kube.kubectl, *args, stdin=stdin)


async def test_a_first_agent_from_a_config_map_as_the_page_shows(
    kube: Kube, cluster: str, tmp_path
) -> None:
    # 2. Run it as an Agent.
    await kubectl(kube, "create", "configmap", "greeter-code", f"--from-file={EXAMPLE}/greeter.py")
    await kubectl(kube, "apply", "-f", str(EXAMPLE / "agent.yaml"))
    await kubectl(kube, "wait", "--for=condition=Ready", "agent/greeter", "--timeout=120s")
    assert re.search(r"greeter\s+Running\s+1/1", await kubectl(kube, "get", "agents"))

    # 3. Tasks: the same id twice is one task; a new one sees the state; bad input is named.
    greet_ada = ("send", "greeter", "greet", "--input", '{"name": "Ada"}')
    code, first, _ = await cli(kube, cluster, *greet_ada, "--id", "ada-1", "--wait")
    assert code == 0 and first["result"] == {"message": "Hello, Ada!", "times": 1}
    code, again, _ = await cli(kube, cluster, *greet_ada, "--id", "ada-1", "--wait")
    assert code == 0 and again["result"]["times"] == 1
    code, second, _ = await cli(kube, cluster, *greet_ada, "--wait")
    assert code == 0 and second["result"]["times"] == 2
    code, _, err = await cli(kube, cluster, "send", "greeter", "greet", "--input", '{"name": ""}')
    assert code == 6 and "input.name" in err

    # 4. A member killed: made again, its state loaded back.
    old = await kube.pod("greeter-0")
    await kubectl(kube, "delete", "pod", "greeter-0")
    await kube.wait_pod(
        "greeter-0",
        lambda p: p["metadata"]["uid"] != old["metadata"]["uid"],
        timeout=60,
        what="greeter-0 made again",
    )
    code, third, _ = await cli(kube, cluster, *greet_ada, "--wait")
    assert code == 0 and third["result"]["times"] == 3

    # 5. A code change: the ConfigMap updated, the members rolled by an annotation.
    source = (EXAMPLE / "greeter.py").read_text()
    changed = source.replace(
        'f"{greeting}, {input.name}!"', 'f"{greeting}, {input.name}! (visit {times})"'
    )
    assert changed != source
    (tmp_path / "greeter.py").write_text(changed)
    configmap = await kubectl(
        kube,
        "create",
        "configmap",
        "greeter-code",
        f"--from-file={tmp_path}/greeter.py",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    await kubectl(kube, "apply", "-f", "-", stdin=configmap)
    rolled = await kube.pod("greeter-0")
    await kubectl(
        kube,
        "patch",
        "agent",
        "greeter",
        "--type=merge",
        "-p",
        '{"spec": {"podTemplate": {"annotations": {"example.com/code-version": "2"}}}}',
    )
    await kube.wait_pod(
        "greeter-0",
        lambda p: p["metadata"]["uid"] != rolled["metadata"]["uid"] and is_ready(p),
        timeout=90,
        what="greeter-0 rolled out and ready",
    )
    code, fourth, _ = await cli(kube, cluster, *greet_ada, "--wait")
    assert code == 0 and fourth["result"] == {"message": "Hello, Ada! (visit 4)", "times": 4}

    # 6. Its metrics, through the API server's proxy.
    metrics = await kubectl(
        kube, "get", "--raw", f"/api/v1/namespaces/{kube.ns}/pods/greeter-0:8082/proxy/metrics"
    )
    assert re.search(
        r'^foundation_agent_tasks_total\{action="greet",outcome="succeeded"\} 1\.0$',
        metrics,
        re.M,
    ), metrics

    # 7. Clean up.
    await kubectl(kube, "delete", "agent", "greeter")
    await kubectl(kube, "delete", "configmap", "greeter-code")

    async def deleted() -> bool:
        return await kube.agent("greeter") is None

    await kube.wait(deleted, 60, "greeter deleted")
