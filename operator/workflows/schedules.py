"""The Schedule controller: at each time of a Schedule, the Workflow for that time.

It observes Schedules (kopf's watch, like the other kinds), and on each pass lists the
Schedule's Workflows (by label), asks `schedule.decide` what to do, carries it out, and asks to
be called again at the next time. Exactly one Workflow per time: its name is the Schedule's and
the minute's, so a create after any crash or hand-over (the new leader's first pass) finds it
made (409) and goes on; the status's lastScheduleTime is written only after. Only the leader
runs it, as every controller here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from foundation_common import events
from foundation_common.resources import SCHEDULE, WORKFLOW
from foundation_common.status import condition, now, parse_stamp, stamp
from foundation_common.workflows.api import WorkflowStatus
from foundation_operator.core import metrics
from foundation_operator.core.client import Api, ApiError, Obj
from foundation_operator.core.index import Index, Key
from foundation_operator.core.owned import owner_reference
from foundation_operator.core.reconciler import Reconciler
from foundation_operator.workflows import schedule
from foundation_operator.workflows.schedule import SCHEDULE_LABEL, SCHEDULED_AT, Made, ScheduleSpec

logger = logging.getLogger(__name__)


def made_of(workflow: Obj) -> Made | None:
    """One of the Schedule's Workflows: its name, time and phase."""
    meta = workflow["metadata"]
    at = (meta.get("annotations") or {}).get(SCHEDULED_AT)
    if not at:
        return None
    try:
        phase = WorkflowStatus.model_validate(workflow.get("status") or {}).phase
    except ValidationError:
        phase = ""
    return Made(meta["name"], parse_stamp(at), phase)


def workflow_for(body: Obj, spec: ScheduleSpec, at: datetime) -> Obj:
    """The Workflow of time `at`: owned by its Schedule, labelled and annotated with both."""
    meta = body["metadata"]
    made = spec.workflow
    return {
        "apiVersion": WORKFLOW.api_version,
        "kind": WORKFLOW.kind,
        "metadata": {
            "name": schedule.workflow_name(meta["name"], at),
            "namespace": meta["namespace"],
            "labels": {**made.labels, SCHEDULE_LABEL: meta["name"]},
            "annotations": {**made.annotations, SCHEDULED_AT: stamp(at)},
            "ownerReferences": [
                owner_reference(
                    SCHEDULE.api_version, SCHEDULE.kind, meta["name"], meta["uid"], True
                )
            ],
        },
        "spec": made.spec.model_dump(by_alias=True, exclude_none=True, exclude_unset=True),
    }


class ScheduleController(Reconciler):
    resource = "schedule"

    def __init__(self, kube: Api, workers: int = 2) -> None:
        super().__init__(workers)
        self.kube = kube
        self.schedules = Index()

    def observe_schedule(self, event: str, body: Obj) -> None:
        key = self.schedules.observe(event, body)
        if key is not None:
            self.queue.add(key)

    async def reconcile(self, key: Key) -> float | None:
        body = self.schedules.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.queue.discard(key)
            return None  # its Workflows go with it (they are owned)
        namespace, name = key
        meta = body["metadata"]
        generation = int(meta.get("generation", 0))
        raw = body.get("status") or {}
        try:
            spec = ScheduleSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problem = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            await self._status(body, {}, generation, problem)
            return None
        listed = await self.kube.list("Workflow", namespace, f"{SCHEDULE_LABEL}={name}")
        made = [m for m in (made_of(w) for w in listed) if m is not None]
        at = now()
        since = parse_stamp(raw.get("lastScheduleTime") or meta["creationTimestamp"])
        decided = schedule.decide(name, spec, since, made, at)
        if decided.problem:
            await self._status(body, {}, generation, decided.problem)
            return None
        for gone in decided.delete:
            await self.kube.delete_custom(WORKFLOW, namespace, gone)
        fields: dict[str, Any] = {}
        if decided.create is not None:
            created = workflow_for(body, spec, decided.create)
            try:
                await self.kube.create(created)
                metrics.SCHEDULED.labels(outcome="created").inc()
                await self._event(body, "Created", f"Workflow {created['metadata']['name']}")
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # Made already (by this leader before a crash, or the one before it).
            fields["lastWorkflow"] = created["metadata"]["name"]
        if decided.skipped:
            metrics.SCHEDULED.labels(outcome="skipped").inc()
            await self._event(body, "Skipped", decided.skipped, "Warning")
        if decided.taken is not None:
            fields["lastScheduleTime"] = stamp(decided.taken)
        fields["nextScheduleTime"] = stamp(decided.next_at) if decided.next_at else None
        gone = set(decided.delete)
        fields["active"] = sorted(
            m.name for m in made if m.phase not in ("Succeeded", "Failed") and m.name not in gone
        )
        if decided.create is not None and fields.get("lastWorkflow") not in fields["active"]:
            fields["active"] = sorted([*fields["active"], fields["lastWorkflow"]])
        await self._status(body, fields, generation, "")
        return schedule.requeue_seconds(decided, now())

    async def _status(
        self, body: Obj, fields: dict[str, Any], generation: int, problem: str
    ) -> None:
        """The status with `fields` and the Ready condition (False naming the problem);
        nothing written when nothing changed (no write per pass)."""
        raw = body.get("status") or {}
        conditions_before = [c for c in raw.get("conditions") or [] if isinstance(c, dict)]
        ready = condition(
            "Ready",
            not problem,
            "InvalidSpec" if problem else "Scheduled",
            problem or "creating Workflows on schedule",
            generation,
            [],
            now(),
        ).model_dump(by_alias=True, exclude_none=True)
        before = next((c for c in conditions_before if c.get("type") == "Ready"), None)
        if before and all(before.get(k) == ready.get(k) for k in ("status", "reason", "message")):
            ready["lastTransitionTime"] = before.get("lastTransitionTime")
        wanted = {**fields, "observedGeneration": generation, "conditions": [ready]}
        if all(raw.get(k) == v for k, v in wanted.items()):
            return
        meta = body["metadata"]
        answer = await self.kube.patch_custom(
            SCHEDULE, meta["namespace"], meta["name"], {"status": wanted}, status=True
        )
        self.schedules.ahead(answer)
        if problem and not (before and before.get("message") == problem):
            await self._event(body, "InvalidSpec", problem, "Warning")

    async def _event(self, body: Obj, reason: str, message: str, kind: str = "Normal") -> None:
        meta = body["metadata"]
        await events.record(
            self.kube.create,
            SCHEDULE.reference(meta["namespace"], meta["name"], meta["uid"]),
            reason,
            message,
            kind,
        )
