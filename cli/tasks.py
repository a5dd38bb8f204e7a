"""Tasks sent to an Agent's members through the API server's proxy (`pods/<pod>:<port>/proxy`),
with the user's kubeconfig: no port-forward, no cluster DNS, any cluster the user can reach.

- The member: a task id is pinned to one ready member, by the same rendezvous hash the
  sidecar's affinity uses (or the one the user names), and keeps it for every retry.
- Retries: on a connection error, 429 and 503 (and the proxy's 502/504 while a pod is not
  reachable), the same id is sent again to the same member after `Retry-After` or a back-off,
  so a retried send never applies twice: the member answers with the record it has.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from foundation_common.discovery import ready_members, rendezvous
from foundation_common.resources import AGENT
from foundation_common.retry import Again, Backoff, retry_after, retrying
from foundation_common.tasks import ENDED, RETRY_STATUSES

Obj = dict[str, Any]


class Problem(Exception):
    """What went wrong, for the user, with the exit code the command ends with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# Exit codes (also in docs/cli.md).
TASK_FAILED = 1  # the task failed or was cancelled (its record is printed)
USAGE = 2  # bad arguments or input
NOT_FOUND = 3  # no such Agent, member or task
UNAVAILABLE = 4  # no ready member, or it could not be reached in time
TIMEOUT = 5  # the task was not done within --timeout
REFUSED = 6  # the member refused the task (invalid input, unknown action, too large)


class Tasks:
    """The task API of one namespace's Agents, through the API server."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    async def _request(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        seconds: float = 30.0,
    ) -> tuple[int, Obj, dict[str, str]]:
        """(status, decoded body or {"error": text}, headers) of one call."""
        response = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=seconds,
        )
        try:
            data = await response.read()
        finally:
            response.release()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"error": data.decode(errors="replace")[:500]}
        if not isinstance(decoded, dict):
            decoded = {"error": str(decoded)}
        return response.status, decoded, dict(response.headers)

    async def _checked(self, path: str) -> Obj | None:
        """GET an API object: None for 404, a Problem for other errors."""
        try:
            status, body, _ = await self._request(path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Problem(f"the API server could not be reached: {exc}", UNAVAILABLE) from None
        if status == 404:
            return None
        if status >= 400:
            raise Problem(
                f"{path}: {status} {body.get('message') or body.get('error')}", UNAVAILABLE
            )
        return body

    async def members(self, agent: str) -> dict[str, int]:
        """The Agent's ready members: pod name -> its task API port."""
        ns = self.namespace
        if await self._checked(AGENT.path(ns, agent)) is None:
            raise Problem(f'Agent "{agent}" not found in namespace "{ns}"', NOT_FOUND)
        endpoints = await self._checked(f"/api/v1/namespaces/{ns}/endpoints/{agent}")
        return {
            name: int(address.rsplit(":", 1)[1])
            for name, address in ready_members(endpoints).items()
        }

    async def ready(self, agent: str, deadline: float, member: str | None = None) -> list[str]:
        """The Agent's ready members (`member` among them, if named), waiting for them until
        the deadline: a member restarting for a moment is not an error."""

        async def attempt() -> list[str]:
            ready = sorted(await self.members(agent))
            if ready and (member is None or member in ready):
                return ready
            if member is not None:
                raise Again(
                    f"member {member} of Agent {agent} is not ready (ready: "
                    f"{', '.join(ready) or 'none'})"
                )
            raise Again(f"Agent {agent} has no ready member")

        try:
            return await retrying(attempt, Backoff(0.2, 2.0, jitter=True), deadline=deadline)
        except Again as exc:
            raise Problem(str(exc), UNAVAILABLE) from None

    async def member_for(
        self, agent: str, task_id: str, deadline: float, index: int | None = None
    ) -> str:
        """The member a task id goes to: the one named, or the sidecar's affinity choice."""
        if index is not None:
            name = f"{agent}-{index}"
            await self.ready(agent, deadline, name)
            return name
        return rendezvous(task_id, await self.ready(agent, deadline))

    def _base(self, member: str, port: int) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{member}:{port}/proxy/v1/tasks"

    async def send(
        self, agent: str, member: str, task_id: str, action: str, input: Any, deadline: float
    ) -> Obj:
        """The task sent to `member` until it answers with a record (retried with the same id)."""
        body = {"id": task_id, "action": action, "input": input}

        async def once(port: int) -> tuple[int, Obj, dict[str, str]]:
            return await self._request(self._base(member, port), "POST", body, seconds=10)

        status, answer = await self._retrying(agent, member, once, deadline)
        if status in (200, 201, 202):
            return answer
        message = answer.get("error") or answer.get("message") or f"HTTP {status}"
        if status in (400, 409, 413, 422):
            raise Problem(f"{member} refused the task: {message}", REFUSED)
        raise Problem(f"{member} answered {status}: {message}", UNAVAILABLE)

    async def get(self, agent: str, member: str, task_id: str, wait: float, deadline: float) -> Obj:
        """The task's record (after up to `wait` s for it to finish)."""

        async def once(port: int) -> tuple[int, Obj, dict[str, str]]:
            query = [("wait", f"{wait:.1f}")] if wait > 0 else []
            return await self._request(
                f"{self._base(member, port)}/{task_id}", query=query, seconds=wait + 10
            )

        status, answer = await self._retrying(agent, member, once, deadline)
        if status == 404:
            raise Problem(f"no task {task_id} at {member} (or its record expired)", NOT_FOUND)
        if status >= 400:
            message = answer.get("error") or answer.get("message") or f"HTTP {status}"
            raise Problem(f"{member} answered {status}: {message}", UNAVAILABLE)
        return answer

    async def until_done(self, agent: str, member: str, record: Obj, deadline: float) -> Obj:
        """The task's record once it is done, or as it is when the deadline passes."""
        while record.get("status") not in ENDED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            record = await self.get(agent, member, record["id"], min(30.0, left), deadline)
        return record

    async def find(self, agent: str, task_id: str, deadline: float) -> tuple[str, Obj]:
        """(member, record) of a task sent earlier: its affinity member first, then the others."""
        ready = await self.ready(agent, deadline)
        first = rendezvous(task_id, ready)
        for member in [first, *sorted(set(ready) - {first})]:
            try:
                return member, await self.get(agent, member, task_id, 0, deadline)
            except Problem as exc:
                if exc.code != NOT_FOUND:
                    raise
        raise Problem(f"no member of Agent {agent} holds task {task_id}", NOT_FOUND)

    async def actions(self, agent: str, deadline: float) -> tuple[str, list[Obj]]:
        """(the Agent's description, its actions as its members list them: name, description,
        inputSchema)."""
        body = await self._checked(AGENT.path(self.namespace, agent))
        if body is None:
            raise Problem(f'Agent "{agent}" not found in namespace "{self.namespace}"', NOT_FOUND)
        description = str((body.get("spec") or {}).get("description") or "")
        member = (await self.ready(agent, deadline))[0]

        async def once(port: int) -> tuple[int, Obj, dict[str, str]]:
            path = f"/api/v1/namespaces/{self.namespace}/pods/{member}:{port}/proxy/v1/actions"
            return await self._request(path, seconds=10)

        status, answer = await self._retrying(agent, member, once, deadline)
        if status != 200:
            message = answer.get("error") or answer.get("message") or f"HTTP {status}"
            raise Problem(f"{member} did not list its actions: {message}", UNAVAILABLE)
        return description, list(answer.get("actions") or [])

    async def card(self, agent: str, deadline: float) -> Obj:
        """The Agent's A2A card, through the API server's proxy to its Service: the URL in it
        is then the proxy's, which any A2A client holding this kubeconfig's credentials can
        call."""
        await self.ready(agent, deadline)
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/{agent}:a2a/proxy"
            "/.well-known/agent-card.json"
        )

        async def attempt() -> Obj:
            try:
                status, body, _ = await self._request(path, seconds=10)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            if status == 200:
                return body
            message = body.get("error") or body.get("message") or f"HTTP {status}"
            if status in RETRY_STATUSES:
                raise Again(message)
            raise Problem(f"the A2A card of Agent {agent}: {message}", UNAVAILABLE)

        try:
            return await retrying(attempt, Backoff(0.2, 2.0, jitter=True), deadline=deadline)
        except Again as exc:
            raise Problem(f"the A2A card of Agent {agent}: {exc}", UNAVAILABLE) from None

    async def _retrying(
        self, agent: str, member: str, once: Any, deadline: float
    ) -> tuple[int, Obj]:
        """`once(port)` until an answer that is not worth retrying, or the deadline."""

        async def attempt() -> tuple[int, Obj]:
            port = (await self.members(agent)).get(member)
            if port is None:
                raise Again(f"{member} is not ready")
            try:
                status, answer, headers = await once(port)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            if status in RETRY_STATUSES:
                why = f"{status} {answer.get('error') or answer.get('message') or ''}"
                raise Again(why.strip(), retry_after(headers))
            return status, answer

        try:
            return await retrying(attempt, Backoff(0.2, 3.0, jitter=True), deadline=deadline)
        except Again as exc:
            raise Problem(
                f"{member} of Agent {agent} could not be reached in time (last: {exc})",
                UNAVAILABLE,
            ) from None
