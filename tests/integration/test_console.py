"""`foundation console` in a real browser (Debian's Chromium, driven by Playwright) against the
local cluster: an Agent's page and a task sent from its form; a Workflow's graph changing state
while it runs, and an approval given with its button; a chat turn; a view the user may not
see. No errors in the browser's console. The screenshots are docs/console.md's."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from test_access import account, token
from test_door import API_AUDIENCE, kubeconfig
from test_llm_agents import ScriptedServer, running

from kube import REPO, Kube
from scripted_model import ScriptedModel

pytestmark = pytest.mark.usefixtures("operator")
CLI = str(REPO / ".venv/bin/foundation")
SHOTS = REPO / "docs" / "images"
CHROMIUM = subprocess.run(
    [str(REPO / "e2e/local/browser"), "--bin"], capture_output=True, text=True, check=True
).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def console(kube: Kube, config: str) -> AsyncIterator[str]:
    """`foundation console` for the test's namespace, as a user runs it; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [CLI, "--kubeconfig", config, "-n", kube.ns, "console", "--listen", f"127.0.0.1:{port}"],
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(url, timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await kube.wait(up, timeout=30, what="the console serving")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-gpu",
            ],
        )
        yield launched
        await launched.close()


@asynccontextmanager
async def page_of(browser: Browser) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page, and the errors its console shows (each test asserts there are none, or only
    the refusal it expects)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []

    def noted(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", noted)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    try:
        yield page, errors
    finally:
        await context.close()


async def shot(page: Page, name: str) -> None:
    if SHOTS.is_dir():
        await page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


async def test_an_agent_its_tasks_and_a_task_sent_from_the_form(
    kube: Kube, cluster: str, browser: Browser
) -> None:
    await kube.create_agent("tally", replicas=2, sidecar={"enabled": False})
    await kube.wait_agent("tally", running(2), timeout=90, what="tally Running")
    async with console(kube, cluster) as url, page_of(browser) as (page, errors):
        await page.goto(url)
        row = page.locator('#agents-table tr[data-name="tally"]')
        await row.wait_for()
        assert "Running" in await row.inner_text() and "2/2" in await row.inner_text()
        await row.get_by_role("link", name="tally").click()
        await page.locator("#members tbody tr").nth(1).wait_for()
        assert await page.locator("#members tbody tr").count() == 2
        # The form is built from the action's input schema: `by`, an integer.
        await page.select_option("#action", "increment")
        await page.fill("#field-by", "3")
        await page.click("#send-task")
        await page.locator("#send-result .phase.succeeded").wait_for(timeout=30_000)
        assert '"count": 3' in await page.inner_text("#send-result")
        first = page.locator("#task-table tbody tr").first
        await first.wait_for()
        assert "increment" in await first.inner_text() and "succeeded" in await first.inner_text()
        await first.click()
        assert '"by": 3' in await page.inner_text("#task-detail")
        await shot(page, "agent")
        assert errors == []


async def test_a_workflows_graph_follows_it_and_an_approval_is_given_with_its_button(
    kube: Kube, cluster: str, browser: Browser
) -> None:
    await kube.create_agent(
        "worker", agent="foundation_agent.agents:TaskAgent", sidecar={"enabled": False}
    )
    await kube.wait_agent("worker", running(), timeout=90, what="worker Running")
    async with console(kube, cluster) as url, page_of(browser) as (page, errors):
        await kube.create_workflow(
            "graph",
            steps=[
                {"name": "fetch", "agent": "worker", "action": "sleep", "input": {"seconds": 3}},
                {
                    "name": "left",
                    "dependsOn": ["fetch"],
                    "agent": "worker",
                    "action": "echo",
                    "input": {"side": "left"},
                },
                {
                    "name": "right",
                    "dependsOn": ["fetch"],
                    "agent": "worker",
                    "action": "echo",
                    "input": {"side": "right"},
                },
                {
                    "name": "review",
                    "dependsOn": ["left", "right"],
                    "approval": {"message": "Ship {{ steps.left.result.side }}?"},
                },
                {
                    "name": "ship",
                    "dependsOn": ["review"],
                    "agent": "worker",
                    "action": "echo",
                    "input": {"shipped": True},
                },
            ],
        )
        await page.goto(f"{url}#/workflows/graph")
        fetch = page.locator('#dag g[data-step="fetch"]')
        # Live: the same page sees the step run, then end, from the watch (no reload).
        await page.locator('#dag g[data-step="fetch"][data-phase="Running"]').wait_for(
            timeout=60_000
        )
        await shot(page, "workflow-running")
        await page.locator('#dag g[data-step="fetch"][data-phase="Succeeded"]').wait_for(
            timeout=60_000
        )
        await page.locator('#dag g[data-step="review"][data-phase="Waiting"]').wait_for(
            timeout=60_000
        )
        await page.click('#dag g[data-step="review"]')
        assert "Ship left?" in await page.inner_text("#step-detail")
        await page.fill("#decision-message", "looks right")
        await shot(page, "workflow-approval")
        await page.click("#approve")
        await page.locator('#dag g[data-step="ship"][data-phase="Succeeded"]').wait_for(
            timeout=60_000
        )
        await page.locator("#workflow-status .phase.Succeeded").wait_for(timeout=30_000)
        await fetch.click()
        assert "worker-0" in await page.inner_text("#step-detail")
        await page.click('#dag g[data-step="review"]')
        assert "Approved by" in await page.inner_text("#step-detail")
        await page.goto(f"{url}#/workflows")
        await page.locator('#workflows-table tr[data-name="graph"] .phase.Succeeded').wait_for()
        await page.goto(f"{url}#/workflows/graph")
        await page.locator('#dag g[data-step="ship"]').wait_for()
        await shot(page, "workflow")
        assert errors == []


async def test_a_chat_turn_in_the_chat_box(kube: Kube, cluster: str, browser: Browser) -> None:
    async with ScriptedServer(ScriptedModel()) as model:
        await kube.create_agent(
            "helper",
            agent="foundation_agent.agents:ChatAgent",
            config={"upstream": "llm", "model": "scripted"},
            sidecar={"upstreams": [{"name": "llm", "url": model}]},
        )
        await kube.wait_agent("helper", running(), timeout=90, what="helper Running")
        async with console(kube, cluster) as url, page_of(browser) as (page, errors):
            await page.goto(f"{url}#/agents/helper")
            await page.click("#open-chat")
            await page.fill("#chat-message", "hello there")
            await page.click("#chat-send")
            reply = page.locator("#conversation .bubble.assistant")
            await reply.wait_for(timeout=60_000)
            assert "you said 'hello there'" in await reply.inner_text()
            assert "hello there" in await page.inner_text("#conversation .bubble.user")
            assert "tokens" in await page.inner_text("#chat-status")
            await shot(page, "chat")
            assert errors == []


async def test_a_view_the_user_may_not_see_says_which_permission_is_missing(
    kube: Kube, browser: Browser, tmp_path: Path
) -> None:
    await account(kube, "nobody")
    config = kubeconfig(tmp_path / "nobody", await token(kube, "nobody", API_AUDIENCE))
    async with console(kube, config) as url, page_of(browser) as (page, errors):
        await page.goto(url)
        await page.locator("#forbidden").wait_for()
        text = await page.inner_text("#forbidden")
        assert 'cannot list resource "agents" in API group "foundation.dev"' in text
        assert f"system:serviceaccount:{kube.ns}:nobody" in text
        await shot(page, "forbidden")
    # The browser logs the refused call itself (a 403): nothing else.
    assert all("403" in e for e in errors), errors


def test_the_console_serves_loopback_only() -> None:
    done = subprocess.run(
        [CLI, "console", "--listen", "0.0.0.0:8765"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "loopback only" in done.stderr
