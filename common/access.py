"""Who may call an Agent: the names both sides of a call agree on.

A call into a member (its task API, its A2A server) is authorized by the cluster's RBAC on a
subresource of the Agent in the API group `access.foundation.dev` (the calls' group; the Agent
objects are `foundation.dev`'s): `create` on `agents/tasks` sends a task (and cancels one the
caller sent), `get` on `agents/tasks` reads any task record, `delete` on `agents/tasks` cancels a
task someone else sent. Whoever sent a task may always read it. `get` on `agents/actions` reads
the Agent's actions; `create` and `get` on `agents/a2a` speak A2A to it and read its card.
People's door serves the same group behind the API server (foundation_operator.door).

In-cluster callers (sidecars, Workflow runners, members forwarding within their Agent) prove who
they are with a projected ServiceAccount token bound to `AUDIENCE`, which the kubelet mounts at
`TOKEN_PATH` and renews; `CallerToken` reads it, again as it is renewed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from foundation_common.resources import AGENT

GROUP = "access.foundation.dev"  # the API group calls into Agents are authorized in
AUDIENCE = "foundation.dev"
TOKEN_DIR = "/var/run/secrets/foundation.dev/serviceaccount"
TOKEN_PATH = f"{TOKEN_DIR}/token"
TOKEN_SECONDS = 3600  # the projected token's lifetime (the kubelet renews it at 80 %)
TASKS = "tasks"  # the subresource of an Agent that calls are authorized on
ACTIONS = "actions"  # its actions and their input schemas (get)
APPROVAL = "approval"  # of a Workflow: `create` decides its approval steps (approve, reject)
A2A = "a2a"  # its A2A endpoint (create: JSON-RPC calls, get: its card)
WAKE = "wake"  # create: wake a sleeping Agent (granted with `create agents/tasks`)
SEND, READ, CANCEL_ANY = "create", "get", "delete"
# A member that forwards a call within its Agent (A2A to the task's owner) names the caller it
# forwards for; the receiving member believes it from its own Agent's account, and from whoever
# RBAC lets `relay` the Agent's tasks: the operator's door, which relays people (docs/security.md).
RELAY = "relay"
SENDER_HEADER = "X-Foundation-Sender"
SENDER_GROUPS_HEADER = "X-Foundation-Sender-Groups"
ANONYMOUS = "system:anonymous"
# People's door: GROUP, served by the operator behind the API server (an APIService), which
# authenticates and authorizes people, then relays them.
DOOR_VERSION = "v1alpha1"
REREAD_SECONDS = 60.0  # how long a token read from its file is used before reading it again


def forbidden(user: str, verb: str, namespace: str, agent: str, subresource: str = TASKS) -> str:
    """The API server's wording of a denial, for the caller to recognize and grant."""
    return (
        f'{AGENT.plural}.{GROUP} "{agent}" is forbidden: User "{user}" cannot {verb}'
        f' resource "{AGENT.plural}/{subresource}" in API group "{GROUP}" in the namespace'
        f' "{namespace}"'
    )


class TokenFile:
    """A bearer token in a file the kubelet renews: read again once it is `REREAD_SECONDS` old.
    The `Authorization` header to send; none while the file is absent (`missing_ok`) or
    empty."""

    def __init__(
        self,
        path: Path | str,
        missing_ok: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.missing_ok = missing_ok
        self._clock = clock
        self._token = ""
        self._read_at = float("-inf")

    def header(self) -> dict[str, str]:
        now = self._clock()
        if now - self._read_at >= REREAD_SECONDS:
            try:
                self._token = self.path.read_text().strip()
            except FileNotFoundError:
                if not self.missing_ok:
                    raise
                self._token = ""
            self._read_at = now
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


class CallerToken(TokenFile):
    """This pod's token for calls into members: the `Authorization` header to send (none where
    no token is mounted, as outside a cluster)."""

    def __init__(self, path: str = TOKEN_PATH, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(path, missing_ok=True, clock=clock)
