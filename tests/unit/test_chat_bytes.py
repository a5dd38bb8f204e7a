"""Chat sessions are bounded by bytes too (issue 26): a session's history by
`maxHistoryBytes`, dropping whole turns; all sessions by `maxStateBytes`, the least recently
used first. The review's case (a ChatAgent holding 600 KB of sessions, then one `history` call
whose result the store could not take) cannot arise with the defaults: a session's history
answer fits the result budget, and all sessions stay under 384 KiB."""

from __future__ import annotations

import json

from foundation_agent.agents import ChatAgent
from foundation_agent.agents.chat import ChatState, Session, SessionInput
from foundation_agent.chat import history
from foundation_agent.chat.config import ChatConfig


def turn(n: int, text: str = "") -> list[dict]:
    return [
        {"role": "user", "content": f"u{n}{text}"},
        {"role": "assistant", "content": f"a{n}{text}"},
    ]


def test_a_session_keeps_whole_turns_within_its_bytes() -> None:
    big = "x" * 1000
    messages = turn(1, big) + turn(2, big) + turn(3, big)
    assert history.size(messages) == len(json.dumps(messages, separators=(",", ":")))
    kept, dropped = history.trim(messages, 100, max_bytes=history.size(turn(2, big) + turn(3, big)))
    assert kept == turn(2, big) + turn(3, big) and dropped == 2
    kept, dropped = history.trim(messages, 100, max_bytes=3000)
    assert kept == turn(3, big) and dropped == 4
    # The newest turn is kept whole even when it alone is larger.
    assert history.trim(messages, 100, max_bytes=10) == (turn(3, big), 4)
    # Both bounds: the count first, then the bytes.
    assert history.trim(messages, 4, max_bytes=1_000_000) == (turn(2, big) + turn(3, big), 2)


def test_sessions_past_the_state_bytes_go_least_recent_first_never_the_one_in_use() -> None:
    sessions = {"a": (3.0, 400), "b": (1.0, 400), "c": (2.0, 400), "now": (0.5, 400)}
    assert history.over_bytes(sessions, 1600, keep="now") == []
    assert history.over_bytes(sessions, 1000, keep="now") == ["b", "c"]
    assert history.over_bytes({"now": (1.0, 9000)}, 1000, keep="now") == []


async def test_a_session_at_its_bound_answers_history_within_the_result_budget() -> None:
    config = ChatConfig.parse({"upstream": "llm"})
    assert config.max_history_bytes == 64 * 1024 and config.max_state_bytes == 384 * 1024
    # A session at its byte bound: its history answer fits the default result budget.
    kept, _ = history.trim(
        [m for n in range(400) for m in turn(n, "y" * 500)], 10_000, config.max_history_bytes
    )
    agent = ChatAgent({"upstream": "llm"})
    state = ChatState(sessions={"s": Session(messages=kept, turns=1)})
    answer, _ = await agent.history(state, SessionInput(session="s"))
    assert len(json.dumps(answer, separators=(",", ":"))) < 256 * 1024
