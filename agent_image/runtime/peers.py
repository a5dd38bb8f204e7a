"""Which member of its Agent owns a task, and how to reach it: for the protocols a member
serves for the whole Agent (A2A), whose clients reach any member through the Agent's Service.

A task id is owned by the member it hashes to (rendezvous hashing) over the Agent's member
names `<agent>-0 .. <agent>-(replicas-1)`: stable while the replica count stays the same, so a
message resent after a lost answer reaches the member that holds the task, even if that member
restarted or its pod was made again meanwhile (a member that is not ready is waited for, not
replaced by another, which would run the task a second time). Any member may take a request:
it answers from its own inbox when it owns the task, else it forwards to the owner's task API.

The replica count, description and capabilities come from the Agent (read at most every
`AGENT_TTL` seconds); the owners' addresses from the Agent's Service's ready endpoints
(`foundation_common.discovery`, a watch started on the first forward).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from foundation_agent.runtime.access import Caller, Denied, Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.parking import Parking
from foundation_agent.runtime.records import Refused
from foundation_agent.stores import Record
from foundation_common import access, history, tracing
from foundation_common.access import CallerToken
from foundation_common.discovery import Directory, RestEndpoints, rendezvous
from foundation_common.resources import AGENT, AGENT_PORT
from foundation_common.sidecar import Discovery
from foundation_common.tasks import ENDED

AGENT_TTL = 5.0  # seconds an Agent's replica count and card fields are used before a new read
FORWARD_TIMEOUT = 90.0  # a forwarded call, long-polls included (theirs are at most 60 s)


@dataclass(frozen=True)
class AgentInfo:
    """What a member reads of its Agent to route tasks and describe itself."""

    replicas: int = 1
    description: str = ""
    capabilities: tuple[str, ...] = ()

    @classmethod
    def of(cls, agent: dict[str, Any]) -> AgentInfo:
        spec = agent.get("spec") or {}
        return cls(
            replicas=max(1, int(spec.get("replicas", 1))),
            description=str(spec.get("description") or ""),
            capabilities=tuple(spec.get("capabilities") or ()),
        )


def owner_of(task_id: str, agent: str, replicas: int) -> str:
    """The member (pod name) that owns `task_id` among the Agent's `replicas` members."""
    return rendezvous(task_id, [f"{agent}-{i}" for i in range(max(1, replicas))])


class Tasks(Protocol):
    """A member's inbox, here or across the network, as `caller` may use it. Refusals are
    `Refused` with the task API's status (400, 401, 403, 404, 409, 413, 429, 503)."""

    async def submit(
        self, task_id: str, action: str, input: Any, context: str | None, caller: Caller
    ) -> tuple[int, Record]: ...

    async def get(self, task_id: str, caller: Caller, wait: float = 0.0) -> Record | None: ...

    async def cancel(self, task_id: str, caller: Caller) -> Record: ...

    async def list(self, query: history.Query, caller: Caller) -> history.Page: ...


class LocalTasks:
    """This member's own inbox (None until its state is loaded), behind its door: sending
    needs `create` on the Agent's tasks; a record is its sender's to read (and cancel), and
    anyone's who may `get` (and `delete`) the Agent's tasks."""

    def __init__(
        self, member: Callable[[], Member | None], gate: Gate, parking: Parking | None = None
    ) -> None:
        self._member = member
        self.gate = gate
        self.parking = parking or Parking()

    async def _loaded(self) -> Member:
        await self.parking.hold()  # parked: this call loads the state (runtime.parking)
        member = self._member()
        if member is None:
            raise Refused(503, "this member is still loading its state", retry_after=1)
        return member

    async def submit(
        self, task_id: str, action: str, input: Any, context: str | None, caller: Caller
    ) -> tuple[int, Record]:
        await self.gate.require(caller, access.SEND)
        sender = None if caller.anonymous else caller.user
        return await (await self._loaded()).submit(task_id, action, input, context, sender)

    async def get(self, task_id: str, caller: Caller, wait: float = 0.0) -> Record | None:
        await self.parking.hold()
        member = self._member()
        record = member.task(task_id) if member is not None else None
        if not await self.gate.may_read(caller, record):
            # The same answer whether or not the task exists: ids are not probed.
            raise Denied(403, self.gate.forbidden(caller, access.READ))
        if member is None or record is None or not wait or record["status"] in ENDED:
            return record
        try:
            return await asyncio.wait_for(member.finished(task_id), wait)
        except TimeoutError:
            return member.task(task_id) or record

    async def visible(self, query: history.Query, caller: Caller) -> history.Query:
        """`query` as `caller` may see it: all tasks for one who may `get` the Agent's
        tasks; else only their own (Denied for an anonymous caller)."""
        if await self.gate.allowed(caller, access.READ):
            return query
        if caller.anonymous:
            raise Denied(403, self.gate.forbidden(caller, access.READ))
        return query.own(caller.user)

    async def list(self, query: history.Query, caller: Caller) -> history.Page:
        query = await self.visible(query, caller)
        return (await self._loaded()).history(query)

    async def cancel(self, task_id: str, caller: Caller) -> Record:
        await self.gate.require(caller, access.SEND)
        member = await self._loaded()
        record = member.task(task_id)
        if record is not None and not caller.sent(record):
            await self.gate.require(caller, access.CANCEL_ANY)
        return await member.cancel(task_id)


class RemoteTasks:
    """Another member of this Agent, through its task API: the call goes with this pod's
    token and the name of the caller it is made for, which the owner authorizes."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        name: str,
        address: str,
        token: CallerToken,
        gate: Gate,
    ) -> None:
        self.http = http
        self.name = name
        self.base = f"http://{address}/v1/tasks"
        self.token = token
        self.gate = gate

    async def _call(
        self, method: str, url: str, caller: Caller, body: Any = None
    ) -> tuple[int, Any]:
        headers = {
            **self.token.header(),
            **self.gate.forward_headers(caller),
            **tracing.headers(),
        }
        try:
            async with self.http.request(
                method,
                url,
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            ) as answer:
                text = await answer.text()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Refused(
                503, f"member {self.name} cannot be reached: {exc or type(exc).__name__}", 1
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            data = {"error": text[:200]}
        if status >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            if status in (401, 403):  # the caller's own answer, as the owner gave it
                raise Denied(status, str(message or status))
            retry = 1.0 if status in (429, 502, 503, 504) else None
            reason = str(data.get("reason") or "") if isinstance(data, dict) else ""
            raise Refused(status, f"member {self.name}: {message or status}", retry, reason)
        return status, data

    async def submit(
        self, task_id: str, action: str, input: Any, context: str | None, caller: Caller
    ) -> tuple[int, Record]:
        body = {"id": task_id, "action": action, "input": input, "context": context}
        return await self._call("POST", self.base, caller, body)  # type: ignore[return-value]

    async def get(self, task_id: str, caller: Caller, wait: float = 0.0) -> Record | None:
        try:
            _, record = await self._call("GET", f"{self.base}/{task_id}?wait={wait:g}", caller)
        except Refused as exc:
            if exc.status == 404:
                return None
            raise
        return record  # type: ignore[no-any-return]

    async def cancel(self, task_id: str, caller: Caller) -> Record:
        _, record = await self._call("POST", f"{self.base}/{task_id}/cancel", caller)
        return record  # type: ignore[no-any-return]

    async def list(self, query: history.Query, caller: Caller) -> history.Page:
        url = f"{self.base}?{urlencode(query.params())}"
        _, body = await self._call("GET", url, caller)
        try:
            return history.Page.of_body(body)
        except (ValueError, TypeError, AttributeError):
            raise Refused(503, f"member {self.name} answered no list of tasks", 1) from None


@dataclass
class Peers:
    """The members of this member's Agent, for routing tasks by id. Without an API client (a
    member run outside a cluster) every task is this member's."""

    agent: str
    namespace: str
    member_name: str
    api: Any  # foundation_common.rest.Client, or None
    local: LocalTasks
    token: CallerToken = field(default_factory=CallerToken)
    clock: Callable[[], float] = time.monotonic
    _info: AgentInfo = field(default_factory=AgentInfo)
    _read_at: float = float("-inf")
    _directory: Directory | None = None
    _http: aiohttp.ClientSession | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def info(self) -> AgentInfo:
        """The Agent's replica count and card fields, read again once they are `AGENT_TTL` old
        (the last known ones while the API cannot be read)."""
        if self.api is None or self.clock() - self._read_at < AGENT_TTL:
            return self._info
        async with self._lock:
            if self.clock() - self._read_at >= AGENT_TTL:
                try:
                    self._info = AgentInfo.of(
                        await self.api.get(AGENT.path(self.namespace, self.agent))
                    )
                except Exception:  # the API away: route as before, try again next time
                    if self._read_at == float("-inf"):
                        raise Refused(503, "cannot read the Agent to route the task", 1) from None
                self._read_at = self.clock()
        return self._info

    async def owner(self, task_id: str) -> tuple[str, Tasks]:
        """The member that owns `task_id`, and its inbox."""
        info = await self.info()
        name = owner_of(task_id, self.agent, info.replicas) if self.api else self.member_name
        return name, await self._inbox(
            name, f"task {task_id} belongs to member {name}, which is not ready; retry shortly"
        )

    async def everyone(self) -> list[tuple[str, Tasks]]:
        """Every member of the Agent and its inbox (Refused if one is not ready: a list
        without its tasks would page wrongly)."""
        info = await self.info()
        names = [f"{self.agent}-{i}" for i in range(info.replicas)] if self.api else []
        if self.member_name not in names:
            names.append(self.member_name)
        return [
            (name, await self._inbox(name, f"member {name} is not ready; retry shortly"))
            for name in names
        ]

    async def _inbox(self, name: str, not_ready: str) -> Tasks:
        if name == self.member_name:
            return self.local
        if self._directory is None:
            self._directory = Directory(Discovery(), self.namespace, RestEndpoints(self.api))
            self._http = aiohttp.ClientSession()
        members = await self._directory.get(
            self.agent, wait=5.0, service=self.agent, port=AGENT_PORT
        )
        member = members.pinned(name)
        if member is None:
            raise Refused(503, not_ready, retry_after=1)
        assert self._http is not None
        return RemoteTasks(self._http, name, member.address, self.token, self.local.gate)

    async def listing(self, query: history.Query, caller: Caller) -> history.Page:
        """A page of the Agent's tasks across its members, newest first (each names its
        member)."""
        inboxes = await self.everyone()
        pages = await asyncio.gather(*(inbox.list(query, caller) for _, inbox in inboxes))
        return history.merge(pages, query, [name for name, _ in inboxes])

    async def close(self) -> None:
        if self._directory is not None:
            await self._directory.close()
        if self._http is not None:
            await self._http.close()
