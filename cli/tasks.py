"""Tasks sent to an Agent through people's door (`access.foundation.dev`, served by the operator
behind the API server), with the user's kubeconfig, whatever its authentication: the API
server authenticates the user and authorizes each call with RBAC on the Agent's subresources
(docs/security.md); no port-forward, no cluster DNS, any cluster the user can reach.

- The member: the door sends a task id to one ready member, by the same rendezvous hash the
  sidecar's affinity uses (or the one the user names), and finds it again there.
- Retries: on a connection error, 429 and 503 (the door's while the Agent has no ready member,
  the API server's while the door is away), the same id is sent again after `Retry-After` or a
  back-off, so a retried send never applies twice: the member answers with the record it has.
- Waiting: a sender waits by sending the same task again with `wait` (which needs no right to
  read others' records); `get` reads a record, which needs `get agents/tasks` for another's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from foundation_common import access, tracing
from foundation_common.retry import Again, Backoff, retry_after, retrying
from foundation_common.tasks import ENDED, RETRY_STATUSES

Obj = dict[str, Any]
MEMBER_HEADER = "X-Foundation-Member"  # which member the door relayed to
CARD = "/.well-known/agent-card.json"
SUSPENDED = "is suspended (spec.suspend: true)"  # the door's words for a suspended Agent


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
FORBIDDEN = 7  # RBAC does not let this user do it (or the API server does not know them)
CONFLICT = 8  # the approval was decided already, or is not waiting for a decision


def message_of(status: int, answer: Obj) -> str:
    return str(answer.get("error") or answer.get("message") or f"HTTP {status}")


class Tasks:
    """The Agents of one namespace, through people's door."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _path(self, agent: str, subresource: str, rest: str = "") -> str:
        return (
            f"/apis/{access.GROUP}/{access.DOOR_VERSION}/namespaces/{self.namespace}"
            f"/agents/{agent}/{subresource}{rest}"
        )

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
            header_params={
                "Accept": "application/json",
                "Content-Type": "application/json",
                **tracing.headers(),  # the door passes them on to the member
            },
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

    async def _retrying(
        self, agent: str, path: str, deadline: float, **request: Any
    ) -> tuple[int, Obj, str]:
        """One call until an answer that is not worth retrying, or the deadline: (status,
        answer, the member that answered)."""

        async def attempt() -> tuple[int, Obj, str]:
            try:
                status, answer, headers = await self._request(path, **request)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            if status == 503 and SUSPENDED in message_of(status, answer):
                # Nothing changes until someone resumes it: said at once, not waited out.
                raise Problem(message_of(status, answer), UNAVAILABLE)
            if status in RETRY_STATUSES:
                raise Again(f"{status} {message_of(status, answer)}", retry_after(headers))
            if status in (401, 403):
                raise Problem(message_of(status, answer), FORBIDDEN)
            if status == 404 and answer.get("kind") == "Status":
                # The door's (or the API server's) 404: no such Agent, or no door at all.
                raise Problem(self._not_found(agent, answer), NOT_FOUND)
            return status, answer, headers.get(MEMBER_HEADER, "")

        try:
            return await retrying(attempt, Backoff(0.2, 3.0, jitter=True), deadline=deadline)
        except Again as exc:
            raise Problem(
                f"Agent {agent} could not be reached in time (last: {exc})", UNAVAILABLE
            ) from None

    def _not_found(self, agent: str, answer: Obj) -> str:
        message = message_of(404, answer)
        if "the server could not find the requested resource" in message:
            return (
                f"people's door ({access.GROUP}) is not served in this cluster: install"
                " Foundation's chart, or see docs/security.md"
            )
        return message

    async def send(
        self,
        agent: str,
        task_id: str,
        action: str,
        input: Any,
        deadline: float,
        member: str | None = None,
        wait: float = 0.0,
    ) -> tuple[str, Obj]:
        """(member, record) of the task sent (again, with the same id, until it is answered;
        with `wait`, after up to that many seconds for it to end)."""
        body = {"id": task_id, "action": action, "input": input}
        query = [("wait", f"{wait:.1f}")] if wait > 0 else []
        if member:
            query.append(("member", member))
        status, answer, at = await self._retrying(
            agent,
            self._path(agent, access.TASKS),
            deadline,
            method="POST",
            body=body,
            query=query,
            seconds=wait + 15,
        )
        if status in (200, 201, 202):
            return at, answer
        where = at or f"Agent {agent}"
        if status in (400, 409, 413, 422):
            raise Problem(f"{where} refused the task: {message_of(status, answer)}", REFUSED)
        raise Problem(f"{where} answered {status}: {message_of(status, answer)}", UNAVAILABLE)

    async def sent_until_done(
        self, agent: str, member: str, record: Obj, deadline: float, input: Any
    ) -> tuple[str, Obj]:
        """A task this user sent with `input`, once it is done or as it is at the deadline:
        sent again with `wait` (the same id and content, so never a second task; a record
        does not show the input, and an id sent with another is refused)."""
        while record.get("status") not in ENDED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            member, record = await self.send(
                agent,
                record["id"],
                record.get("action", ""),
                input,
                deadline,
                member=member or None,
                wait=min(30.0, left),
            )
        return member, record

    async def get(
        self, agent: str, task_id: str, deadline: float, wait: float = 0.0
    ) -> tuple[str, Obj]:
        """(member, record) of a task; after up to `wait` s for it to end."""
        query = [("wait", f"{wait:.1f}")] if wait > 0 else []
        status, answer, at = await self._retrying(
            agent,
            self._path(agent, access.TASKS, f"/{task_id}"),
            deadline,
            query=query,
            seconds=wait + 15,
        )
        if status == 404:
            raise Problem(f"no member of Agent {agent} holds task {task_id}", NOT_FOUND)
        if status >= 400:
            raise Problem(
                f"Agent {agent} answered {status}: {message_of(status, answer)}", UNAVAILABLE
            )
        return at, answer

    async def until_done(self, agent: str, task_id: str, deadline: float) -> tuple[str, Obj]:
        """A task's record (anyone's: needs `get agents/tasks`) once it is done, or as it is
        when the deadline passes."""
        member, record = await self.get(agent, task_id, deadline)
        while record.get("status") not in ENDED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            member, record = await self.get(agent, task_id, deadline, min(30.0, left))
        return member, record

    async def listing(self, agent: str, query: list[tuple[str, str]], deadline: float) -> Obj:
        """A page of the Agent's tasks across its members (`foundation_common.history`):
        {tasks, totalSize, nextPageToken, unavailable}; needs `get agents/tasks`."""
        status, answer, _ = await self._retrying(
            agent, self._path(agent, access.TASKS), deadline, query=query, seconds=15
        )
        if status == 400:
            raise Problem(message_of(status, answer), USAGE)
        if status != 200:
            raise Problem(
                f"Agent {agent} did not list its tasks: {message_of(status, answer)}",
                UNAVAILABLE,
            )
        return answer

    async def actions(self, agent: str, deadline: float) -> tuple[str, list[Obj]]:
        """(the Agent's description, its actions as its members list them: name, description,
        inputSchema)."""
        status, answer, _ = await self._retrying(
            agent, self._path(agent, access.ACTIONS), deadline, seconds=10
        )
        if status != 200:
            raise Problem(
                f"Agent {agent} did not list its actions: {message_of(status, answer)}",
                UNAVAILABLE,
            )
        return str(answer.get("description") or ""), list(answer.get("actions") or [])

    async def decide(
        self,
        workflow: str,
        step: str,
        decision: str,
        message: str,
        input: Any,
        deadline: float,
    ) -> Obj:
        """Approve or reject a Workflow's approval step, through people's door: the decision
        as recorded (who, when, what), or a Problem saying why not."""
        path = (
            f"/apis/{access.GROUP}/{access.DOOR_VERSION}/namespaces/{self.namespace}"
            f"/workflows/{workflow}/{access.APPROVAL}"
        )
        body: Obj = {"step": step, "decision": decision, "message": message}
        if input is not None:
            body["input"] = input

        async def attempt() -> tuple[int, Obj]:
            try:
                status, answer, headers = await self._request(path, "POST", body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Again(f"{type(exc).__name__}: {exc}") from None
            if status in RETRY_STATUSES:
                raise Again(f"{status} {message_of(status, answer)}", retry_after(headers))
            return status, answer

        try:
            status, answer = await retrying(
                attempt, Backoff(0.2, 3.0, jitter=True), deadline=deadline
            )
        except Again as exc:
            raise Problem(
                f"people's door could not be reached in time (last: {exc})", UNAVAILABLE
            ) from None
        if status == 200:
            return answer
        code = {401: FORBIDDEN, 403: FORBIDDEN, 404: NOT_FOUND}.get(status, USAGE)
        if status == 404 and "could not find the requested resource" in message_of(404, answer):
            raise Problem(self._not_found(workflow, answer), NOT_FOUND)
        raise Problem(message_of(status, answer), CONFLICT if status == 409 else code)

    async def card(self, agent: str, deadline: float) -> Obj:
        """The Agent's A2A card, through the door: its URL is the door's A2A endpoint on the
        API server this kubeconfig names, which any A2A client holding its credentials can
        call."""
        status, answer, _ = await self._retrying(
            agent, self._path(agent, access.A2A, CARD), deadline, seconds=10
        )
        if status != 200:
            raise Problem(
                f"the A2A card of Agent {agent}: {message_of(status, answer)}", UNAVAILABLE
            )
        url = self.api.configuration.host.rstrip("/") + self._path(agent, access.A2A, "/")
        for interface in answer.get("supportedInterfaces") or []:
            interface["url"] = url
        if "url" in answer:
            answer["url"] = url
        return answer
