"""A task id is one request (issue 26): bound to its sender, its action and a digest of its
input. The same id with the same content returns the record it has; with other content it is
refused (409), naming what differs; A2A message ids the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from a2a.client import ClientConfig
from test_a2a_server import ask, create_client, sent, served

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.member import Member, Refused
from foundation_agent.runtime.records import ID_TAKEN
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import Commit
from foundation_agent.stores.sqlite import SqliteStore
from foundation_common.tasks import bound_id, input_digest


async def member_of(path: Path) -> Member:
    member = Member(CounterAgent(), SqliteStore(path), Settings(agent_class="x:Y"))
    await member.load()
    member.start()
    return member


async def test_the_same_id_with_other_content_is_409_naming_what_differs(tmp_path: Path) -> None:
    member = await member_of(tmp_path / "a.db")
    assert (await member.submit("t1", "increment", {"by": 2}))[0] == 202
    await member.finished("t1")
    # The same request again: its record, as before.
    again, record = await member.submit("t1", "increment", {"by": 2})
    assert again == 200 and record["result"] == {"count": 2}
    # Keys in another order are the same input.
    assert (await member.submit("t2", "increment", {"by": 1}))[0] == 202
    with pytest.raises(Refused) as other_input:
        await member.submit("t1", "increment", {"by": 3})
    assert other_input.value.status == 409 and other_input.value.reason == ID_TAKEN
    assert "task id t1 was sent with another input (digest " in other_input.value.message
    assert input_digest({"by": 2}) in other_input.value.message
    with pytest.raises(Refused) as other_action:
        await member.submit("t1", "get", None)
    assert other_action.value.status == 409
    assert "task id t1 was sent with action 'increment', not 'get'" in other_action.value.message
    assert member.state.count == 3  # nothing ran twice, nothing ran for the refused ones
    await member.stop()
    # After a restart, the digest kept with the completion record still decides.
    reloaded = await member_of(tmp_path / "a.db")
    with pytest.raises(Refused):
        await reloaded.submit("t1", "increment", {"by": 3})
    assert (await reloaded.submit("t1", "increment", {"by": 2}))[0] == 200
    await reloaded.stop()


async def test_a_record_from_before_digests_is_checked_by_action_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    old = {"id": "old", "action": "increment", "status": "succeeded", "result": {"count": 1}}
    old.update(attempts=1, seq=1, acceptedAt=1.0, finishedAt=2.0)
    await store.commit(Commit(version=1, saved_at=2.0, state='{"count":1}', put={"old": old}))
    await store.close()
    member = await member_of(tmp_path / "a.db")
    assert (await member.submit("old", "increment", {"by": 9}))[0] == 200
    with pytest.raises(Refused):
        await member.submit("old", "get", None)
    await member.stop()


@pytest.mark.parametrize("task_id", ["t1\n", "", "-t", "t/1", "x" * 129, "t 1", 7])
async def test_an_id_outside_its_pattern_is_refused_even_with_a_trailing_newline(
    tmp_path: Path, task_id: object
) -> None:
    """`$` alone in a Python pattern takes a trailing newline; JSON Schema's does not."""
    member = await member_of(tmp_path / "a.db")
    with pytest.raises(Refused) as refused:
        await member.submit(task_id, "increment", {"by": 1})
    assert refused.value.status == 400 and "id must be" in refused.value.message
    await member.stop()


def test_ids_derived_from_a_task_and_an_input_stay_ids() -> None:
    assert bound_id("c.tool.0.0", {"by": 5}) == bound_id("c.tool.0.0", {"by": 5})
    assert bound_id("c.tool.0.0", {"by": 5}) != bound_id("c.tool.0.0", {"by": 6})
    long = bound_id("x" * 128, {"by": 5})
    assert len(long) <= 128 and long != bound_id("x" * 127, {"by": 5})


async def test_an_a2a_message_id_sent_again_with_another_message_is_refused(
    tmp_path: Path,
) -> None:
    async with served(CounterAgent(), tmp_path) as server:
        client = await create_client(server.url, ClientConfig(streaming=False))
        first = await sent(client, ask("m-1", "increment", {"by": 2}))
        assert first["status"]["state"] == "TASK_STATE_COMPLETED"
        with pytest.raises(Exception, match="task id m-1 was sent with another input"):
            await sent(client, ask("m-1", "increment", {"by": 5}))
        assert server.member.state.count == 2
        await client.close()
