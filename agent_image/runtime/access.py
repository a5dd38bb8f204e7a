"""Who is calling this member, and may they: the door of the task API and the A2A server.

- **Who** (`Gate.identify`): the bearer token of the call, verified by the API server
  (TokenReview, for Foundation's audience only), so a token stolen from another audience, an
  expired one, or one of a deleted pod is refused (401). A member of the same Agent forwarding a
  call (A2A to the task's owner) names the caller it forwards for; that name is believed from
  the Agent's own account only.
- **May they** (`Gate.allowed`): the cluster's RBAC on the Agent's `tasks` subresource
  (LocalSubjectAccessReview, which a member may ask in its own namespace), worded as the API
  server words a denial when not (403).

Both answers are cached for a short, bounded time (`ttl`, `denied_ttl`), keyed by the token's
hash and by (caller, verb): however many calls arrive at once, one review per caller reaches
the API server (concurrent misses share one request), and a steady caller's answer is asked
again once 80 % of its time has passed (`Cache`). A removed RoleBinding bites within `ttl`.

`mode`: `Required` refuses a call without a token (401); `Permissive` lets it through as an
anonymous caller (no sender recorded), for callers that cannot present one yet. A call that
presents a token is verified and authorized in both.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from foundation_agent.runtime.records import Refused
from foundation_common import access
from foundation_common.resources import AGENT

logger = logging.getLogger("foundation_agent.access")

Mode = Literal["Required", "Permissive"]
TTL = 10.0  # seconds a verified token or an allowed decision is used
DENIED_TTL = 2.0  # seconds a refusal is used: a new grant works almost at once
MAX_ENTRIES = 4096  # per cache; the least recently used go first
REFRESH_SHARE = 0.2  # the last part of an answer's time, in which it is refreshed ahead


@dataclass(frozen=True)
class Caller:
    """A caller as the API server knows it. `via`: the member that forwarded the call."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    via: str = ""

    @property
    def anonymous(self) -> bool:
        return self.user == access.ANONYMOUS

    def sent(self, record: Mapping[str, Any]) -> bool:
        """Whether this caller sent the task of `record` (a record without a sender: no one)."""
        return not self.anonymous and record.get("sender") == self.user


ANONYMOUS = Caller(access.ANONYMOUS, ("system:unauthenticated",))


class Denied(Refused):
    """401 (who are you?) or 403 (not allowed), with the message the caller sees."""


Review = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]  # (path, body) -> answer


class Cache:
    """Answers kept for a bounded time and number; a miss asked once however many wait on it.

    An answer in the last `REFRESH_SHARE` of its time is given as it is while a fresh one is
    asked in the background, so a caller that calls steadily never waits on a review: a
    decision is never older than its time, plus one review's round trip."""

    def __init__(self, clock: Callable[[], float], size: int = MAX_ENTRIES) -> None:
        self.clock = clock
        self.size = size
        self.entries: OrderedDict[Any, tuple[float, float, Any]] = OrderedDict()
        self.pending: dict[Any, asyncio.Future[Any]] = {}

    async def get(
        self, key: Any, fetch: Callable[[], Awaitable[Any]], ttl: Callable[[Any], float]
    ) -> Any:
        held = self.entries.get(key)
        now = self.clock()
        if held is not None and held[0] > now:
            self.entries.move_to_end(key)
            if now >= held[1] and key not in self.pending:
                refresh = asyncio.ensure_future(self._fetch(key, fetch, ttl))
                refresh.add_done_callback(lambda done: done.cancelled() or done.exception())
            return held[2]
        waiting = self.pending.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        return await self._fetch(key, fetch, ttl)

    async def _fetch(
        self, key: Any, fetch: Callable[[], Awaitable[Any]], ttl: Callable[[Any], float]
    ) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            value = await fetch()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: those waiting raise it, none is left unread
            raise
        finally:
            self.pending.pop(key, None)
        future.set_result(value)
        now, seconds = self.clock(), ttl(value)
        self.entries[key] = (now + seconds, now + seconds * (1 - REFRESH_SHARE), value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value


class Gate:
    """The member's door: `identify` a call, then ask whether the caller is `allowed`."""

    def __init__(
        self,
        review: Review | None,
        namespace: str,
        agent: str,
        account: str,
        mode: Mode = "Required",
        ttl: float = TTL,
        denied_ttl: float = DENIED_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.review = review
        self.namespace = namespace
        self.agent = agent
        # The Agent's own account: its members may forward a call for another caller (so may
        # whoever RBAC lets `relay` this Agent's tasks).
        self.sibling = f"system:serviceaccount:{namespace}:{account}"
        self.mode = mode
        self.ttl = ttl
        self.denied_ttl = denied_ttl
        self.tokens = Cache(clock)
        self.decisions = Cache(clock)

    async def _ask(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A review; the API server away or refusing us is this call's 503, never cached."""
        assert self.review is not None
        try:
            return await self.review(path, body)
        except Exception as exc:
            logger.warning("cannot review a caller (%s): %s", body["kind"], exc)
            raise Refused(
                503, f"cannot verify the caller now ({body['kind']}: {exc})", retry_after=1
            ) from None

    async def identify(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request with these headers; Denied(401) if unproven."""
        authorization = headers.get("Authorization") or ""  # headers: case-insensitive
        scheme, _, token = authorization.partition(" ")
        if not authorization:
            if self.mode == "Permissive":
                return ANONYMOUS
            raise Denied(
                401, "Unauthorized: this Agent needs a bearer token (see docs/security.md)"
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise Denied(401, "Unauthorized: the Authorization header must be 'Bearer <token>'")
        caller = await self._authenticate(token.strip())
        forwarded = headers.get(access.SENDER_HEADER)
        if forwarded:
            if caller.user != self.sibling and not await self.allowed(caller, access.RELAY):
                raise Denied(403, self.forbidden(caller, access.RELAY))
            if forwarded == access.ANONYMOUS:
                return ANONYMOUS
            groups = headers.get(access.SENDER_GROUPS_HEADER) or ""
            return Caller(
                forwarded,
                tuple(g for g in groups.split(",") if g),
                via=caller.user,
            )
        return caller

    async def _authenticate(self, token: str) -> Caller:
        if self.review is None:
            raise Denied(401, "Unauthorized: this member cannot verify tokens (no API access)")
        key = hashlib.sha256(token.encode()).digest()

        async def fetch() -> Caller | None:
            answer = await self._ask(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token, "audiences": [access.AUDIENCE]},
                },
            )
            status = answer.get("status") or {}
            if not status.get("authenticated") or access.AUDIENCE not in (
                status.get("audiences") or [access.AUDIENCE]
            ):
                return None
            user = status.get("user") or {}
            return Caller(
                user.get("username", ""),
                tuple(user.get("groups") or ()),
                user.get("uid", ""),
                tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items())),
            )

        caller = await self.tokens.get(
            key, fetch, lambda found: self.ttl if found else self.denied_ttl
        )
        if caller is None:
            raise Denied(
                401,
                f"Unauthorized: the token is not valid for audience {access.AUDIENCE!r}"
                " (expired, for another audience, or of a pod that is gone)",
            )
        return caller  # type: ignore[no-any-return]

    async def allowed(self, caller: Caller, verb: str, subresource: str = access.TASKS) -> bool:
        """Whether RBAC lets `caller` `verb` this Agent's `subresource` (tolerated anonymous
        callers, in Permissive mode, may)."""
        if caller.anonymous and self.mode == "Permissive":
            return True
        if self.review is None:
            return False
        key = (caller.user, caller.groups, caller.uid, caller.extra, verb, subresource)

        async def fetch() -> bool:
            attributes = {
                "namespace": self.namespace,
                "verb": verb,
                "group": access.GROUP,
                "resource": AGENT.plural,
                "name": self.agent,
            }
            if subresource:
                attributes["subresource"] = subresource
            spec: dict[str, Any] = {
                "user": caller.user,
                "groups": list(caller.groups),
                "resourceAttributes": attributes,
            }
            if caller.uid:
                spec["uid"] = caller.uid
            if caller.extra:
                spec["extra"] = {k: list(v) for k, v in caller.extra}
            answer = await self._ask(
                f"/apis/authorization.k8s.io/v1/namespaces/{self.namespace}"
                "/localsubjectaccessreviews",
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "LocalSubjectAccessReview",
                    "metadata": {"namespace": self.namespace},
                    "spec": spec,
                },
            )
            return bool((answer.get("status") or {}).get("allowed"))

        return bool(
            await self.decisions.get(
                key, fetch, lambda allowed: self.ttl if allowed else self.denied_ttl
            )
        )

    def forbidden(self, caller: Caller, verb: str, subresource: str = access.TASKS) -> str:
        return access.forbidden(caller.user, verb, self.namespace, self.agent, subresource)

    async def require(self, caller: Caller, verb: str, subresource: str = access.TASKS) -> None:
        if not await self.allowed(caller, verb, subresource):
            raise Denied(403, self.forbidden(caller, verb, subresource))

    async def may_read(self, caller: Caller, record: Mapping[str, Any] | None) -> bool:
        """A task record is the sender's to read, and anyone's who may `get` the Agent's tasks."""
        if record is not None and caller.sent(record):
            return True
        return await self.allowed(caller, access.READ)

    def forward_headers(self, caller: Caller) -> dict[str, str]:
        """What a member sends along when it forwards `caller`'s call to another member."""
        return {
            access.SENDER_HEADER: caller.user,
            access.SENDER_GROUPS_HEADER: ",".join(caller.groups),
        }


def review_with(api: Any) -> Review:
    """A Review over foundation_common.rest.Client."""

    async def review(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await api.create(path, body)  # type: ignore[no-any-return]

    return review
