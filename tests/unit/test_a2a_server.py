"""A member's A2A server on loopback, called by a2a-sdk's own client: the card, exactly-once
sends, cancel of a queued task, streaming and the errors a client acts on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import (
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from test_agent_runtime import Gated

from foundation_agent.agents import CounterAgent
from foundation_agent.protocols.a2a_mapping import card_url
from foundation_agent.protocols.a2a_server import FoundationHandler, a2a_app
from foundation_agent.protocols.asgi import LazyApp, serve
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.peers import LocalTasks, Peers
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores.sqlite import SqliteStore
from waiting import until

# No API server here: callers without a token are let through, as Permissive members do.
OPEN = Gate(None, "ns", "agent", "agent", "Permissive")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    member: Member
    agent: Any


@contextlib.asynccontextmanager
async def served(agent: Any, path: Path) -> AsyncIterator[Served]:
    member = Member(agent, SqliteStore(path / "a.db"), Settings(agent_class="x:Y"))
    await member.load()
    member.start()
    peers = Peers("tally", "ns", "tally-0", None, LocalTasks(lambda: member, OPEN))
    handler = FoundationHandler(peers, agent.actions(), "1.2.3", "http://tally.ns.svc:8081/")
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        serve(LazyApp(lambda: a2a_app(handler, OPEN)), "127.0.0.1", port, stop)
    )
    url = f"http://127.0.0.1:{port}/"
    async with httpx.AsyncClient() as http:

        async def up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get(url + ".well-known/agent-card.json")).status_code == 200
            return False

        for _ in range(200):
            if await up():
                break
            await asyncio.sleep(0.02)
    try:
        yield Served(url, member, agent)
    finally:
        stop.set()
        await serving
        await member.stop()


def ask(message_id: str, action: str, input: Any = None, **fields: Any) -> SendMessageRequest:
    data: dict[str, Any] = {"action": action}
    if input is not None:
        data["input"] = input
    message = ParseDict(
        {"role": "ROLE_USER", "messageId": message_id, "parts": [{"data": data}], **fields},
        Message(),
    )
    return SendMessageRequest(message=message)


async def sent(client: Any, request: SendMessageRequest) -> dict[str, Any]:
    """The task a non-streaming send answers."""
    answers = [MessageToDict(event) async for event in client.send_message(request)]
    assert len(answers) == 1, answers
    return answers[0]["task"]


async def test_the_card_describes_the_agent_where_the_client_reached_it(tmp_path: Path) -> None:
    async with served(CounterAgent(), tmp_path) as server, httpx.AsyncClient() as http:
        card = (await http.get(server.url + ".well-known/agent-card.json")).json()
        assert card["name"] == "tally" and card["version"] == "1.2.3"
        assert card["supportedInterfaces"][0]["url"] == server.url
        assert {s["id"] for s in card["skills"]} == {"get", "increment"}
        schemas = card["capabilities"]["extensions"][0]["params"]["actions"]
        assert schemas["increment"]["properties"]["by"]["type"] == "integer"
        # Forwarding headers from a caller who relays for no one are not believed: the card
        # names where the call came, not where a caller would like others to go.
        proxied = (
            await http.get(
                server.url + ".well-known/agent-card.json",
                headers={
                    "Host": "10.0.0.1:6443",
                    "X-Forwarded-Uri": "/api/v1/namespaces/ns/services/tally:a2a/proxy"
                    "/.well-known/agent-card.json",
                },
            )
        ).json()
        assert proxied["supportedInterfaces"][0]["url"] == "http://10.0.0.1:6443/"


def test_card_urls_follow_the_proxy_that_forwarded_the_request() -> None:
    path = "/.well-known/agent-card.json"
    default = "http://tally.ns.svc:8081/"
    assert card_url({}, path, default) == default
    assert card_url({"host": "10.1.2.3:8081"}, path, default) == "http://10.1.2.3:8081/"
    prefixed = {"host": "127.0.0.1:15000", "x-forwarded-prefix": "/a2a/tally"}
    assert card_url(prefixed, path, default, trusted=True) == "http://127.0.0.1:15000/a2a/tally/"
    door = {"host": "api:6443", "x-forwarded-uri": "/p/proxy/.well-known/agent-card.json?x=1"}
    assert card_url(door, path, default, trusted=True) == "https://api:6443/p/proxy/"
    # Not from a proxy the member believes: the forwarding headers change nothing.
    spoofed = {
        "host": "10.1.2.3:8081",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
    }
    assert card_url(spoofed, path, default) == "http://10.1.2.3:8081/"
    assert card_url(door, path, default) == "http://api:6443/"


async def test_a_resent_message_is_the_same_task_never_a_second_effect(tmp_path: Path) -> None:
    async with served(CounterAgent(), tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        first = await sent(client, ask("m-1", "increment", {"by": 2}, contextId="c-1"))
        assert first["status"]["state"] == "TASK_STATE_COMPLETED"
        assert first["contextId"] == "c-1"
        assert first["artifacts"][0]["parts"][0]["data"] == {"count": 2}
        # The answer was lost; the client sends the same message again: the same task.
        again = await sent(client, ask("m-1", "increment", {"by": 2}, contextId="c-1"))
        assert again == first
        # A new message naming the task id is that task too.
        named = await sent(client, ask("m-2", "increment", {"by": 2}, taskId="m-1"))
        assert named["id"] == "m-1"
        assert server.member.state.count == 2
        got = MessageToDict(await client.get_task(GetTaskRequest(id="m-1")))
        assert got["status"]["state"] == "TASK_STATE_COMPLETED" and got["contextId"] == "c-1"
        await client.close()


async def test_cancel_a_queued_task_and_follow_one_by_streaming(tmp_path: Path) -> None:
    agent = Gated()
    async with served(agent, tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        now = SendMessageConfiguration(return_immediately=True)
        first = ask("first", "work", "first")
        first.configuration.CopyFrom(now)
        assert (await sent(client, first))["status"]["state"] in (
            "TASK_STATE_SUBMITTED",
            "TASK_STATE_WORKING",
        )
        second = ask("second", "work", "second")
        second.configuration.CopyFrom(now)
        assert (await sent(client, second))["status"]["state"] == "TASK_STATE_SUBMITTED"
        await until(lambda: server.member.running == "first", what="the first task running")
        cancelled = MessageToDict(await client.cancel_task(CancelTaskRequest(id="second")))
        assert cancelled["status"]["state"] == "TASK_STATE_CANCELED"
        with pytest.raises(TaskNotCancelableError, match="only a queued task"):
            await client.cancel_task(CancelTaskRequest(id="first"))
        # A stream that follows the running task to its end.
        streaming = await create_client(server.url, ClientConfig(streaming=True))
        events: list[dict[str, Any]] = []

        async def follow() -> None:
            async for event in streaming.send_message(ask("first", "work", "first")):
                events.append(MessageToDict(event))

        following = asyncio.create_task(follow())
        await until(lambda: events, what="the stream's first event")
        agent.gate.set()
        await asyncio.wait_for(following, 10)
        assert events[0]["task"]["status"]["state"] == "TASK_STATE_WORKING"
        assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert any(e.get("artifactUpdate", {}).get("artifact") for e in events)
        # The cancelled task never ran, even when its message comes again.
        resent = await sent(client, ask("second", "work", "second"))
        assert resent["status"]["state"] == "TASK_STATE_CANCELED"
        assert server.member.state.ran == ["first"]
        await client.close()
        await streaming.close()


async def test_errors_say_what_to_send(tmp_path: Path) -> None:
    async with served(CounterAgent(), tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        with pytest.raises(InvalidParamsError, match="unknown action 'explode'"):
            await sent(client, ask("m-1", "explode"))
        with pytest.raises(InvalidParamsError, match=r"input\.by"):
            await sent(client, ask("m-2", "increment", {"by": "many"}))
        with pytest.raises(TaskNotFoundError, match="no task 'nope'"):
            await client.get_task(GetTaskRequest(id="nope"))
        with pytest.raises(InvalidParamsError, match="pageSize must be from 1 to 100"):
            await client.list_tasks(ListTasksRequest(page_size=101))
        with pytest.raises(InvalidParamsError, match="pageToken"):
            await client.list_tasks(ListTasksRequest(page_token="not-a-token"))
        assert server.member.queued() == 0 and server.member.state.count == 0
        await client.close()


async def test_text_to_an_agent_without_chat_is_answered_with_what_it_takes(
    tmp_path: Path,
) -> None:
    """Not a protocol error: a Message (A2A lets an agent answer with one instead of a task)
    naming the actions, with their input schemas as data; no task is made."""
    async with served(CounterAgent(), tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        text = ParseDict(
            {"role": "ROLE_USER", "messageId": "hi-1", "parts": [{"text": "hello?"}]}, Message()
        )
        answers = [
            MessageToDict(e) async for e in client.send_message(SendMessageRequest(message=text))
        ]
        reply = answers[0]["message"]
        assert reply["role"] == "ROLE_AGENT" and reply["messageId"] == "hi-1.reply"
        assert "get, increment" in reply["parts"][0]["text"]
        actions = {a["name"]: a for a in reply["parts"][1]["data"]["actions"]}
        assert actions["increment"]["inputSchema"]["properties"]["by"]["type"] == "integer"
        assert server.member.records == {}
        await client.close()


async def test_list_tasks_pages_filters_and_orders_by_last_update(tmp_path: Path) -> None:
    """ListTasks as A2A 1.0 (3.1.4) has it: most recently updated first, pages by token
    ("" on the last), the total, filters by context, state and time, no artifacts unless
    asked."""
    async with served(CounterAgent(), tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        for i in range(7):
            context = "even" if i % 2 == 0 else "odd"
            await sent(client, ask(f"t-{i}", "increment", {"by": 1}, contextId=context))
        seen: list[dict[str, Any]] = []
        token = ""
        for _ in range(4):
            page = MessageToDict(
                await client.list_tasks(ListTasksRequest(page_size=3, page_token=token)),
                always_print_fields_with_no_presence=True,
            )
            assert page["totalSize"] == 7 and page["pageSize"] == 3
            seen += page["tasks"]
            token = page["nextPageToken"]
            if not token:
                break
        assert [t["id"] for t in seen] == [f"t-{i}" for i in reversed(range(7))]
        assert all(not t.get("artifacts") for t in seen)
        stamps = [t["status"]["timestamp"] for t in seen]
        assert stamps == sorted(stamps, reverse=True)
        odd = MessageToDict(
            await client.list_tasks(ListTasksRequest(context_id="odd", include_artifacts=True))
        )
        assert [t["id"] for t in odd["tasks"]] == ["t-5", "t-3", "t-1"]
        assert odd["tasks"][0]["artifacts"][0]["parts"][-1]["data"]["count"] == 6
        done = await client.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED))
        assert len(done.tasks) == 7
        working = await client.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_WORKING))
        assert list(working.tasks) == []
        later = ListTasksRequest()
        later.status_timestamp_after.FromSeconds(int(time.time()) + 3600)
        assert list((await client.list_tasks(later)).tasks) == []
        await client.close()


async def test_a_client_of_protocol_0_3_is_served_too(tmp_path: Path) -> None:
    """JSON-RPC without the A2A-Version header is 0.3 (message/send, kinds, lower-case states):
    the compatibility layer of a2a-sdk serves it from the same tasks."""
    async with served(CounterAgent(), tmp_path) as server, httpx.AsyncClient() as http:
        message = {
            "kind": "message",
            "role": "user",
            "messageId": "old-1",
            "parts": [{"kind": "data", "data": {"action": "increment", "input": {"by": 3}}}],
        }
        call = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}
        answer = (await http.post(server.url, json=call)).json()
        assert answer["result"]["kind"] == "task" and answer["result"]["id"] == "old-1"
        assert answer["result"]["status"]["state"] == "completed"
        again = (await http.post(server.url, json=call)).json()
        assert again["result"]["artifacts"] == answer["result"]["artifacts"]
        assert server.member.state.count == 3
