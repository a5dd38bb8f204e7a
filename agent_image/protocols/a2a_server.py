"""A member's A2A server: a2a-sdk's JSON-RPC dispatcher (protocol 1.0, with 0.3 compatibility)
over Foundation's tasks, and the agent card at the well-known path.

- `message/send` is a task, submitted to the member that owns its id (`runtime.peers`): a
  message resent after a lost answer is the same task. It answers when the task is done, or
  after `BLOCKING_WAIT` seconds with the task as it is then (`returnImmediately` answers at
  once); `message/stream` sends the task, then its result and final state.
- `tasks/get`, `tasks/cancel` (a queued task) and `tasks/resubscribe` go to the owner too.
- The card's URL is the address the client used to fetch it: the Host it sent, behind the
  API server's proxy (`X-Forwarded-Uri`) or the sidecar (`X-Forwarded-Prefix`) when present.

This module and a2a-sdk's server parts cost a member about 15 MB: the runtime imports it on the
first A2A request (`protocols.asgi.LazyApp`), so a member never called over A2A does not pay.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from foundation_agent.model import Action
from foundation_agent.protocols.a2a_mapping import (
    ask_of,
    card_of,
    card_url,
    guidance,
    list_query,
    task_of,
)
from foundation_agent.runtime.access import ANONYMOUS, Caller, Denied, Gate
from foundation_agent.runtime.peers import Peers
from foundation_agent.runtime.records import ID_TAKEN, Refused
from foundation_agent.stores import Record
from foundation_common import access, tracing
from foundation_common.tasks import ENDED

logger = logging.getLogger("foundation_agent.a2a")

CARD_PATH = "/.well-known/agent-card.json"
BLOCKING_WAIT = 30.0  # how long message/send waits for the task to finish before answering
STREAM_SLICE = 55.0  # one long-poll of a streamed task (the task API's limit is 60 s)

Event = Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent


def caller_of(context: ServerCallContext) -> Caller:
    """The caller the door identified (`authenticated`), as the request's `auth`."""
    caller = context.state.get("auth")
    return caller if isinstance(caller, Caller) else ANONYMOUS


def context_of(record: Record, given: str | None = None) -> str:
    """The A2A context of a task: the one its record keeps, else the message's, else its id."""
    return str(record.get("context") or given or record["id"])


def a2a_error(exc: Refused) -> A2AError:
    """A refusal of the task API as the A2A error a client acts on."""
    if exc.status in (400, 413) or exc.reason == ID_TAKEN:
        return InvalidParamsError(exc.message)  # a message id reused for another message too
    if exc.status == 404:
        return TaskNotFoundError(exc.message)
    if exc.status == 409:
        return TaskNotCancelableError(exc.message)
    if exc.status in (401, 403):
        return InvalidRequestError(exc.message)
    data = {"retryAfterSeconds": exc.retry_after} if exc.retry_after else None
    return InternalError(exc.message, data=data)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    try:
        yield
    except Refused as exc:
        raise a2a_error(exc) from None


class FoundationHandler(RequestHandler):
    """The A2A methods over an Agent's tasks. Methods A2A has that Foundation does not (push
    notifications, an extended card) answer UnsupportedOperationError."""

    def __init__(
        self,
        peers: Peers,
        actions: Mapping[str, Action],
        version: str,
        default_url: str,
        blocking_wait: float = BLOCKING_WAIT,
    ) -> None:
        self.peers = peers
        self.actions = dict(actions)
        self.version = version
        self.default_url = default_url
        self.blocking_wait = blocking_wait

    async def card(self, url: str) -> AgentCard:
        info = await self.peers.info()
        return card_of(
            self.peers.agent,
            info.description,
            url,
            self.version,
            self._listed(),
            info.capabilities,
        )

    async def _submit(self, params: SendMessageRequest, caller: Caller) -> tuple[Record, str]:
        asked = ask_of(params.message, self.actions)
        with refusals():
            _, inbox = await self.peers.owner(asked.task_id)
            _, record = await inbox.submit(
                asked.task_id, asked.action, asked.input, asked.context_id, caller
            )
        return record, asked.context_id

    async def _wait(self, task_id: str, seconds: float, caller: Caller) -> Record | None:
        with refusals():
            _, inbox = await self.peers.owner(task_id)
            return await inbox.get(task_id, caller, wait=seconds)

    def _listed(self) -> list[dict[str, Any]]:
        return [
            {"name": a.name, "description": a.description, "inputSchema": a.input_schema()}
            for a in self.actions.values()
        ]

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        caller = caller_of(context)
        reply = guidance(params.message, self._listed())
        if reply is not None:
            return reply
        record, context_id = await self._submit(params, caller)
        if not params.configuration.return_immediately and record["status"] not in ENDED:
            record = await self._wait(record["id"], self.blocking_wait, caller) or record
        return task_of(record, context_of(record, context_id))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        caller = caller_of(context)
        reply = guidance(params.message, self._listed())
        if reply is not None:
            yield reply
            return
        record, context_id = await self._submit(params, caller)
        async for event in self._follow(record, context_of(record, context_id), caller):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        caller = caller_of(context)
        record = await self._wait(params.id, 0, caller)
        if record is None:
            raise TaskNotFoundError(f"no task {params.id!r} (or its record expired)")
        async for event in self._follow(record, context_of(record), caller):
            yield event

    async def _follow(
        self, record: Record, context_id: str, caller: Caller
    ) -> AsyncGenerator[Event]:
        """The task as it is, then (once done) its result and final state."""
        yield task_of(record, context_id)
        while record["status"] not in ENDED:
            record = await self._wait(record["id"], STREAM_SLICE, caller) or record
        final = task_of(record, context_id)
        for artifact in final.artifacts:
            yield TaskArtifactUpdateEvent(
                task_id=final.id, context_id=context_id, artifact=artifact, last_chunk=True
            )
        yield TaskStatusUpdateEvent(task_id=final.id, context_id=context_id, status=final.status)

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        record = await self._wait(params.id, 0, caller_of(context))
        if record is None:
            raise TaskNotFoundError(f"no task {params.id!r} (or its record expired)")
        return task_of(record, context_of(record))

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        with refusals():
            _, inbox = await self.peers.owner(params.id)
            record = await inbox.cancel(params.id, caller_of(context))
        return task_of(record, context_of(record))

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """ListTasks (A2A 1.0, 3.1.4) over the Agent's task history across its members: the
        tasks the caller may see (anyone's for who may `get` the Agent's tasks, else their
        own), most recently updated first; filters by context, state and update time; pages
        of 1 to 100 (50 unless asked); the artifacts only when asked for."""
        query = list_query(params)
        with refusals():
            page = await self.peers.listing(query, caller_of(context))
        tasks = [task_of(t, context_of(t)) for t in page.tasks]
        if not params.include_artifacts:
            for task in tasks:
                task.ClearField("artifacts")
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=page.next_token,
            page_size=query.page_size,
            total_size=page.total,
        )

    async def _no_push_notifications(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError("push notifications: use message/stream or tasks/get")

    on_create_task_push_notification_config = _no_push_notifications
    on_get_task_push_notification_config = _no_push_notifications
    on_list_task_push_notification_configs = _no_push_notifications
    on_delete_task_push_notification_config = _no_push_notifications

    async def on_get_extended_agent_card(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError("there is no extended card: the public one is all")


def a2a_app(handler: FoundationHandler, gate: Gate) -> Any:
    """The ASGI app: JSON-RPC at `/` and the card at the well-known path, behind the member's
    door: an unidentified call is answered 401 before any JSON-RPC is read; the card is for
    whoever may read the Agent; each method is authorized as the task API's call it makes."""
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict
    from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def card(request: Request) -> JSONResponse:
        try:
            await gate.require(request.scope["auth"], "get", subresource=access.A2A)
        except Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        # Forwarding headers are believed from a relayed call only (the door, whose right to
        # relay RBAC grants), as the sender header is.
        trusted = bool(request.scope["auth"].via)
        url = card_url(request.headers, request.url.path, handler.default_url, trusted)
        try:
            body = agent_card_to_dict(await handler.card(url))
        except Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=503)
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    routes = [
        Route(CARD_PATH, card, methods=["GET"]),
        *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True),
    ]
    return authenticated(Starlette(routes=routes), gate)


def authenticated(app: Any, gate: Gate) -> Any:
    """`app` for identified callers only: the caller goes into the request's scope as `auth`,
    where a2a-sdk's call context finds it."""
    from starlette.datastructures import Headers
    from starlette.responses import JSONResponse

    async def door(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            tracing.INCOMING.set(tracing.carried(headers))
            try:
                caller = scope["auth"] = await gate.identify(headers)
                # JSON-RPC calls send, cancel or read tasks: a caller who may do none of them
                # is refused here, by HTTP, before any is read; each method is checked again.
                if scope["method"] == "POST" and not (
                    await gate.allowed(caller, access.SEND)
                    or await gate.allowed(caller, access.READ)
                ):
                    raise Denied(403, gate.forbidden(caller, access.SEND))
            except Refused as exc:
                answer = JSONResponse(
                    {"error": exc.message},
                    status_code=exc.status,
                    headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
                )
                await answer(scope, receive, send)
                return
        await app(scope, receive, send)

    return door
