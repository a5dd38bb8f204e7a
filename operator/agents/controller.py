"""The Agent supervisor: observes Agents and their member pods, and applies what `plan` decides
(the pods themselves through `members.MemberPods`).

Level-triggered: watch events only update the indexes and queue the Agent's key; the core's
workers take keys from the queue, one worker per key at a time, and bring the cluster to what
the spec wants. An Agent whose objects already match its spec costs no API writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable

from foundation_common import events
from foundation_common.resources import AGENT
from foundation_common.status import now
from foundation_operator.agents import objects, plan, pods
from foundation_operator.agents.api import AgentStatus, AgentView, InvalidSpec
from foundation_operator.agents.members import AgentMemory, MemberPods
from foundation_operator.agents.plan import RUNTIME_FIELDS
from foundation_operator.core import finalizers, metrics, owned, security
from foundation_operator.core.client import Api, ApiError, Obj
from foundation_operator.core.defaults import Platform
from foundation_operator.core.index import Index, Key, OwnedIndex, key_of
from foundation_operator.core.reconciler import Reconciler
from foundation_operator.core.status import StatusWriter

logger = logging.getLogger(__name__)
FINALIZER = "foundation.dev/supervisor"
STATUS_INTERVAL = 1.0  # seconds between progress-only status writes
# How long a new Agent's first status waits for its members to become ready, so that starting
# up costs one status write, not one per member event (a refusal or a restart goes out at once).
STATUS_PATIENCE = 10.0  # seconds
# The API server's answers that refuse an object for what it is, not for a passing reason.
REFUSALS = (400, 403, 422)
# The queue's key of the one binding of every Agent's account (objects.members_binding): no
# Agent has an empty namespace.
MEMBERS_KEY: Key = ("", "members-binding")
REFUSED_RETRY_SECONDS = 30.0  # a refusal by admission (quota, policy) may lift by itself


class Supervisor(Reconciler):
    resource = "agent"

    def __init__(
        self,
        kube: Api,
        workers: int = 8,
        agent_image: str = "",
        caller_auth: str = "Required",
        platform: Platform | None = None,
        privileged_namespaces: Iterable[str] = (),
        callers_from: list[Obj] | None = None,
        manages: Callable[[str], bool] = lambda namespace: True,
    ) -> None:
        super().__init__(workers)
        self.manages = manages  # whether a namespace's Agents are this operator's
        self.callers_from = callers_from  # None: no NetworkPolicies
        self.privileged_namespaces = frozenset(privileged_namespaces)
        self.kube = kube
        self.agent_image = agent_image
        self.caller_auth = caller_auth
        self.platform = platform or Platform()
        # (namespace, capability) -> the Agents offering it, and the Agents calling it: who
        # may call whom follows capabilities as Agents come, go and change them.
        self.offering: dict[Key, set[str]] = {}
        self.calling: dict[Key, set[Key]] = {}
        self.members_applied: set[tuple[str, str]] | None = None  # accounts last written
        self.agents = Index()
        self.pods = OwnedIndex(objects.AGENT_LABEL)
        self.spares = OwnedIndex(objects.SPARE_LABEL)  # spec.warmSpares: not members yet
        self.memory: dict[Key, AgentMemory] = {}
        self.member_pods = MemberPods(kube, self.remember)
        self.phases: dict[Key, str] = {}
        self.status = StatusWriter(
            self._patch_status,
            self.queue.add_after,
            interval=STATUS_INTERVAL,
            patience=STATUS_PATIENCE,
            others=RUNTIME_FIELDS,
        )

    def remember(self, key: Key) -> AgentMemory:
        return self.memory.setdefault(key, AgentMemory())

    # -- observation (from watch events) --------------------------------------------------

    def observe_agent(self, event: str, body: Obj) -> None:
        before = self.agents.get(key_of(body))
        key = self.agents.observe(event, body)
        if key is None:
            return
        self.queue.add(key)
        after = self.agents.get(key)
        if (
            before is None
            or after is None
            or objects.account_of(before) != objects.account_of(after)
        ):
            self.queue.add(MEMBERS_KEY)
        offered = self._follow_calls(key, before, after)
        for capability in offered:
            for caller in self.calling.get((key[0], capability), ()):
                self.queue.add(caller)

    def _follow_calls(self, key: Key, before: Obj | None, after: Obj | None) -> set[str]:
        """Keep `offering` and `calling` up to date; the capabilities whose offerers changed."""

        def spec(agent: Obj | None) -> Obj:
            return (agent or {}).get("spec") or {}

        namespace, name = key
        old = set(spec(before).get("capabilities") or [])
        new = set(spec(after).get("capabilities") or [])
        for capability in old - new:
            self.offering.get((namespace, capability), set()).discard(name)
        for capability in new - old:
            self.offering.setdefault((namespace, capability), set()).add(name)
        was = set((spec(before).get("calls") or {}).get("capabilities") or [])
        now_calls = set((spec(after).get("calls") or {}).get("capabilities") or [])
        for capability in was - now_calls:
            self.calling.get((namespace, capability), set()).discard(key)
        for capability in now_calls - was:
            self.calling.setdefault((namespace, capability), set()).add(key)
        return old ^ new

    def callees(self, view: AgentView) -> list[str]:
        offering = {
            c: self.offering.get((view.namespace, c), ()) for c in view.spec.calls.capabilities
        }
        return objects.callees(view, offering)

    def observe_pod(self, event: str, body: Obj) -> None:
        key = self.pods.observe(event, body)
        if key is None:
            return
        if event == "DELETED":
            memory = self.remember(key)
            uid = body["metadata"]["uid"]
            agent = self.agents.get(key)
            if uid in memory.expected_gone:
                memory.expected_gone.discard(uid)
            elif agent is not None and not agent["metadata"].get("deletionTimestamp"):
                memory.restarted(body, "its pod was deleted")
            memory.restart_baseline.pop(uid, None)
        self.queue.add(key)

    def observe_spare(self, event: str, body: Obj) -> None:
        """A spare changed, went, or was claimed (its spare label taken off: the watch says it
        is gone, the members' watch that it came): no restart either way."""
        labels = body["metadata"].get("labels") or {}
        if objects.SPARE_LABEL not in labels and objects.AGENT_LABEL in labels:
            # Claimed, in case the watch says so as a change rather than as its going.
            key = (body["metadata"]["namespace"], labels[objects.AGENT_LABEL])
            self.spares.of(key).pop(body["metadata"]["name"], None)
            self.queue.add(key)
            return
        key = self.spares.observe(event, body)
        if key is not None:
            self.queue.add(key)

    def observe_owned(self, event: str, body: Obj) -> None:
        """An object an Agent owns changed or went (from a server-filtered watch): check the
        Agent's owned objects against the API on its next pass. Our own creates (ADDED) and
        changes that leave what we manage as it was cost nothing."""
        if event == "ADDED":
            return
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        if objects.AGENT_LABEL in labels:
            keys = [(meta["namespace"], labels[objects.AGENT_LABEL])]
        elif objects.CAPABILITY_LABEL in labels:
            capability = labels[objects.CAPABILITY_LABEL]
            keys = [
                key
                for key, agent in self.agents.objects.items()
                if key[0] == meta["namespace"]
                and capability in ((agent.get("spec") or {}).get("capabilities") or [])
            ]
        else:
            return
        for key in keys:
            agent = self.agents.get(key)
            if agent is None or agent["metadata"].get("deletionTimestamp"):
                continue
            differences = self._drifted(agent, body) if event == "MODIFIED" else []
            if event == "MODIFIED" and not differences:
                continue
            logger.info(
                "agent %s/%s: %s %s %s by someone else%s; making it right",
                *key,
                body.get("kind", "object"),
                meta["name"],
                "deleted" if event == "DELETED" else "changed",
                "".join(f"; {d}" for d in differences),
                extra=self.log_fields(key),
            )
            self.remember(key).owned_applied = ""
            self.queue.add(key)

    def _drifted(self, agent: Obj, have: Obj) -> list[objects.Difference]:
        """Where a changed object departs from what the Agent wants of it (pure)."""
        try:
            view = AgentView.from_body(agent, self.agent_image, self.caller_auth, self.platform)
        except InvalidSpec:
            return []
        meta = have["metadata"]
        wanted = objects.owned_objects(view, self.callees(view), self.callers_from) + [
            objects.capability_service(
                view.namespace, c, [objects.owner_reference(view, controller=False)]
            )
            for c in view.spec.capabilities
        ]
        for want in wanted:
            if (want["kind"], want["metadata"]["name"]) == (have.get("kind"), meta["name"]):
                return objects.drifted(want, have)
        return []

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        if key == MEMBERS_KEY:
            await self._ensure_members_binding()
            return None
        body = self.agents.get(key)
        if body is None:
            self._record_phase(key, None)
            self.memory.pop(key, None)
            self.status.forget(key)
            self.queue.discard(key)
            self.pods.prune(key)
            self.spares.prune(key)
            self.trimmer.forgotten()
            return None
        try:
            view = AgentView.from_body(body, self.agent_image, self.caller_auth, self.platform)
        except InvalidSpec as exc:
            if body["metadata"].get("deletionTimestamp"):
                # Nothing can be built from this spec, so nothing is released either: let the
                # Agent go; the garbage collector removes what it owns.
                await self._release_finalizer(body)
            else:
                await self._invalid(body, str(exc))
            return None
        if view.deleting:
            await self._finalize(view, body)
            return None
        found = objects.problems(view)
        if view.spec.service_account_name and not await self.kube.read(
            "ServiceAccount", view.namespace, view.spec.service_account_name
        ):
            found.append(
                f'spec.serviceAccountName: ServiceAccount "'
                f'{view.spec.service_account_name}" does not exist in {view.namespace}'
            )
        if found:
            await self._invalid(body, "; ".join(found))
            return None
        if view.namespace not in self.privileged_namespaces:
            # What admission enforces on clusters of today (Pod Security "restricted"), said
            # here, where 1.20's API server would take the pod: no pod, and the field named.
            breaks = security.violations(pods.member_pod(view, 0)["spec"])
            if breaks:
                await self._invalid(
                    body,
                    "the members' pods would break the restricted Pod Security Standard: "
                    + "; ".join(breaks)
                    + " (change spec.podTemplate, or ask for this namespace to be exempted:"
                    " the chart's agents.privilegedNamespaces)",
                    reason="NotRestricted",
                )
                return None
        # The finalizer only where a deletion needs the operator: to release the members'
        # state objects (persistence.retainOnDelete) before the garbage collector takes them;
        # it goes on before any member exists (pods come in _supervise). Otherwise the garbage
        # collector does it all, a write an Agent fewer: members (stopped gracefully, as any
        # pod deletion), owned objects, and this Agent's reference on shared capability
        # Services (the last owner's going deletes them).
        if view.spec.persistence.retain_on_delete:
            finalizing = self._ensure_finalizer(body)
        else:
            finalizing = self._release_finalizer(body)  # an Agent from before, or retain turned off
        # The state objects of members still to come go out with the owned objects: a new
        # Agent's pods then wait one round of writes, not two (a pod needs its ServiceAccount
        # and its state object; the Role, RoleBinding and Services it does not).
        present = self.pods.of((view.namespace, view.name))
        failed = (body.get("status") or {}).get("phase") == "Failed"  # no members to come
        coming = (
            []
            if failed
            else [
                i for i in range(view.spec.replicas) if objects.member_name(view, i) not in present
            ]
        )
        await asyncio.gather(
            finalizing,
            self._ensure_owned(view),
            *(self.member_pods.ensure_state(view, i) for i in coming),
        )
        return await self._supervise(view, body)

    async def _supervise(self, view: AgentView, body: Obj) -> float | None:
        key = (view.namespace, view.name)
        memory = self.remember(key)
        raw = body.get("status") or {}
        status = plan.parse_status(raw)
        members = dict(self.pods.of(key))
        at = now()

        # Restarts since the last look: pods deleted from under us (observed), container
        # restarts (counted from the pods).
        counted, memory.restart_baseline = plan.container_restarts(
            members, memory.restart_baseline, status.members, at
        )
        restarts = [*memory.pending_restarts, *counted]
        memory.pending_restarts.clear()
        supervised = plan.supervise(view, status, members, restarts, at)
        if restarts:
            metrics.MEMBER_RESTARTS.inc(len(restarts))
        if supervised.exhausted:
            metrics.INTENSITY_EXHAUSTED.inc()
            await self._warn(view, "RestartIntensityExceeded", supervised.exhausted)
            logger.warning(
                "agent %s/%s failed: %s", *key, supervised.exhausted, extra=self.log_fields(key)
            )
        await self.member_pods.stop(view, supervised.stop)
        slept = plan.sleep(view, status, raw.get("memberStates") or {}, at)
        if bool(slept.asleep_since) != bool(status.asleep_since):
            logger.info(
                "agent %s/%s %s",
                *key,
                f"sleeps: no task for {view.spec.sleep_after_idle_seconds}s"
                if slept.asleep_since
                else "wakes",
                extra=self.log_fields(key),
            )
            metrics.AGENT_SLEEPS.labels("sleep" if slept.asleep_since else "wake").inc()
        refused = None
        if not supervised.failed:
            try:
                await self.member_pods.converge(
                    view, members, slept.asleep_since, self.spares.of(key)
                )
            except ApiError as exc:
                # A pod the API server will not take (invalid, or forbidden by admission):
                # said in the status, and looked at again later, not in a hot loop.
                if exc.status not in REFUSALS:
                    raise
                refused = exc.message[:500]
                logger.warning("agent %s/%s: %s", *key, refused, extra=self.log_fields(key))
            for capability in set(status.capabilities) - set(view.spec.capabilities):
                await self._leave_capability(view, capability)
        new = plan.agent_status(
            view,
            status,
            raw.get("memberStates") or {},
            members,
            supervised,
            at,
            refused,
            slept.asleep_since,
        )
        await self._write_status(
            body,
            new,
            urgent=supervised.failed
            or bool(restarts)
            or bool(slept.asleep_since) != bool(status.asleep_since),
            settled=plan.settled(new, refused),
        )
        if refused:
            return REFUSED_RETRY_SECONDS
        return slept.recheck

    async def _ensure_owned(self, view: AgentView) -> None:
        """ServiceAccount, Role, RoleBinding, Service and capability memberships.

        Checked against the API only when their desired form changed since this operator last
        applied it (or after a restart), so the many reconciliations that pod events cause cost
        no reads here.
        """
        memory = self.remember((view.namespace, view.name))
        wanted = objects.owned_objects(view, self.callees(view), self.callers_from)
        fingerprint = json.dumps([wanted, sorted(view.spec.capabilities)], sort_keys=True)
        if memory.owned_applied == fingerprint:
            return
        # Independent writes go out together: etcd commits concurrent writes in one fsync, so
        # an Agent costs about one round trip instead of one per object.
        await asyncio.gather(
            *(
                owned.ensure(self.kube, want, objects.OWNED_FIELDS.get(want["kind"], ()))
                for want in wanted
            ),
            *(self._join_capability(view, c) for c in view.spec.capabilities),
        )
        memory.owned_applied = fingerprint

    async def _ensure_members_binding(self) -> None:
        """The one binding of every Agent's account to the members' ClusterRole (review a
        caller's token). Other operators (other namespaces, other releases) write it too, so
        it is merged: the accounts of the namespaces this operator manages are its index's,
        the others are left as they are. Read and written under its resourceVersion (a
        conflict comes back through the queue); written only when it changes."""
        mine = {objects.account_of(agent) for agent in self.agents.objects.values()}
        if mine == self.members_applied:
            return
        want = objects.members_binding(mine)
        have, created = await owned.create_or_read(self.kube, want)
        if not created:
            merged = objects.merged_subjects(have, mine, self.manages)
            if merged != have.get("subjects"):
                meta = have["metadata"]
                await self.kube.patch(
                    "ClusterRoleBinding",
                    None,
                    meta["name"],
                    {"metadata": {"resourceVersion": meta["resourceVersion"]}, "subjects": merged},
                )
        self.members_applied = mine

    async def _join_capability(self, view: AgentView, capability: str) -> None:
        """Create the capability Service or add the Agent to its owners (see core.owned)."""
        mine = objects.owner_reference(view, controller=False)
        want = objects.capability_service(view.namespace, capability, [mine])
        have, created = await owned.create_or_read(self.kube, want)
        if created:
            return
        patch = owned.field_patch(want, have, objects.OWNED_FIELDS["Service"])
        if patch:
            have = await self.kube.patch("Service", view.namespace, want["metadata"]["name"], patch)
        await owned.adopt(self.kube, have, mine)

    async def _leave_capability(self, view: AgentView, capability: str) -> None:
        """Drop the Agent's owner reference from a capability Service; the last one deletes it."""
        name = objects.capability_service_name(capability)
        have = await self.kube.read("Service", view.namespace, name)
        if have is not None:
            # A conflict (someone joined, or it changed since the read) is decided again on
            # the next pass.
            await owned.disown(self.kube, have, view.uid, delete_when_last=True)

    # -- status, events, finalizer ---------------------------------------------------------------

    async def _patch_status(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self.kube.patch_custom(AGENT, namespace, name, patch, status=True)

    async def _patch(self, body: Obj, patch: Obj) -> Obj:
        meta = body["metadata"]
        return await self.kube.patch_custom(AGENT, meta["namespace"], meta["name"], patch)

    async def _write_status(
        self, body: Obj, new: AgentStatus, *, urgent: bool = True, settled: bool = True
    ) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self._record_phase(key, new.phase)
        answer = await self.status.write(
            body, plan.dump_status(new), urgent=urgent, settled=settled
        )
        if answer is not None:
            self.agents.ahead(answer)

    async def _invalid(self, body: Obj, message: str, reason: str = "InvalidSpec") -> None:
        generation = int(body["metadata"].get("generation", 0))
        status = plan.parse_status(body.get("status"))
        await self._write_status(
            body, plan.invalid_status(status, generation, message, now(), reason)
        )

    def _record_phase(self, key: Key, phase: str | None) -> None:
        """Keep the agents-by-phase gauge in step with what the supervisor reports."""
        before = self.phases.pop(key, None)
        if phase:
            self.phases[key] = phase
        if before != phase:
            if phase:
                logger.info(
                    "agent %s/%s is %s (was %s)",
                    *key,
                    phase,
                    before or "unseen",
                    extra=self.log_fields(key),
                )
            for changed in {before, phase} - {None}:
                metrics.AGENTS.labels(phase=changed).set(
                    sum(1 for p in self.phases.values() if p == changed)
                )

    async def _warn(self, view: AgentView, reason: str, message: str) -> None:
        """A Warning Event on the Agent."""
        involved = AGENT.reference(view.namespace, view.name, view.uid)
        key = (view.namespace, view.name)
        await events.record(
            self.kube.create, involved, reason, message, log_fields=self.log_fields(key)
        )

    async def _ensure_finalizer(self, body: Obj) -> None:
        answer = await finalizers.add(body, FINALIZER, lambda p: self._patch(body, p))
        if answer is not None:
            self.agents.ahead(answer)

    async def _release_finalizer(self, body: Obj) -> None:
        answer = await finalizers.release(body, FINALIZER, lambda p: self._patch(body, p))
        if answer is not None:
            self.agents.ahead(answer)

    async def _finalize(self, view: AgentView, body: Obj) -> None:
        """Stop members gracefully, release shared objects, then let the Agent go."""
        key = (view.namespace, view.name)
        if not finalizers.has(body, FINALIZER):
            return
        members = self.pods.of(key)
        status = plan.parse_status(body.get("status"))
        if status.phase != "Terminating":
            await self._write_status(body, plan.terminating_status(status))
        await self.member_pods.stop(view, list(members.values()))
        if members:
            return  # pod events bring us back when they are gone
        for capability in set(status.capabilities) | set(view.spec.capabilities):
            await self._leave_capability(view, capability)
        if view.spec.persistence.retain_on_delete:
            await self.member_pods.release_state(view)
        await self._release_finalizer(body)
