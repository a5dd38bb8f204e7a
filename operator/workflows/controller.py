"""The Workflow controller: a runner pod per Workflow, and nothing between its steps.

It validates the spec (a bad one is Failed with reason InvalidSpec and gets no runner), gives
the Workflow its runner's identity and pod (made again if deleted), fails a Workflow whose
runner crash-loops, and deletes a finished one after `ttlSecondsAfterFinished`. The runner
writes the progress; this controller writes the status only where the runner cannot: before it
exists, and when it cannot run. Owned objects go with the Workflow (garbage collection).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from foundation_common import events
from foundation_common.status import condition, now, parse_stamp, stamp
from foundation_common.workflows import report, templates, transitions
from foundation_common.workflows.api import CREATOR, WORKFLOW, TemplateSpec, WorkflowStatus
from foundation_operator.core import defaults, metrics, owned
from foundation_operator.core.client import Api, Obj
from foundation_operator.core.index import Index, Key, OwnedIndex
from foundation_operator.core.reconciler import Reconciler
from foundation_operator.workflows import objects, shared
from foundation_operator.workflows.objects import InvalidWorkflow, WorkflowView

logger = logging.getLogger(__name__)
# A runner restarted this many times fails its Workflow (its own work is small: restarts mean it
# cannot run, and every restart re-sends its in-flight attempts).
MAX_RUNNER_RESTARTS = 5
FINISHED = ("Succeeded", "Failed")


def parse_status(raw: Obj | None) -> WorkflowStatus:
    try:
        return WorkflowStatus.model_validate(raw or {})
    except ValidationError:
        return WorkflowStatus()


def runner_restarts(pod: Obj) -> int:
    return sum(
        s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses") or []
    )


def waiting_since(body: Obj) -> list[datetime]:
    """When each of a Workflow's approval steps now waiting began to."""
    return [
        parse_stamp(step["startedAt"])
        for step in (body.get("status") or {}).get("steps") or []
        if step.get("reason") == transitions.WAITING and step.get("startedAt")
    ]


class WorkflowController(Reconciler):
    resource = "workflow"

    def __init__(
        self,
        kube: Api,
        workers: int = 8,
        image: str = "",
        runner_resources: dict[str, Any] | None = None,
        platform: defaults.Platform | None = None,
    ) -> None:
        super().__init__(workers)
        self.kube = kube
        self.image = image
        self.runner_resources = runner_resources
        self.platform = platform or defaults.Platform()
        self.workflows = Index()
        self.runners = OwnedIndex(objects.WORKFLOW_LABEL)
        self.owned_applied: dict[Key, str] = {}
        self.phases: dict[Key, str] = {}
        self.shared_made: set[str] = set()  # namespaces whose shared runner is made
        metrics.WORKFLOW_STALLED.set_function(self.stalled_seconds)
        metrics.WAITING_APPROVALS.set_function(lambda: len(self.waiting_approvals()))
        metrics.APPROVAL_WAIT.set_function(
            lambda: (
                max((now() - since).total_seconds() for since in self.waiting_approvals())
                if self.waiting_approvals()
                else 0.0
            )
        )

    def observe_workflow(self, event: str, body: Obj) -> None:
        before = self.workflows.get((body["metadata"]["namespace"], body["metadata"]["name"]))
        key = self.workflows.observe(event, body)
        if key is None:
            return
        self._account(key, before, None if event == "DELETED" else body)
        self.queue.add(key)

    def observe_shared_runner(self, event: str, body: Obj) -> None:
        """The namespace's shared runner's Deployment went (deleted by someone, or with its
        namespace): made again, at once if a shared Workflow there is unfinished (its runner
        gone, it would wait for a new shared Workflow to bring it back)."""
        if event != "DELETED":
            return
        namespace = body["metadata"]["namespace"]
        self.shared_made.discard(namespace)
        for key, workflow in self.workflows.objects.items():
            phase = (workflow.get("status") or {}).get("phase")
            shared = ((workflow.get("spec") or {}).get("runner") or {}).get("shared")
            if key[0] == namespace and shared and phase not in FINISHED:
                self.queue.add(key)

    def observe_pod(self, event: str, body: Obj) -> None:
        owner = self.runners.owner_of(body)
        before = self.runners.of(owner).get(body["metadata"]["name"]) if owner else None
        key = self.runners.observe(event, body)
        if key is None:
            return
        if before is not None and before["metadata"]["uid"] == body["metadata"]["uid"]:
            restarted = runner_restarts(body) - runner_restarts(before)
            if restarted > 0:
                metrics.RUNNER_RESTARTS.inc(restarted)
        self.queue.add(key)

    # -- metrics, from what the runners write ---------------------------------------------------

    def _account(self, key: Key, before: Obj | None, after: Obj | None) -> None:
        phase = ((after or {}).get("status") or {}).get("phase") or ("Pending" if after else None)
        was = self.phases.pop(key, None)
        if phase:
            self.phases[key] = phase
        if was != phase:
            for changed in {was, phase} - {None}:
                metrics.WORKFLOWS.labels(phase=changed).set(
                    sum(1 for p in self.phases.values() if p == changed)
                )
        if before is None or after is None:
            return  # first sight (a start, or a relist): what finished before is not counted
        if phase in FINISHED and was not in FINISHED:
            metrics.WORKFLOWS_FINISHED.labels(phase=phase).inc()
        for _, outcome, seconds, dispatch in report.newly_finished(
            before.get("status"), after.get("status") or {}
        ):
            metrics.WORKFLOW_STEPS.labels(outcome=outcome).inc()
            if seconds is not None and outcome == "Succeeded":
                metrics.WORKFLOW_STEP_SECONDS.observe(seconds)
            if dispatch is not None:
                metrics.WORKFLOW_DISPATCH_SECONDS.observe(dispatch)
        for _, outcome, _, _ in report.newly_finished(
            before.get("status"), after.get("status") or {}, "items"
        ):
            metrics.WORKFLOW_ITEMS.labels(outcome=outcome).inc()

    def waiting_approvals(self) -> list[datetime]:
        """When each approval step now waiting began to, across the Workflows known."""
        return [
            since
            for key, phase in list(self.phases.items())
            if phase in ("Running", "Suspended") and (body := self.workflows.get(key))
            for since in waiting_since(body)
        ]

    def stalled_seconds(self) -> float:
        """For the stalled gauge, at scrape time: the longest a Running Workflow has gone
        without a step starting or finishing."""
        at, worst = now(), 0.0
        for key, phase in list(self.phases.items()):
            body = self.workflows.get(key)
            if phase != "Running" or body is None or waiting_since(body):
                continue  # a person, not a member, is awaited: the approval gauges say so
            last = report.last_progress(body.get("status") or {})
            if last is not None:
                worst = max(worst, (at - last).total_seconds())
        return worst

    async def reconcile(self, key: Key) -> float | None:
        body = self.workflows.get(key)
        if body is None:
            self.trimmer.forgotten()
            self.owned_applied.pop(key, None)
            self.queue.discard(key)
            self.runners.prune(key)
            return None
        if body["metadata"].get("deletionTimestamp"):
            return None  # what it owns goes with it
        status = parse_status(body.get("status"))
        generation = int(body["metadata"].get("generation", 0))
        template = ((body.get("spec") or {}).get("template") or {}).get("name")
        if template and status.template is None and status.phase not in FINISHED:
            # Read once, when it starts: kept in its status, the template it runs.
            problem = await self._take_template(body, template)
            if problem:
                await self._fail(body, status, generation, "InvalidSpec", problem)
            return None  # the status patch brings it back
        try:
            view = WorkflowView.from_body(body, self.image, self.runner_resources, self.platform)
        except InvalidWorkflow as exc:
            if status.phase not in FINISHED:
                await self._fail(body, status, generation, "InvalidSpec", str(exc))
            return None
        if status.phase in FINISHED:
            return await self._expire(view, status)
        if view.spec.runner.shared:
            # The namespace's shared runner takes it (foundation_runner.shared): no pod and no
            # account of its own; the runner there restarts its process, and fails it after
            # as many restarts as a runner pod's.
            await self._ensure_shared(view.namespace)
            if status.phase == "Pending" and not status.progress:
                await self._pending(body, view, generation)
            return None
        runner = self.runners.of(key).get(view.runner_name)
        if runner is not None and runner_restarts(runner) >= MAX_RUNNER_RESTARTS:
            await self._fail(
                body,
                status,
                generation,
                "RunnerCrashLoop",
                f"the runner pod {view.runner_name} restarted {runner_restarts(runner)} times "
                f"(at most {MAX_RUNNER_RESTARTS - 1}); see kubectl logs {view.runner_name} "
                f"-n {view.namespace} --previous",
            )
            await self.kube.delete(
                "Pod", view.namespace, view.runner_name, uid=runner["metadata"]["uid"]
            )
            return None
        await self._ensure_identity(view)
        if runner is None:
            if status.phase == "Pending" and not status.progress:
                await self._pending(body, view, generation)
            created = await owned.create_if_missing(self.kube, objects.runner_pod(view))
            if created is not None:
                self.runners.observe("ADDED", created)
        elif runner.get("status", {}).get("phase") == "Failed" and not runner["metadata"].get(
            "deletionTimestamp"
        ):
            # Evicted or killed for good: a new runner goes on from the status.
            await self.kube.delete(
                "Pod", view.namespace, view.runner_name, uid=runner["metadata"]["uid"]
            )
        return None

    async def _pending(self, body: Obj, view: WorkflowView, generation: int) -> None:
        # Who created it, kept where only Foundation writes (an editor may change the
        # annotation later, never the status).
        creator = (body["metadata"].get("annotations") or {}).get(CREATOR, "")
        await self._patch_status(
            body,
            {
                "phase": "Pending",
                "progress": f"0/{len(view.spec.steps)}",
                "observedGeneration": generation,
                **({"createdBy": creator} if creator else {}),
            },
        )

    async def _ensure_shared(self, namespace: str) -> None:
        """The namespace's shared runner, made once (writes only the first time)."""
        if namespace in self.shared_made:
            return
        account, role, binding, deployment = shared.objects(namespace, self.image, self.platform)
        await asyncio.gather(
            owned.ensure(self.kube, account), owned.ensure(self.kube, role, ("rules",))
        )
        await owned.ensure(self.kube, binding, ("subjects",))
        await owned.create_if_missing(self.kube, deployment)
        self.shared_made.add(namespace)
        logger.info("workflow runner shared in namespace %s: ready to take Workflows", namespace)

    async def _ensure_identity(self, view: WorkflowView) -> None:
        key = (view.namespace, view.name)
        wanted = [objects.service_account(view), objects.role(view), objects.role_binding(view)]
        fingerprint = json.dumps(wanted, sort_keys=True)
        if self.owned_applied.get(key) == fingerprint:
            return
        fields = {"Role": ("rules",), "RoleBinding": ("subjects",)}
        account, role, binding = wanted
        # The binding after its Role: without the Role, the API server cannot check that the
        # operator holds what it binds (only a cluster-admin skips that check).
        await asyncio.gather(
            owned.ensure(self.kube, account), owned.ensure(self.kube, role, fields["Role"])
        )
        await owned.ensure(self.kube, binding, fields["RoleBinding"])
        self.owned_applied[key] = fingerprint

    async def _expire(self, view: WorkflowView, status: WorkflowStatus) -> float | None:
        """ttlSecondsAfterFinished: the seconds left, or the Workflow deleted."""
        ttl = view.spec.ttl_seconds_after_finished
        if ttl is None or not status.finished_at:
            return None
        due = parse_stamp(status.finished_at) + timedelta(seconds=ttl)
        left = (due - now()).total_seconds()
        if left > 0:
            return left
        logger.info(
            "workflow %s/%s: deleted %ss after it finished (ttlSecondsAfterFinished)",
            view.namespace,
            view.name,
            ttl,
            extra=self.log_fields((view.namespace, view.name)),
        )
        await self.kube.delete_custom(WORKFLOW, view.namespace, view.name, uid=view.uid)
        return None

    async def _take_template(self, body: Obj, name: str) -> str | None:
        """Keep the WorkflowTemplate `name` in the Workflow's status, if the Workflow's
        arguments fit it; else what is wrong, naming the argument."""
        namespace = body["metadata"]["namespace"]
        found = await self.kube.read("WorkflowTemplate", namespace, name)
        if found is None:
            return f"spec.template.name: no WorkflowTemplate {name} in namespace {namespace}"
        kept = templates.used(found)
        if isinstance(kept, str):
            return kept
        arguments = ((body.get("spec") or {}).get("template") or {}).get("arguments") or {}
        wrong = templates.problems(name, TemplateSpec.model_validate(kept.spec), arguments)
        if wrong:
            return "; ".join(wrong)
        await self._patch_status(
            body, {"template": kept.model_dump(by_alias=True, exclude_none=True)}
        )
        return None

    async def _fail(
        self, body: Obj, status: WorkflowStatus, generation: int, reason: str, message: str
    ) -> None:
        at = now()
        verdict = condition("Succeeded", False, reason, message, generation, status.conditions, at)
        if status.phase == "Failed" and any(
            c.type == "Succeeded" and c.reason == reason and c.message == message
            for c in status.conditions
        ):
            return
        meta = body["metadata"]
        logger.warning(
            "workflow %s/%s failed: %s: %s",
            meta["namespace"],
            meta["name"],
            reason,
            message,
            extra=self.log_fields((meta["namespace"], meta["name"])),
        )
        await self._patch_status(
            body,
            {
                "phase": "Failed",
                "observedGeneration": generation,
                "conditions": [verdict.model_dump(by_alias=True, exclude_none=True)],
                "finishedAt": stamp(at),
            },
        )
        await events.record(
            self.kube.create,
            WORKFLOW.reference(meta["namespace"], meta["name"], meta["uid"]),
            reason,
            message,
            log_fields=self.log_fields((meta["namespace"], meta["name"])),
        )

    async def _patch_status(self, body: Obj, fields: dict[str, Any]) -> None:
        """Only these fields: the runner writes the rest (steps, output), never overwritten."""
        meta = body["metadata"]
        answer = await self.kube.patch_custom(
            WORKFLOW, meta["namespace"], meta["name"], {"status": fields}, status=True
        )
        self.workflows.ahead(answer)
