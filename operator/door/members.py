"""The door's view of an Agent's members: the ready ones, or the answer to give when there are
none (no such Agent, suspended, coming back); and waking a sleeping one (issue 29): asked for
with a write the operator acts on, the call held until the members are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from foundation_common.discovery import ready_members
from foundation_common.resources import AGENT
from foundation_common.rest import ApiError, Client, Unreachable
from foundation_common.status import now
from foundation_operator.agents import objects, plan
from foundation_operator.core import metrics
from foundation_operator.door.routes import MAX_WAIT, Target, number, problem

logger = logging.getLogger("foundation_operator.door")

WAKE_WAIT = 45.0  # how long a call that wakes an Agent is held for its members (< MAX_WAIT)
SUSPENDED_RETRY = 30.0  # Retry-After for a suspended Agent: nothing changes until a person acts


class Members:
    def __init__(self, api: Client) -> None:
        self.api = api

    async def find(self, target: Target, wake: bool = False) -> dict[str, str] | web.Response:
        """Ready members (pod -> host:port) of the target's Agent, or the answer to give. With
        `wake`, a sleeping Agent is woken and waited for."""
        try:
            endpoints = await self.api.get(
                f"/api/v1/namespaces/{target.namespace}/endpoints/{target.agent}"
            )
        except ApiError as exc:
            if exc.status == 404:
                return await self._no_service(target, wake)
            return problem(503, f"cannot list the Agent's members: {exc}", "ServiceUnavailable", 1)
        except Unreachable as exc:
            return problem(503, f"cannot list the Agent's members: {exc}", "ServiceUnavailable", 1)
        found = ready_members(endpoints, number=target.port)
        if not found:
            return await self._none_ready(target, wake)
        return found

    async def _none_ready(
        self, target: Target, wake: bool = False
    ) -> dict[str, str] | web.Response:
        """No ready member: a suspended Agent says so (refused at once, not held: it wakes only
        when someone sets spec.suspend false, which a caller waiting cannot know); a sleeping
        one is woken and the call held until its members are ready; any other is coming back
        (Retry-After 1)."""
        try:
            found = await self.agent(target) or {}
        except (ApiError, Unreachable):
            found = {}
        spec = found.get("spec") or {}
        failed = (found.get("status") or {}).get("phase") == "Failed"
        if (
            wake
            and spec.get("sleepAfterIdleSeconds")
            and int(spec.get("replicas", 1)) > 0
            and not spec.get("suspend")
            and not failed
        ):
            try:
                await self.wake(found)
            except (ApiError, Unreachable) as exc:
                return problem(503, f"cannot wake the Agent: {exc}", "ServiceUnavailable", 1)
            ready = await self.until_ready(target, int(spec.get("replicas", 1)), WAKE_WAIT)
            if ready:
                return ready
            return problem(
                503,
                f"Agent {target.agent} is waking: no member was ready within {WAKE_WAIT:.0f}s",
                "ServiceUnavailable",
                retry_after=1,
            )
        if spec.get("suspend"):
            return problem(
                503,
                f"Agent {target.agent} is suspended (spec.suspend: true): no member runs, its "
                "state and tasks are kept; it takes calls again once spec.suspend is false",
                "ServiceUnavailable",
                retry_after=SUSPENDED_RETRY,
            )
        return problem(
            503, f"Agent {target.agent} has no ready member", "ServiceUnavailable", retry_after=1
        )

    # -- waking a sleeping Agent ------------------------------------------------------------
    async def wake(self, agent: dict[str, Any]) -> bool:
        """Ask for a sleeping Agent to wake: its wakeRequestedAt annotation set at or after
        status.asleepSince (the operator acts on it; kept in etcd, it outlives this replica and
        the operator's). One write a sleep, whoever calls: none if asked already. True if
        written."""
        since = plan.moment((agent.get("status") or {}).get("asleepSince"))
        if since is None:
            return False  # awake, or waking
        meta = agent["metadata"]
        asked = plan.moment((meta.get("annotations") or {}).get(objects.WAKE_REQUESTED_AT))
        if asked is not None and asked >= since:
            return False
        at = max(now(), since)
        await self.api.merge_patch(
            AGENT.path(meta["namespace"], meta["name"]),
            {"metadata": {"annotations": {objects.WAKE_REQUESTED_AT: plan.fine_stamp(at)}}},
        )
        metrics.DOOR_WAKES.inc()
        logger.info("waking agent %s/%s", meta["namespace"], meta["name"])
        return True

    async def until_ready(self, target: Target, want: int, seconds: float) -> dict[str, str]:
        """The Agent's ready members once `want` are ready (so a task id hashes to the member
        it will hash to later), or those ready after `seconds` (maybe none): from a watch of
        its Endpoints, not a poll."""
        ready: dict[str, str] = {}

        async def watch() -> None:
            nonlocal ready
            async for kind, obj in self.api.list_and_watch(
                f"/api/v1/namespaces/{target.namespace}/endpoints",
                {"fieldSelector": f"metadata.name={target.agent}"},
                timeout_seconds=int(seconds) + 5,
            ):
                items = (obj.get("items") or []) if kind == "SYNC" else [obj]
                for item in items:
                    ready = {} if kind == "DELETED" else ready_members(item, number=target.port)
                if len(ready) >= max(1, want):
                    return

        with contextlib.suppress(TimeoutError, ApiError, Unreachable):
            await asyncio.wait_for(watch(), seconds)
        return ready

    async def wake_call(self, request: web.Request, target: Target) -> web.Response:
        """`POST agents/NAME/wake[?wait=S]`: for callers that reach members on their own (a
        Workflow's runner, a sidecar) and found none ready."""
        try:
            agent = await self.agent(target)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot read the Agent: {exc}", "ServiceUnavailable", 1)
        if agent is None:
            return problem(
                404,
                f'agents.{AGENT.group} "{target.agent}" not found in namespace'
                f' "{target.namespace}"',
                "NotFound",
            )
        spec = agent.get("spec") or {}
        if spec.get("suspend"):
            return problem(
                409,
                f"Agent {target.agent} is suspended (spec.suspend: true): only setting it "
                "false resumes it",
                "Conflict",
            )
        try:
            woken = await self.wake(agent)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot wake the Agent: {exc}", "ServiceUnavailable", 1)
        wait = min(MAX_WAIT, max(0.0, number(request.query.get("wait"))))
        ready = await self.until_ready(target, int(spec.get("replicas", 1)), wait) if wait else {}
        return web.json_response(
            {
                "agent": target.agent,
                "sleeps": bool(spec.get("sleepAfterIdleSeconds")),
                "asleep": bool((agent.get("status") or {}).get("asleepSince")),
                "wakeRequested": woken,
                "readyMembers": sorted(ready),
            },
            status=200 if ready or not wait else 202,
        )

    async def agent(self, target: Target) -> dict[str, Any] | None:
        try:
            return await self.api.get(AGENT.path(target.namespace, target.agent))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _no_service(
        self, target: Target, wake: bool = False
    ) -> dict[str, str] | web.Response:
        """No Endpoints: no such Agent (404), or one whose Service is still to come (503; a
        sleeping Agent whose Endpoints the cluster has not made yet is woken and waited for)."""
        try:
            found = await self.agent(target)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot read the Agent: {exc}", "ServiceUnavailable", 1)
        if found is not None and wake and (found.get("spec") or {}).get("sleepAfterIdleSeconds"):
            return await self._none_ready(target, wake)
        if found is None:
            return problem(
                404,
                f'agents.{AGENT.group} "{target.agent}" not found in namespace'
                f' "{target.namespace}"',
                "NotFound",
            )
        return problem(
            503, f"Agent {target.agent} has no ready member yet", "ServiceUnavailable", 1
        )
