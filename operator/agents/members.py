"""An Agent's pods as `plan.converge` decides them, applied: members created (each after its
state object), replaced, rolled, scaled down and stopped; spares (spec.warmSpares) made,
claimed and dropped; state objects made, adopted, and released on a retained deletion. And
what the supervisor remembers of each Agent between passes.

The decisions are the plan's (pure); the supervisor (`controller`) observes and calls this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from foundation_common.resources import AGENT
from foundation_common.status import now
from foundation_operator.agents import objects, plan, pods
from foundation_operator.agents.api import AgentView
from foundation_operator.agents.plan import Restart
from foundation_operator.core import metrics, owned
from foundation_operator.core.client import Api, ApiError, Obj
from foundation_operator.core.index import Key

logger = logging.getLogger(__name__)


def log_fields(view: AgentView) -> dict[str, str]:
    return {"namespace": view.namespace, "agent": view.name}


@dataclass
class AgentMemory:
    """What the supervisor remembers of one Agent between reconciliations."""

    restart_baseline: dict[str, int] = field(default_factory=dict)  # pod uid -> restartCount
    expected_gone: set[str] = field(default_factory=set)  # pod uids the supervisor deleted
    # Restarts seen by observation (pods deleted from under us, failed pods replaced), counted
    # by the next pass.
    pending_restarts: list[Restart] = field(default_factory=list)
    # The owned objects (RBAC, Services) last brought to this desired form; see _ensure_owned.
    owned_applied: str = ""
    # (ordinal, kind) of the state objects made or adopted since this operator started.
    states_made: set[tuple[int, str]] = field(default_factory=set)

    def restarted(self, pod: Obj, why: str) -> None:
        """A restart seen by observation; the next pass counts it with the container restarts."""
        self.pending_restarts.append(plan.restart_of(pod, why, now()))


class MemberPods:
    """Applies the plan to an Agent's pods and state objects, remembering what it deleted
    (so the supervisor does not count it a restart) and which state objects it made."""

    def __init__(self, kube: Api, remember: Callable[[Key], AgentMemory]) -> None:
        self.kube = kube
        self.remember = remember

    async def converge(
        self,
        view: AgentView,
        members: dict[str, Obj],
        asleep_since: str = "",
        spares: dict[str, Obj] | None = None,
    ) -> None:
        """Apply `plan.converge`; `members` gains the pods created (and spares claimed)."""
        changes = plan.converge(view, members, asleep_since, spares)
        for pod in changes.scale_down:
            await self._delete(view, pod)
        memory = self.remember((view.namespace, view.name))
        for pod in changes.replace:
            memory.restarted(pod, "its pod failed")
            await self._delete(view, pod)
        # A member's state object exists before its pod: the runtime loads from it at start.
        await asyncio.gather(*(self.ensure_state(view, ordinal) for ordinal in changes.create))
        created = await asyncio.gather(
            *(
                owned.create_if_missing(
                    self.kube, pods.member_pod(view, ordinal, changes.parked_for)
                )
                for ordinal in changes.create
            )
        )
        for pod in created:
            if pod:
                members[pod["metadata"]["name"]] = pod
        if changes.roll is not None:
            await self._delete(view, changes.roll)
        await self._tend_spares(view, members, changes)

    async def _tend_spares(
        self, view: AgentView, members: dict[str, Obj], changes: plan.Convergence
    ) -> None:
        """spec.warmSpares: claim (a member's labels on a ready spare: the Endpoints take it
        at once, and its first call loads its state, made in reconcile with the Role that
        lets it read it), drop, and make spares (after their state object: a PVC must exist
        for the pod to start)."""
        for spare in changes.claim:
            meta = spare["metadata"]
            ordinal = plan.ordinal_of(spare)
            patch = pods.claim(view, ordinal)
            patch["metadata"]["uid"] = meta["uid"]  # this spare, not one made since
            try:
                claimed = await self.kube.patch("Pod", view.namespace, meta["name"], patch)
            except ApiError as exc:
                if exc.status not in (404, 409, 422):
                    raise
                continue  # gone or replaced meanwhile: its watch event brings us back
            metrics.SPARES_CLAIMED.inc()
            members[meta["name"]] = claimed
            logger.info(
                "agent %s/%s: spare %s claimed as member %d",
                view.namespace,
                view.name,
                meta["name"],
                ordinal,
                extra=log_fields(view),
            )
        for spare in changes.drop_spares:
            await self.kube.delete(
                "Pod", view.namespace, spare["metadata"]["name"], uid=spare["metadata"]["uid"]
            )
        await asyncio.gather(*(self.ensure_state(view, ordinal) for ordinal in changes.spares))
        await asyncio.gather(
            *(
                owned.create_if_missing(self.kube, pods.spare_pod(view, ordinal))
                for ordinal in changes.spares
            )
        )

    async def ensure_state(self, view: AgentView, ordinal: int) -> None:
        """Create the member's state object, or adopt one kept from an earlier Agent."""
        want = objects.state_object(view, ordinal)
        memory = self.remember((view.namespace, view.name))
        if want is None or (ordinal, want["kind"]) in memory.states_made:
            return
        have, created = await owned.create_or_read(self.kube, want)
        if not created:
            # Kept by persistence.retainOnDelete (or made by hand): this Agent takes it over,
            # state and all; an owner that was another Agent's is replaced.
            await owned.adopt(
                self.kube, have, objects.owner_reference(view), replacing_kind=AGENT.kind
            )
        memory.states_made.add((ordinal, want["kind"]))

    async def release_state(self, view: AgentView) -> None:
        """persistence.retainOnDelete: drop the Agent's owner reference from its members' state
        objects (every ordinal it ever had), so the garbage collector leaves them; an Agent of
        the same name adopts them later."""
        selector = f"{objects.AGENT_LABEL}={view.name}"
        for kind in ("ConfigMap", "PersistentVolumeClaim"):
            for have in await self.kube.list(kind, view.namespace, selector):
                if await owned.disown(self.kube, have, view.uid):
                    logger.info(
                        "kept %s %s/%s of deleted Agent %s (retainOnDelete)",
                        kind,
                        view.namespace,
                        have["metadata"]["name"],
                        view.name,
                        extra=log_fields(view),
                    )

    async def stop(self, view: AgentView, doomed: Iterable[Obj]) -> None:
        """Delete these member pods together (graceful); those already going are left be."""
        await asyncio.gather(*(self._delete(view, pod) for pod in doomed if not plan.going(pod)))

    async def _delete(self, view: AgentView, pod: Obj) -> None:
        self.remember((view.namespace, view.name)).expected_gone.add(pod["metadata"]["uid"])
        await self.kube.delete(
            "Pod", view.namespace, pod["metadata"]["name"], uid=pod["metadata"]["uid"]
        )
