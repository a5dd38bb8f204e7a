"""Waking sleeping Agents, for the callers that reach members on their own: a Workflow's runner
and a member's sidecar. A call through the door wakes a sleeping Agent by itself; these find
no ready member in their own view of its Endpoints, and then ask the door to wake it (`POST
.../agents/NAME/wake`, which RBAC allows whoever may send the Agent tasks), and go on waiting
for members as they would for any member not ready yet. The task itself is sent as before,
once a member is ready: exactly once by its id, whoever wakes the Agent.

For a capability, the Agents to wake are the owners of its Service (`foundation-cap-NAME`: each
Agent with the capability owns it), read with a `get services` on that name only.

At most one ask per Agent (or capability) in `every` seconds, sent in the background: a caller
is never held by the asking, only by the waiting it does anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from foundation_common import access
from foundation_common.discovery import SERVICE_PREFIX
from foundation_common.resources import AGENT

logger = logging.getLogger("foundation.wake")

ASK_EVERY = 5.0


def wake_path(namespace: str, agent: str) -> str:
    return (
        f"/apis/{access.GROUP}/{access.DOOR_VERSION}/namespaces/{namespace}/"
        f"{AGENT.plural}/{agent}/{access.WAKE}"
    )


def owners(service: dict[str, Any]) -> list[str]:
    """The Agents that own a capability's Service: those with the capability."""
    return sorted(
        ref["name"]
        for ref in (service.get("metadata") or {}).get("ownerReferences") or []
        if ref.get("kind") == AGENT.kind and ref.get("apiVersion", "").startswith(AGENT.group)
    )


class Waker:
    """Asks the door to wake Agents; `api` gives the caller's API client (made on first use).
    Each answer says whether the Agent sleeps (spec.sleepAfterIdleSeconds): worth waiting for
    its members, where one that does not sleep and has none ready is not. One ask per Agent
    (or capability) in `every` s: callers in that time share its answer."""

    def __init__(
        self,
        api: Callable[[], Awaitable[Any]],
        namespace: str,
        every: float = ASK_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.every = every
        self.clock = clock
        self._asks: dict[str, tuple[float, asyncio.Task[bool]]] = {}
        self._warned: set[str] = set()

    async def agent(self, name: str) -> bool:
        """Ask for Agent `name` to wake; whether it sleeps."""
        return await self._ask(name, lambda: self._wake(name))

    async def capability(self, name: str) -> bool:
        """Ask for every Agent with capability `name` to wake; whether any of them sleeps."""
        return await self._ask(f"capability {name}", lambda: self._wake_capability(name))

    def soon(self, ask: Coroutine[Any, Any, bool]) -> None:
        """`ask` in the background: for a caller that waits for members in its own loop."""
        task = asyncio.get_running_loop().create_task(ask)
        self._asks[f"background {id(task)}"] = (self.clock(), task)
        task.add_done_callback(lambda done: self._asks.pop(f"background {id(done)}", None))

    async def _ask(self, key: str, work: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
        now = self.clock()
        asked = self._asks.get(key)
        if asked is None or now - asked[0] >= self.every:
            asked = self._asks[key] = (now, asyncio.get_running_loop().create_task(work()))
        return await asyncio.shield(asked[1])

    async def _wake(self, agent: str) -> bool:
        # Imported here: a sidecar that never wakes an Agent never loads the API client.
        from foundation_common.rest import ApiError, Unreachable

        try:
            api = await self.api()
            answer = await api.request("POST", wake_path(self.namespace, agent), {})
        except ApiError as exc:
            if exc.status == 403 and agent not in self._warned:
                self._warned.add(agent)
                logger.warning("may not wake Agent %s (%s): %s", agent, exc.status, exc.message)
            else:
                logger.info("waking Agent %s: %s %s", agent, exc.status, exc.message)
            return False
        except (Unreachable, OSError) as exc:
            logger.info("waking Agent %s: %s", agent, exc)
            return False
        return bool(answer.get("sleeps"))

    async def _wake_capability(self, capability: str) -> bool:
        from foundation_common.rest import ApiError, Unreachable

        try:
            api = await self.api()
            service = await api.get(
                f"/api/v1/namespaces/{self.namespace}/services/{SERVICE_PREFIX}{capability}"
            )
        except (ApiError, Unreachable, OSError) as exc:
            logger.info("the Agents of capability %s: %s", capability, exc)
            return False
        answers = await asyncio.gather(*(self.agent(agent) for agent in owners(service)))
        return any(answers)

    async def close(self) -> None:
        tasks = [task for _, task in self._asks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
