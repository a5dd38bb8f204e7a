"""What an agent uses to reach the world and other agents: its sidecar.

    async with Sidecar() as sidecar:
        answer = await sidecar.call("llm", "v1/chat/completions", method="POST", json={...})
        delivered = await sidecar.send_task("summarize", "run", {"text": "..."})
        record = await sidecar.task(delivered)

`send_task` delivers a task to a member of any Agent with a capability, with a guarantee: it
sends the same task id again (with back-off, honouring `Retry-After`) until a member accepts it
or the deadline passes. Ids route by affinity, so the retries reach the member that may already
hold the task, and that member's idempotency makes the delivery exactly-once in effect. It
replaces fire-and-forget messages. A task refused for what it is (400, 413) is not retried.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from foundation_common import tracing
from foundation_common.resources import SIDECAR_URL
from foundation_common.retry import Again, Backoff, retry_after, retrying
from foundation_common.sidecar import AFFINITY_HEADER, MEMBER_HEADER
from foundation_common.tasks import ENDED, RETRY_STATUSES

DEFAULT_URL = SIDECAR_URL
# One long-poll for a task's completion: well inside the sidecar's budget for a call to another
# agent (discovery.timeoutSeconds, 30 s by default), which would otherwise cut it short and
# count the member as failing.
WAIT_SLICE = 20.0


class DeliveryError(Exception):
    """A task could not be delivered: refused for what it is, or not accepted in time."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Delivered:
    capability: str
    id: str
    member: str  # the pod that holds the task
    record: dict[str, Any]
    attempts: int


DELIVERY_BACKOFF = Backoff(initial=0.1, maximum=5.0, jitter=True)


MAX_RETRY_AFTER = 10.0  # the longest pause a server's Retry-After can ask of us


def asked_pause(answer: httpx.Response) -> float | None:
    """The pause the answer's Retry-After asks for, at most MAX_RETRY_AFTER."""
    pause = retry_after(answer.headers)
    return None if pause is None else min(pause, MAX_RETRY_AFTER)


async def traced(request: httpx.Request) -> None:
    """Every call carries the trace it is made in (the current span's, else the task's)."""
    for name, value in tracing.headers().items():
        request.headers.setdefault(name, value)


class Sidecar:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60.0) -> None:
        self.http = httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            event_hooks={"request": [traced]},
        )

    async def __aenter__(self) -> Sidecar:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, upstream: str, path: str, method: str = "GET", **kwargs: Any
    ) -> httpx.Response:
        """One call to a configured upstream through its limiter and breaker (retries, if the
        call is idempotent or has an Idempotency-Key, happen in the sidecar)."""
        return await self.http.request(method, f"/upstream/{upstream}/{path.lstrip('/')}", **kwargs)

    async def send_task(
        self,
        capability: str,
        action: str,
        input: Any = None,
        id: str | None = None,
        deadline_seconds: float = 60.0,
    ) -> Delivered:
        task_id = id or uuid.uuid4().hex
        body = {"id": task_id, "action": action, "input": input}
        headers = {AFFINITY_HEADER: task_id, "Idempotency-Key": task_id}
        attempts = 0
        last_status: int | None = None

        async def attempt() -> Delivered:
            nonlocal attempts, last_status
            attempts += 1
            try:
                answer = await self.http.post(
                    f"/agents/{capability}/v1/tasks", json=body, headers=headers
                )
            except httpx.TransportError as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            last_status = answer.status_code
            if answer.status_code in (200, 202):
                member = answer.headers.get(MEMBER_HEADER, "")
                return Delivered(capability, task_id, member, answer.json(), attempts)
            if answer.status_code not in RETRY_STATUSES:
                raise DeliveryError(
                    f"task {task_id} refused by capability {capability}: "
                    f"{answer.status_code} {answer.text[:300]}",
                    answer.status_code,
                    answer.text,
                )
            raise Again(f"{answer.status_code} {answer.text[:200]}", asked_pause(answer))

        deadline = time.monotonic() + deadline_seconds
        try:
            return await retrying(attempt, DELIVERY_BACKOFF.fresh(), deadline=deadline)
        except Again as exc:
            raise DeliveryError(
                f"task {task_id} not accepted by capability {capability} within "
                f"{deadline_seconds:g}s ({attempts} attempts; last: {exc})",
                last_status,
            ) from None

    async def task(self, delivered: Delivered, wait: float = 0) -> dict[str, Any]:
        """The task's current record, from the member that holds it; with `wait`, once it is
        done or after that many seconds (at most 60)."""
        answer = await self.http.get(
            f"/agents/{delivered.capability}/v1/tasks/{delivered.id}",
            params={"wait": f"{min(wait, 60):g}"} if wait else None,
            headers={MEMBER_HEADER: delivered.member},
            timeout=max(wait, 0) + 10,
        )
        answer.raise_for_status()
        return answer.json()

    async def finished(self, delivered: Delivered, within: float) -> dict[str, Any]:
        """The task's record once it is done. While its member is away (restarting: the
        sidecar answers 404 or 503 for it) it is asked again; DeliveryError after `within` s."""
        deadline = time.monotonic() + within

        async def attempt() -> dict[str, Any]:
            left = deadline - time.monotonic()
            try:
                record = await self.task(delivered, wait=max(0.0, min(left, WAIT_SLICE)))
            except httpx.HTTPStatusError as exc:
                raise Again(f"{exc.response.status_code} {exc.response.text[:200]}") from None
            except httpx.TransportError as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            if record.get("status") not in ENDED:
                # The wait ran its course: ask again at once.
                raise Again(f"still {record.get('status')}", after=0.0)
            return record

        try:
            return await retrying(attempt, DELIVERY_BACKOFF.fresh(), deadline=deadline)
        except Again as exc:
            raise DeliveryError(
                f"task {delivered.id} at {delivered.member} not done within {within:g}s ({exc})"
            ) from None

    async def actions(self, capability: str) -> list[dict[str, Any]]:
        """The actions (name, description, inputSchema) of the Agents with a capability, as a
        ready member of theirs lists them."""
        answer = await self.http.get(f"/agents/{capability}/v1/actions")
        answer.raise_for_status()
        return list(answer.json()["actions"])
