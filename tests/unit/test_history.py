"""The task history (foundation_common.history): filters, order and pages of one member, the
merge of several members' pages, and who sees what through a member's task API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_member_access import bearer, served

from foundation_agent.runtime.member import KEEP_INPUT_BYTES, done_record
from foundation_agent.runtime.records import public
from foundation_common import history
from foundation_common.history import BadQuery, Cursor, Query

T0 = 1_796_000_000.0  # 2026-12-...


def record(i: int, *, status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    return {
        "id": f"t-{i:05d}",
        "action": "increment",
        "status": status,
        "attempts": 1,
        "acceptedAt": T0 + i * 0.001,
        "finishedAt": T0 + i * 0.001 + 0.5 if status in ("succeeded", "failed") else None,
        **fields,
    }


def pages(records: list[dict[str, Any]], query: Query) -> list[list[str]]:
    """Every page of one member's listing, by the tokens it gives."""
    seen = []
    while True:
        chosen, total, remaining = history.select(records, query)
        page = history.page_of([public(r) for r in chosen], query, total, remaining)
        assert page.total == sum(1 for r in records if query.matches(r))
        seen.append([t["id"] for t in page.tasks])
        if not page.next_token:
            return seen
        query = Query.of({**query.params(), "pageToken": page.next_token})


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 50), min_size=0, max_size=60),
    size=st.integers(1, 7),
    members=st.integers(1, 4),
    order=st.sampled_from(history.ORDERS),
)
def test_paging_through_members_shows_every_task_once_newest_first(
    times: list[int], size: int, members: int, order: str
) -> None:
    """Whatever the members hold (equal times included), the merged pages list each task
    exactly once, in the order of the whole, and the last page's token is empty."""
    held: list[list[dict[str, Any]]] = [[] for _ in range(members)]
    for i, at in enumerate(times):
        done = i % 3 != 0
        held[i % members].append(
            {
                "id": f"t-{i}",
                "action": "a",
                "status": "succeeded" if done else "queued",
                "acceptedAt": T0 + at,
                "finishedAt": T0 + at + (i % 5) if done else None,
            }
        )
    query = Query(order=order, page_size=size)
    shown: list[dict[str, Any]] = []
    while True:
        answers = []
        for records in held:
            chosen, total, remaining = history.select(records, query)
            answers.append(history.page_of([public(r) for r in chosen], query, total, remaining))
        page = history.merge(answers, query, [f"m-{i}" for i in range(members)])
        assert page.total == len(times) and len(page.tasks) <= size
        shown += page.tasks
        if not page.next_token:
            break
        query = Query.of({**query.params(), "pageToken": page.next_token})
    everything = [r for records in held for r in records]
    expected = sorted(everything, key=query.key, reverse=True)
    assert [t["id"] for t in shown] == [r["id"] for r in expected]
    assert all(t["member"] == f"m-{int(t['id'][2:]) % members}" for t in shown)


def test_filters_by_status_action_context_sender_and_time() -> None:
    records = [
        record(1, context="chat-1", sender="alice"),
        record(2, status="failed", error="boom", sender="bob"),
        record(3, status="queued", action="get"),
        record(4, context="chat-1", sender="bob"),
    ]

    def ids(**params: str) -> list[str]:
        return [i for page in pages(records, Query.of(params)) for i in page]

    assert ids() == ["t-00004", "t-00003", "t-00002", "t-00001"]
    assert ids(status="failed,queued") == ["t-00003", "t-00002"]
    assert ids(action="get") == ["t-00003"]
    assert ids(context="chat-1") == ["t-00004", "t-00001"]
    assert ids(sender="bob") == ["t-00004", "t-00002"]
    since = history.rfc3339(T0 + 0.002)
    assert ids(since=since) == ["t-00004", "t-00003", "t-00002"]
    assert ids(until=since) == ["t-00001"]
    # updated order: the queued task's last change is its acceptance, the others' their end
    assert ids(order="updated") == ["t-00004", "t-00002", "t-00001", "t-00003"]
    assert ids(updatedSince=history.rfc3339(T0 + 0.1)) == ["t-00004", "t-00002", "t-00001"]
    assert Query.of({"sender": "bob"}).own("alice").matches(records[0]) is False
    assert [r["id"] for r in records if Query().own("alice").matches(r)] == ["t-00001"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"limit": "3"}, "unknown query parameters limit"),
        ({"status": "done"}, "status done is not a task status"),
        # Empty is not "any": the API's document says one or more (schemathesis sends it).
        ({"status": ""}, "names an empty status"),
        ({"status": "queued,,failed"}, "names an empty status"),
        ({"pageSize": "0"}, "pageSize '0': a whole number from 1 to 500"),
        ({"pageSize": "501"}, "from 1 to 500"),
        ({"pageSize": "many"}, "pageSize 'many'"),
        ({"since": "yesterday"}, "since 'yesterday' is not a time"),
        ({"updatedSince": ""}, "updatedSince '' is not a time"),
        ({"until": "2026-12-04T10:00:00"}, "needs a time zone"),
        ({"order": "random"}, "order 'random'"),
        ({"pageToken": "x" * 600}, "is not a token a listing"),
        ({"pageToken": "bm90LWpzb24"}, "is not a token a listing"),
        ({"action": "a" * 300}, "action is over 256 characters"),
    ],
)
def test_a_query_that_does_not_fit_is_refused_naming_the_parameter(
    params: dict[str, str], says: str
) -> None:
    with pytest.raises(BadQuery, match=says):
        Query.of(params)


def test_a_token_is_bound_to_its_order() -> None:
    token = Cursor("accepted", 1, "t-1").token()
    assert Query.of({"pageToken": token}).after == Cursor("accepted", 1, "t-1")
    with pytest.raises(BadQuery, match="not a token"):
        Query.of({"pageToken": token, "order": "updated"})


async def test_a_member_lists_anyones_tasks_for_a_reader_and_only_their_own_for_others() -> None:
    """bob may `get` the Agent's tasks: he sees alice's too; alice sees her own only, even
    when she asks for bob's; a caller with no identity is refused."""
    _, api, member = await served()
    async with TestClient(TestServer(api.app())) as http:
        for who, task in (("alice", "a-1"), ("bob", "b-1"), ("alice", "a-2")):
            sent = await http.post(
                "/v1/tasks?wait=5",
                json={"id": task, "action": "increment", "input": {"by": 1}},
                headers=bearer(f"{who}-token"),
            )
            assert sent.status == 202, await sent.text()

        async def listed(token: str, query: str = "") -> tuple[int, Any]:
            answer = await http.get(f"/v1/tasks{query}", headers=bearer(token))
            return answer.status, await answer.json()

        status, page = await listed("bob-token")
        assert status == 200 and [t["id"] for t in page["tasks"]] == ["a-2", "b-1", "a-1"]
        first = page["tasks"][0]
        assert first["sender"] == "alice" and first["result"] == {"count": 3}
        assert first["durationMs"] >= 0 and first["startedAt"] >= first["acceptedAt"]
        assert first["input"] == {"by": 1}  # what was asked stays in the history
        assert page["totalSize"] == 3 and page["nextPageToken"] == ""
        status, page = await listed("alice-token")
        assert [t["id"] for t in page["tasks"]] == ["a-2", "a-1"]
        status, page = await listed("alice-token", "?sender=bob")
        assert status == 200 and page["tasks"] == [] and page["totalSize"] == 0
        status, page = await listed("bob-token", "?pageSize=1")
        assert [t["id"] for t in page["tasks"]] == ["a-2"] and page["nextPageToken"]
        status, page = await listed("bob-token", f"?pageSize=2&pageToken={page['nextPageToken']}")
        assert [t["id"] for t in page["tasks"]] == ["b-1", "a-1"] and not page["nextPageToken"]
        status, page = await listed("bob-token", "?status=bogus")
        assert status == 400 and "not a task status" in page["error"]
        answer = await http.get("/v1/tasks")
        assert answer.status == 401
    await member.stop()


def test_a_page_of_ten_thousand_records_is_chosen_without_sorting_them_all() -> None:
    """The page comes from one pass with a heap of its size: the same page as a full sort."""
    records = [record(i) for i in range(10_000)]
    chosen, total, remaining = history.select(records, Query(page_size=50))
    assert total == remaining == 10_000
    assert [r["id"] for r in chosen] == [f"t-{i:05d}" for i in range(9_999, 9_949, -1)]
    assert json.loads(json.dumps(public(chosen[0])))["acceptedAt"].endswith("Z")


def test_a_done_task_keeps_a_small_input_and_the_size_of_a_large_one() -> None:
    small = done_record({"id": "t", "input": {"by": 1}}, None)
    assert small["input"] == {"by": 1}
    large = done_record({"id": "t", "input": "x" * (KEEP_INPUT_BYTES + 1)}, None)
    assert "input" not in large and large["inputBytes"] == KEEP_INPUT_BYTES + 3
    assert public({**large, "action": "a", "status": "succeeded"})["inputBytes"] == 2051


def test_the_cli_table_and_ages() -> None:
    from datetime import UTC, datetime

    from foundation_cli import history as cli_history

    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert cli_history.when("10m", now) == "2026-12-04T09:50:00Z"
    assert cli_history.when("2026-12-01T00:00:00Z", now) == "2026-12-01T00:00:00Z"
    shown = [
        {
            "id": "t-1",
            "action": "increment",
            "status": "failed",
            "member": "tally-1",
            "acceptedAt": "2026-12-04T09:59:58.123456Z",
            "durationMs": 1520.0,
            "sender": "alice",
            "attempts": 2,
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "error": "ValueError: no\nmore",
        }
    ]
    rows = cli_history.table(shown, wide=True).splitlines()
    assert rows[0].split() == [*cli_history.COLUMNS, *cli_history.WIDE]
    assert rows[1].split()[:8] == [
        "t-1",
        "increment",
        "failed",
        "tally-1",
        "2026-12-04T09:59:58Z",
        "1.5s",
        "alice",
        "2",
    ]
    assert rows[1].endswith("ValueError: no more")
    assert cli_history.table([]) == ""


async def test_a_listing_shows_a_large_queued_input_by_its_size() -> None:
    from foundation_agent.agents import TaskAgent
    from foundation_agent.runtime.member import Member
    from foundation_agent.runtime.settings import Settings
    from foundation_agent.stores import MemoryStore

    member = Member(TaskAgent(), MemoryStore(), Settings(agent_class="x:Y"))
    await member.load()
    member.ready = True  # taking tasks; no executor: they stay queued
    committer = asyncio.get_running_loop().create_task(member.journal.run())
    big = {"text": "x" * 10_000}
    await member.submit("big", "echo", big)
    await member.submit("small", "echo", {"text": "hi"})
    committer.cancel()
    page = member.history(Query())
    shown = {t["id"]: t for t in page.tasks}
    assert shown["small"]["input"] == {"text": "hi"}
    assert "input" not in shown["big"] and shown["big"]["inputBytes"] > 10_000
    assert member.task("big")["input"] == big  # reading the one task shows all of it
