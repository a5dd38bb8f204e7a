"""The Agent supervisor: observes Agents and their member pods, and reconciles each Agent.

Level-triggered: watch events only update the index and queue the Agent's key; workers take
keys from the queue, one worker per key at a time, and bring the cluster to what the spec wants.
An Agent whose objects already match its spec costs no API writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from foundation_operator import metrics
from foundation_operator.agents import objects
from foundation_operator.agents.api import Supervision
from foundation_operator.agents.objects import AgentView, InvalidSpec
from foundation_operator.k8s import ApiException, Kube, Obj, status_of

logger = logging.getLogger(__name__)
FINALIZER = "foundation.dev/supervisor"
STATUS_INTERVAL = 1.0  # seconds
Key = tuple[str, str]  # (namespace, name)


def about(key: Key) -> dict[str, str]:
    """Log fields naming the Agent a line is about (JSON logs carry them as fields)."""
    return {"namespace": key[0], "agent": key[1]}


def now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def restart_count(pod: Obj) -> int:
    return sum(
        s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses") or []
    )


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def last_exit(pod: Obj) -> Obj | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("lastState") or {}).get("terminated") or (
            status.get("state") or {}
        ).get("terminated")
        if terminated:
            return {
                "exitCode": terminated.get("exitCode"),
                "reason": terminated.get("reason", ""),
                "finishedAt": terminated.get("finishedAt"),
            }
    return None


def ordinal_of(pod: Obj) -> int:
    try:
        return int(pod["metadata"]["labels"][objects.MEMBER_LABEL])
    except (KeyError, ValueError):
        return -1


@dataclass
class Restart:
    member: str
    ordinal: int
    at: datetime
    why: str


@dataclass
class AgentMemory:
    """What the supervisor remembers of one Agent between reconciliations."""

    restart_baseline: dict[str, int] = field(default_factory=dict)  # pod uid -> restartCount
    expected_gone: set[str] = field(default_factory=set)  # pod uids the supervisor deleted
    pending_restarts: list[Restart] = field(default_factory=list)
    # The owned objects (RBAC, Services) last brought to this desired form; see _ensure_owned.
    owned_applied: str = ""
    # Progress-only status changes are written at most once per STATUS_INTERVAL; a new Agent's
    # first one waits too, so members that start quickly cost one write instead of two.
    status_written_at: float = field(default_factory=time.monotonic)
    flush_scheduled: bool = False
    # (ordinal, kind) of the state objects made or adopted since this operator started.
    states_made: set[tuple[int, str]] = field(default_factory=set)


def condition(
    kind: str, ok: bool | None, reason: str, message: str, generation: int, previous: list[Obj]
) -> Obj:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    before = next((c for c in previous if c.get("type") == kind), None)
    since = (
        before["lastTransitionTime"] if before and before.get("status") == status else stamp(now())
    )
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def without_empty_strings(value: Any, in_list: bool = False) -> Any:
    """A merge patch without "": Kubernetes 1.20 rejects empty strings in custom resources
    ("must be of type string: null"). In maps "" becomes null, which deletes the field; in list
    items (replaced whole) the key is dropped."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v == "":
                if not in_list:
                    out[k] = None
                continue
            out[k] = without_empty_strings(v, in_list)
        return out
    if isinstance(value, list):
        return [without_empty_strings(v, in_list=True) for v in value]
    return value


def sibling_of(ordinal: int, failed: int, strategy: str) -> bool:
    """Whether member `ordinal` restarts with the failed member `failed` under `strategy`."""
    if ordinal == failed or strategy == "OneForOne":
        return False
    return strategy == "OneForAll" or ordinal > failed


def exhaustion_message(
    restarts: list[Restart], members: dict[str, Obj], count: int, sup: Supervision
) -> str:
    """Why an Agent failed: the member that restarted last, its last exit, what to do."""
    last = restarts[-1] if restarts else None
    exit_info = last_exit(members[last.member]) if last and last.member in members else None
    if exit_info:
        exit_text = f"last exit code {exit_info['exitCode']} ({exit_info['reason']})"
    else:
        exit_text = last.why if last else "unknown"
    return (
        f"member {last.member if last else 'a member'} restarted {count} times within "
        f"{sup.period_seconds}s (maxRestarts {sup.max_restarts}); {exit_text}. Change the spec "
        f"or set the {objects.RESTARTED_AT} annotation to start it again"
    )


def older_than(body: Obj, cached: Obj | None) -> bool:
    """Whether `body` is an older version of the same object than `cached`.

    resourceVersions are opaque to clients, but the API server serves etcd revisions, which
    only grow; anything that does not parse as such is taken as newer.
    """
    if cached is None or cached["metadata"].get("uid") != body["metadata"].get("uid"):
        return False
    try:
        return int(body["metadata"]["resourceVersion"]) < int(cached["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return False


def namespace_terminating(exc: ApiException) -> bool:
    return status_of(exc) == 403 and "NamespaceTerminating" in str(getattr(exc, "body", ""))


# Status fields the members' runtimes write; the supervisor reads them and never writes them.
RUNTIME_FIELDS = ("state", "memberStates")


def persisted_condition(view: AgentView, member_states: dict[str, Obj], previous: list[Obj]) -> Obj:
    """Persisted, from what the members' runtimes report of their state."""
    store = view.spec.persistence.store
    generation = view.generation
    if store == "None":
        return condition(
            "Persisted",
            False,
            "StoreNone",
            "persistence.store is None: members keep no state",
            generation,
            previous,
        )
    names = [objects.member_name(view, i) for i in range(view.spec.replicas)]
    reports = {n: member_states.get(n) for n in names}
    problems = [(n, r) for n, r in reports.items() if r and r.get("reason")]
    if problems:
        return condition(
            "Persisted",
            False,
            problems[0][1]["reason"],
            "; ".join(f"member {n}: {r.get('message') or r['reason']}" for n, r in problems),
            generation,
            previous,
        )
    missing = [n for n, r in reports.items() if not r or r.get("store") != store]
    if missing:
        return condition(
            "Persisted",
            None,
            "NotReported",
            f"waiting for {len(missing)} of {len(names)} members to report their state",
            generation,
            previous,
        )
    return condition(
        "Persisted",
        True,
        "Saved",
        f"{len(names)} members report their state saved in {store}",
        generation,
        previous,
    )


def comparable(status: Obj) -> Obj:
    """A status without transition times, to decide whether anything changed."""
    out = {k: v for k, v in status.items() if v not in ("", None) and k not in RUNTIME_FIELDS}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime" and v not in ("", None)}
        for c in status.get("conditions") or []
    ]
    out["members"] = [without_empty_strings(m, in_list=True) for m in status.get("members") or []]
    return out


class Supervisor:
    def __init__(self, kube: Kube, workers: int = 8, agent_image: str = "") -> None:
        self.kube = kube
        self.workers = workers
        self.agent_image = agent_image
        self.agents: dict[Key, Obj] = {}
        self.pods: dict[Key, dict[str, Obj]] = {}
        self.memory: dict[Key, AgentMemory] = {}
        self.phases: dict[Key, str] = {}
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- observation (from watch events) --------------------------------------------------

    def observe_agent(self, event: str, body: Obj) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event == "DELETED":
            self.agents.pop(key, None)
        elif older_than(body, self.agents.get(key)):
            # The watch still delivers what came before a write of ours whose answer is cached:
            # taking it would make the next pass repeat that write.
            return
        else:
            self.agents[key] = body
        self.enqueue(key)

    def observe_pod(self, event: str, body: Obj) -> None:
        meta = body["metadata"]
        agent = (meta.get("labels") or {}).get(objects.AGENT_LABEL)
        if not agent:
            return
        key = (meta["namespace"], agent)
        members = self.pods.setdefault(key, {})
        if event == "DELETED":
            members.pop(meta["name"], None)
            memory = self.memory.setdefault(key, AgentMemory())
            uid = meta["uid"]
            if uid in memory.expected_gone:
                memory.expected_gone.discard(uid)
            elif key in self.agents and not self.agents[key]["metadata"].get("deletionTimestamp"):
                memory.pending_restarts.append(
                    Restart(meta["name"], ordinal_of(body), now(), "its pod was deleted")
                )
            memory.restart_baseline.pop(uid, None)
        else:
            members[meta["name"]] = body
        self.enqueue(key)

    def enqueue(self, key: Key) -> None:
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    # -- workers ----------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(), name=f"reconciler-{i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._busy.add(key)
            started = time.monotonic()
            result = "ok"
            try:
                await self.reconcile(key)
            except ApiException as exc:
                if namespace_terminating(exc):
                    # Nothing new may be made there; the namespace's deletion removes the Agent
                    # next, and that event brings it back here to be finalized.
                    logger.debug("%s/%s: namespace terminating", *key, extra=about(key))
                    continue
                result = "api_error"
                metrics.API_ERRORS.labels(code=str(status_of(exc))).inc()
                logger.warning(
                    "reconcile %s/%s: API error %s %s: %s",
                    *key,
                    exc.status,
                    exc.reason,
                    (getattr(exc, "body", None) or "")[:500],
                    extra=about(key),
                )
                await asyncio.sleep(1.0)
                self._again.add(key)
            except Exception:
                result = "error"
                logger.exception("reconcile %s/%s failed", *key, extra=about(key))
                await asyncio.sleep(1.0)
                self._again.add(key)
            finally:
                metrics.RECONCILIATIONS.labels(resource="agent", result=result).inc()
                metrics.RECONCILE_SECONDS.labels(resource="agent").observe(
                    time.monotonic() - started
                )
                self._busy.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.enqueue(key)

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        body = self.agents.get(key)
        if body is None:
            self._record_phase(key, None)
            self.memory.pop(key, None)
            if not self.pods.get(key):
                self.pods.pop(key, None)
            return
        try:
            view = AgentView.from_body(body, self.agent_image)
        except InvalidSpec as exc:
            if body["metadata"].get("deletionTimestamp"):
                # Nothing can be built from this spec, so nothing is released either: let the
                # Agent go; the garbage collector removes what it owns.
                await self._release_finalizer(body)
            else:
                await self._invalid(body, str(exc))
            return
        if view.deleting:
            await self._finalize(view, body)
            return
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
            return
        # The finalizer goes on before any member exists (pods come in _supervise).
        await asyncio.gather(self._ensure_finalizer(view, body), self._ensure_owned(view))
        await self._supervise(view, body)

    async def _ensure_finalizer(self, view: AgentView, body: Obj) -> None:
        finalizers = body["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            answer = await self.kube.patch_agent(
                view.namespace, view.name, {"metadata": {"finalizers": [*finalizers, FINALIZER]}}
            )
            self._cache_ahead(answer)

    async def _warn(self, view: AgentView, reason: str, message: str) -> None:
        """A Warning Event on the Agent. Best effort: losing an Event never stops supervision."""
        moment = stamp(now())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{view.name}.", "namespace": view.namespace},
            "involvedObject": {
                "apiVersion": f"{objects.GROUP}/{objects.VERSION}",
                "kind": objects.KIND,
                "name": view.name,
                "namespace": view.namespace,
                "uid": view.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "foundation-operator"},
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
        }
        try:
            await self.kube.create(event)
        except ApiException as exc:
            logger.warning(
                "could not record event %s on %s: %s",
                reason,
                view.key,
                exc.reason,
                extra=about((view.namespace, view.name)),
            )

    async def _invalid(self, body: Obj, message: str) -> None:
        meta = body["metadata"]
        status = dict(body.get("status") or {})
        previous = status.get("conditions") or []
        generation = int(meta.get("generation", 0))
        new = {
            **status,
            "phase": "Failed",
            "observedGeneration": generation,
            "conditions": [condition("Ready", False, "InvalidSpec", message, generation, previous)],
        }
        await self._write_status(body, new)

    async def _ensure(self, want: Obj, fields: tuple[str, ...] = ()) -> None:
        """Create `want`, or patch the top-level `fields` of what exists where they differ."""
        meta = want["metadata"]
        try:
            await self.kube.create(want)
            return
        except ApiException as exc:
            if status_of(exc) != 409:
                raise
        have = await self.kube.read(want["kind"], meta["namespace"], meta["name"])
        if have is None:
            return  # gone again at once; the next pass creates it
        patch = {f: want[f] for f in fields if have.get(f) != want[f]}
        if patch:
            await self.kube.patch(want["kind"], meta["namespace"], meta["name"], patch)

    async def _ensure_owned(self, view: AgentView) -> None:
        """ServiceAccount, Role, RoleBinding, Service and capability memberships.

        Checked against the API only when their desired form changed since this operator last
        applied it (or after a restart), so the many reconciliations that pod events cause cost
        no reads here.
        """
        memory = self.memory.setdefault((view.namespace, view.name), AgentMemory())
        wanted = [objects.role(view), objects.role_binding(view), objects.agent_service(view)]
        if not view.spec.service_account_name:
            wanted.insert(0, objects.service_account(view))
        fingerprint = json.dumps([wanted, sorted(view.spec.capabilities)], sort_keys=True)
        if memory.owned_applied == fingerprint:
            return
        fields = {"Role": ("rules",), "RoleBinding": ("subjects",)}
        # Independent writes go out together: etcd commits concurrent writes in one fsync, so
        # an Agent costs about one round trip instead of one per object.
        await asyncio.gather(
            *(self._ensure(want, fields.get(want["kind"], ())) for want in wanted),
            *(self._join_capability(view, c) for c in view.spec.capabilities),
        )
        memory.owned_applied = fingerprint

    async def _join_capability(self, view: AgentView, capability: str) -> None:
        """Create the capability Service or add the Agent to its owners.

        Owner lists are patched with the resourceVersion they were read at: two Agents joining
        at once get a conflict, and the loser is retried instead of dropping the other's entry.
        """
        name = objects.capability_service_name(capability)
        mine = objects.owner_reference(view, controller=False)
        try:
            await self.kube.create(objects.capability_service(view.namespace, capability, [mine]))
            return
        except ApiException as exc:
            if status_of(exc) != 409:
                raise
        have = await self.kube.read("Service", view.namespace, name)
        if have is None:
            raise ApiException(status=409, reason=f"Service {name} went away while joining it")
        owners = have["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == view.uid for o in owners):
            await self.kube.patch(
                "Service",
                view.namespace,
                name,
                {
                    "metadata": {
                        "ownerReferences": [*owners, mine],
                        "resourceVersion": have["metadata"]["resourceVersion"],
                    }
                },
            )

    async def _leave_capability(self, view: AgentView, capability: str) -> None:
        """Drop the Agent's owner reference from a capability Service; the last one deletes it."""
        name = objects.capability_service_name(capability)
        have = await self.kube.read("Service", view.namespace, name)
        if have is None:
            return
        owners = [
            o for o in have["metadata"].get("ownerReferences") or [] if o.get("uid") != view.uid
        ]
        if len(owners) == len(have["metadata"].get("ownerReferences") or []):
            return
        version = have["metadata"]["resourceVersion"]
        if owners:
            await self.kube.patch(
                "Service",
                view.namespace,
                name,
                {"metadata": {"ownerReferences": owners, "resourceVersion": version}},
            )
        elif not await self.kube.delete(
            "Service", view.namespace, name, uid=have["metadata"]["uid"], resource_version=version
        ):
            # Someone joined (or it changed) since the read: decide again on the next pass.
            raise ApiException(status=409, reason=f"Service {name} changed while leaving it")

    async def _stop_members(self, view: AgentView, pods: Iterable[Obj]) -> None:
        """Delete these member pods together (graceful); those already going are left be."""
        await asyncio.gather(
            *(
                self._delete_member(view, pod)
                for pod in pods
                if not pod["metadata"].get("deletionTimestamp")
            )
        )

    async def _delete_member(self, view: AgentView, pod: Obj) -> None:
        memory = self.memory.setdefault((view.namespace, view.name), AgentMemory())
        memory.expected_gone.add(pod["metadata"]["uid"])
        await self.kube.delete(
            "Pod", view.namespace, pod["metadata"]["name"], uid=pod["metadata"]["uid"]
        )

    async def _supervise(self, view: AgentView, body: Obj) -> None:
        key = (view.namespace, view.name)
        memory = self.memory.setdefault(key, AgentMemory())
        status = dict(body.get("status") or {})
        sup = view.spec.supervision
        members = dict(self.pods.get(key, {}))
        previous_members = {m["name"]: m for m in status.get("members") or []}

        # Restarts since the last look: container restarts and pods deleted from under us.
        restarts = list(memory.pending_restarts)
        memory.pending_restarts.clear()
        for name, pod in members.items():
            uid, count = pod["metadata"]["uid"], restart_count(pod)
            if uid not in memory.restart_baseline:
                before = previous_members.get(name, {})
                known = before.get("restarts", 0) if before.get("pod") == name else 0
                memory.restart_baseline[uid] = min(known, count)
            delta = count - memory.restart_baseline[uid]
            memory.restart_baseline[uid] = count
            for _ in range(delta):
                restarts.append(Restart(name, ordinal_of(pod), now(), "its container restarted"))

        # A spec change or the restartedAt annotation starts a failed Agent afresh.
        restarted_at = view.annotations.get(objects.RESTARTED_AT, "")
        fresh = (
            status.get("observedGeneration") != view.generation
            or status.get("observedRestartedAt", "") != restarted_at
        )
        failed = (
            status.get("phase") == "Failed"
            and not fresh
            and any(
                c.get("reason") == "RestartIntensityExceeded"
                for c in status.get("conditions") or []
            )
        )
        window = timedelta(seconds=sup.period_seconds)
        recent = (
            []
            if fresh and status.get("phase") == "Failed"
            else [parse_stamp(t) for t in status.get("recentRestarts") or []]
        )
        recent = [t for t in recent + [r.at for r in restarts] if now() - t <= window]
        total = int(status.get("restarts", 0)) + len(restarts)
        if restarts:
            metrics.MEMBER_RESTARTS.inc(len(restarts))

        exhausted_message = ""
        if not failed and len(recent) > sup.max_restarts:
            failed = True
            exhausted_message = exhaustion_message(restarts, members, len(recent), sup)
            metrics.INTENSITY_EXHAUSTED.inc()
            await self._warn(view, "RestartIntensityExceeded", exhausted_message)
            logger.warning(
                "agent %s/%s failed: %s",
                view.namespace,
                view.name,
                exhausted_message,
                extra=about((view.namespace, view.name)),
            )

        if failed:
            if sup.on_exhausted == "Stop":
                await self._stop_members(view, members.values())
            supervised = condition(
                "Supervised",
                False,
                "RestartIntensityExceeded",
                exhausted_message
                or next(
                    (
                        c["message"]
                        for c in status.get("conditions") or []
                        if c.get("type") == "Supervised"
                    ),
                    "",
                ),
                view.generation,
                status.get("conditions") or [],
            )
            await self._write_agent_status(
                view, body, members, "Failed", supervised, recent, total, restarted_at, True
            )
            return

        # OTP strategies: siblings of a failed member restart with it.
        if sup.strategy != "OneForOne":
            await self._stop_members(
                view,
                [
                    pod
                    for pod in members.values()
                    if any(sibling_of(ordinal_of(pod), r.ordinal, sup.strategy) for r in restarts)
                ],
            )

        await self._converge_members(view, members)
        for capability in set(status.get("capabilities") or []) - set(view.spec.capabilities):
            await self._leave_capability(view, capability)
        supervised = condition(
            "Supervised",
            True,
            "WithinIntensity",
            f"{len(recent)} restarts in the last {sup.period_seconds}s (max {sup.max_restarts})",
            view.generation,
            status.get("conditions") or [],
        )
        await self._write_agent_status(
            view, body, members, None, supervised, recent, total, restarted_at, bool(restarts)
        )

    async def _converge_members(self, view: AgentView, members: dict[str, Obj]) -> None:
        want_hash = objects.template_hash(view)
        replicas = view.spec.replicas
        by_ordinal = {ordinal_of(p): p for p in members.values()}
        # Scale down, highest ordinals first.
        for ordinal in sorted((o for o in by_ordinal if o >= replicas or o < 0), reverse=True):
            pod = by_ordinal.pop(ordinal)
            if not pod["metadata"].get("deletionTimestamp"):
                await self._delete_member(view, pod)
        # Missing members (created together); failed pods (evicted) are replaced.
        missing: list[Obj] = []
        for ordinal in range(replicas):
            pod = by_ordinal.get(ordinal)
            if (
                pod is not None
                and pod.get("status", {}).get("phase") in ("Failed", "Succeeded")
                and not pod["metadata"].get("deletionTimestamp")
            ):
                memory = self.memory.setdefault((view.namespace, view.name), AgentMemory())
                memory.pending_restarts.append(
                    Restart(pod["metadata"]["name"], ordinal, now(), "its pod failed")
                )
                await self._delete_member(view, pod)
                continue
            if pod is None:
                missing.append(objects.member_pod(view, ordinal))
        # A member's state object exists before its pod: the runtime loads from it at start.
        await asyncio.gather(*(self._ensure_state(view, ordinal_of(pod)) for pod in missing))
        for created in await asyncio.gather(*(self._create_member(want) for want in missing)):
            if created:
                members[created["metadata"]["name"]] = created
        # Roll out a new template one member at a time, once all the others are ready.
        outdated = [
            p
            for o, p in sorted(by_ordinal.items())
            if o < replicas
            and p["metadata"].get("annotations", {}).get(objects.TEMPLATE_HASH) != want_hash
        ]
        settled = len(by_ordinal) >= replicas and all(
            pod_ready(p) or p in outdated for p in by_ordinal.values()
        )
        if (
            outdated
            and settled
            and not any(p["metadata"].get("deletionTimestamp") for p in by_ordinal.values())
        ):
            await self._delete_member(view, outdated[0])

    async def _ensure_state(self, view: AgentView, ordinal: int) -> None:
        """Create the member's state object, or adopt one kept from an earlier Agent."""
        want = objects.state_object(view, ordinal)
        memory = self.memory.setdefault((view.namespace, view.name), AgentMemory())
        if want is None or (ordinal, want["kind"]) in memory.states_made:
            return
        meta = want["metadata"]
        try:
            await self.kube.create(want)
        except ApiException as exc:
            if status_of(exc) != 409:
                raise
            have = await self.kube.read(want["kind"], view.namespace, meta["name"])
            if have is None:
                raise ApiException(status=409, reason=f"{meta['name']} went away") from None
            owners = have["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == view.uid for o in owners):
                # Kept by persistence.retainOnDelete (or made by hand): this Agent takes it
                # over, state and all; an owner that was another Agent's is replaced.
                await self.kube.patch(
                    want["kind"],
                    view.namespace,
                    meta["name"],
                    {
                        "metadata": {
                            "ownerReferences": [
                                *(o for o in owners if o.get("kind") != objects.KIND),
                                *meta["ownerReferences"],
                            ],
                            "resourceVersion": have["metadata"]["resourceVersion"],
                        }
                    },
                )
        memory.states_made.add((ordinal, want["kind"]))

    async def _release_state(self, view: AgentView) -> None:
        """persistence.retainOnDelete: drop the Agent's owner reference from its members' state
        objects (every ordinal it ever had), so the garbage collector leaves them; an Agent of
        the same name adopts them later."""
        selector = f"{objects.AGENT_LABEL}={view.name}"
        for kind in ("ConfigMap", "PersistentVolumeClaim"):
            for have in await self.kube.list(kind, view.namespace, selector):
                meta = have["metadata"]
                owners = meta.get("ownerReferences") or []
                if any(o.get("uid") == view.uid for o in owners):
                    await self.kube.patch(
                        kind,
                        view.namespace,
                        meta["name"],
                        {
                            "metadata": {
                                "ownerReferences": [o for o in owners if o.get("uid") != view.uid]
                                or None,
                                "resourceVersion": meta["resourceVersion"],
                            }
                        },
                    )
                    logger.info(
                        "kept %s %s/%s of deleted Agent %s (retainOnDelete)",
                        kind,
                        view.namespace,
                        meta["name"],
                        view.name,
                        extra=about((view.namespace, view.name)),
                    )

    async def _create_member(self, want: Obj) -> Obj | None:
        try:
            return await self.kube.create(want)
        except ApiException as exc:
            if status_of(exc) != 409:  # already there: our cache is behind
                raise
            return None

    async def _write_agent_status(
        self,
        view: AgentView,
        body: Obj,
        members: dict[str, Obj],
        phase: str | None,
        supervised: Obj,
        recent: list[datetime],
        total: int,
        restarted_at: str,
        urgent: bool,
    ) -> None:
        status = dict(body.get("status") or {})
        previous = status.get("conditions") or []
        replicas = view.spec.replicas
        member_status = []
        for ordinal in range(replicas):
            name = objects.member_name(view, ordinal)
            pod = members.get(name)
            entry: Obj = {
                "name": name,
                "pod": name if pod else "",
                "ready": bool(pod and pod_ready(pod)),
                "restarts": restart_count(pod) if pod else 0,
            }
            exit_info = last_exit(pod) if pod else None
            if exit_info:
                entry["lastExit"] = exit_info
            member_status.append(entry)
        ready = sum(1 for m in member_status if m["ready"])
        if phase is None:
            # Pending while starting up; Degraded once an Agent that ran has lost a member.
            if ready == replicas:
                phase = "Running"
            elif status.get("phase") in ("Running", "Degraded"):
                phase = "Degraded"
            else:
                phase = "Pending"
        ready_condition = condition(
            "Ready",
            ready == replicas and phase != "Failed",
            "AllMembersReady"
            if ready == replicas and phase != "Failed"
            else ("RestartIntensityExceeded" if phase == "Failed" else "MembersNotReady"),
            f"{ready}/{replicas} members ready",
            view.generation,
            previous,
        )
        persisted = persisted_condition(view, status.get("memberStates") or {}, previous)
        new = {
            **status,
            "phase": phase,
            "ready": f"{ready}/{replicas}",
            "restarts": total,
            "observedGeneration": view.generation,
            "observedRestartedAt": restarted_at,
            "members": member_status,
            "recentRestarts": [stamp(t) for t in recent],
            "capabilities": sorted(view.spec.capabilities),
            "conditions": [ready_condition, supervised, persisted],
        }
        await self._write_status(body, new, urgent=urgent)

    def _record_phase(self, key: Key, phase: str | None) -> None:
        """Keep the agents-by-phase gauge in step with what the supervisor reports."""
        before = self.phases.pop(key, None)
        if phase:
            self.phases[key] = phase
        if before != phase:
            if phase:
                logger.info(
                    "agent %s/%s is %s (was %s)", *key, phase, before or "unseen", extra=about(key)
                )
            for changed in {before, phase} - {None}:
                metrics.AGENTS.labels(phase=changed).set(
                    sum(1 for p in self.phases.values() if p == changed)
                )

    async def _write_status(self, body: Obj, new: Obj, *, urgent: bool = True) -> None:
        """Patch the status if it changed. A non-urgent change (members progressing, nothing
        counted that the next pass could not count again) waits for the status interval."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self._record_phase(key, new.get("phase"))
        old = body.get("status") or {}
        if comparable(new) == comparable(old):
            return
        memory = self.memory.setdefault(key, AgentMemory())
        wait = memory.status_written_at + STATUS_INTERVAL - time.monotonic()
        if not urgent and wait > 0:
            if not memory.flush_scheduled:
                memory.flush_scheduled = True
                asyncio.get_running_loop().call_later(wait, self._flush_status, key)
            return
        mine = {k: v for k, v in new.items() if k not in RUNTIME_FIELDS}
        answer = await self.kube.patch_agent(
            meta["namespace"], meta["name"], {"status": without_empty_strings(mine)}, status=True
        )
        memory.status_written_at = time.monotonic()
        self._cache_ahead(answer)

    def _flush_status(self, key: Key) -> None:
        memory = self.memory.get(key)
        if memory is not None:
            memory.flush_scheduled = False
            self.enqueue(key)

    def _cache_ahead(self, answer: Obj) -> None:
        """Keep the cache ahead of the watch, so the next pass compares with what we wrote."""
        key = (answer["metadata"]["namespace"], answer["metadata"]["name"])
        cached = self.agents.get(key)
        if cached is not None and not older_than(answer, cached):
            self.agents[key] = answer

    async def _finalize(self, view: AgentView, body: Obj) -> None:
        """Stop members gracefully, release shared objects, then let the Agent go."""
        key = (view.namespace, view.name)
        if FINALIZER not in (body["metadata"].get("finalizers") or []):
            return
        members = self.pods.get(key, {})
        status = dict(body.get("status") or {})
        if status.get("phase") != "Terminating":
            await self._write_status(body, {**status, "phase": "Terminating"})
        await self._stop_members(view, list(members.values()))
        if members:
            return  # pod events bring us back when they are gone
        for capability in set(status.get("capabilities") or []) | set(view.spec.capabilities):
            await self._leave_capability(view, capability)
        if view.spec.persistence.retain_on_delete:
            await self._release_state(view)
        await self._release_finalizer(body)

    async def _release_finalizer(self, body: Obj) -> None:
        meta = body["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        finalizers = [f for f in meta["finalizers"] if f != FINALIZER]
        await self.kube.patch_agent(
            meta["namespace"], meta["name"], {"metadata": {"finalizers": finalizers or None}}
        )
