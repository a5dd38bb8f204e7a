"""The waker of the callers that reach members themselves (a runner, a sidecar): one ask per
Agent in its interval, shared by the callers in it; a capability's Agents from its Service."""

from __future__ import annotations

import asyncio
from typing import Any

from foundation_common.rest import ApiError
from foundation_common.wake import Waker, owners, wake_path


class Api:
    def __init__(self, sleeping: set[str], forbidden: set[str] = frozenset()) -> None:
        self.sleeping, self.forbidden = sleeping, forbidden
        self.calls: list[str] = []

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        self.calls.append(path)
        await asyncio.sleep(0.01)
        agent = path.split("/")[-2]
        if agent in self.forbidden:
            raise ApiError(403, '{"message": "forbidden"}')
        return {"sleeps": agent in self.sleeping}

    async def get(self, path: str) -> dict[str, Any]:
        self.calls.append(path)
        owner = {"apiVersion": "foundation.dev/v1alpha1", "kind": "Agent"}
        return {
            "metadata": {
                "ownerReferences": [
                    {**owner, "name": "b"},
                    {**owner, "name": "a"},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-an-agent"},
                ]
            }
        }


async def test_one_ask_an_interval_shared_by_every_caller_in_it() -> None:
    api, clock = Api({"sleepy", "secret"}, forbidden={"secret"}), [0.0]

    async def client() -> Api:
        return api

    waker = Waker(client, "team", every=5.0, clock=lambda: clock[0])
    answers = await asyncio.gather(*(waker.agent("sleepy") for _ in range(10)))
    assert answers == [True] * 10
    assert api.calls == [wake_path("team", "sleepy")]
    assert wake_path("team", "sleepy").endswith("/namespaces/team/agents/sleepy/wake")
    assert await waker.agent("awake") is False  # does not sleep: not worth waiting for
    clock[0] = 5.0
    assert await waker.agent("sleepy") is True and len(api.calls) == 3  # asked again
    # Refused by RBAC: not worth waiting for either, and said once in the log.
    assert await Waker(client, "team").agent("secret") is False
    await waker.close()


async def test_a_capabilitys_agents_are_its_services_owners() -> None:
    api = Api({"b"})

    async def client() -> Api:
        return api

    waker = Waker(client, "team")
    assert await waker.capability("count") is True
    assert api.calls[0] == "/api/v1/namespaces/team/services/foundation-cap-count"
    assert sorted(api.calls[1:]) == [wake_path("team", "a"), wake_path("team", "b")]
    assert owners({"metadata": {}}) == []
    await waker.close()
