"""The kopf handlers: thin. They feed watch events to the controllers (the Agent supervisor and
the Workflow controller) and manage their life.

They register on kopf's default registry, which also holds kopf's login handlers (kubeconfig,
in-cluster): importing this module is what registers them.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import kopf

from foundation_operator import __version__
from foundation_operator.agents import api, objects
from foundation_operator.agents.controller import Supervisor
from foundation_operator.k8s import Kube, connect
from foundation_operator.settings import Settings
from foundation_operator.workflows import api as workflows
from foundation_operator.workflows.controller import WorkflowController
from foundation_operator.workflows.objects import WORKFLOW_LABEL

logger = logging.getLogger(__name__)


class State:
    supervisor: Supervisor | None = None
    workflows: WorkflowController | None = None
    excluded: frozenset[str] = frozenset()


def watched(namespace: str | None, **_: Any) -> bool:
    """kopf's `when` filter: events from excluded namespaces are dropped before any work."""
    return namespace not in State.excluded


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Without the KopfPeering CRDs every replica would be active; until the chart installs
    # them, run standalone rather than warn on every start.
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    # kopf logs every handled watch event at INFO; with thousands of pods that is all noise.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = Settings.from_env()
    State.excluded = frozenset(settings.excluded_namespaces)
    kube = Kube(await connect())
    State.supervisor = Supervisor(kube, workers=settings.workers, agent_image=settings.agent_image)
    State.workflows = WorkflowController(kube, workers=settings.workers, image=settings.agent_image)
    State.supervisor.start()
    State.workflows.start()
    logger.info("foundation operator %s starting", __version__)


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if State.workflows:
        await State.workflows.stop()
    if State.supervisor:
        await State.supervisor.stop()
        await State.supervisor.kube.api.close()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, when=watched)
async def agent_event(event: dict, **_: Any) -> None:
    # kopf reports objects of the initial listing with type None.
    if State.supervisor:
        State.supervisor.observe_agent(
            event.get("type") or "ADDED", copy.deepcopy(dict(event["object"]))
        )


@kopf.on.event("", "v1", "pods", labels={objects.AGENT_LABEL: kopf.PRESENT}, when=watched)
async def pod_event(event: dict, **_: Any) -> None:
    if State.supervisor:
        State.supervisor.observe_pod(
            event.get("type") or "ADDED", copy.deepcopy(dict(event["object"]))
        )


@kopf.on.event(workflows.GROUP, workflows.VERSION, workflows.PLURAL, when=watched)
async def workflow_event(event: dict, **_: Any) -> None:
    if State.workflows:
        State.workflows.observe_workflow(
            event.get("type") or "ADDED", copy.deepcopy(dict(event["object"]))
        )


@kopf.on.event("", "v1", "pods", labels={WORKFLOW_LABEL: kopf.PRESENT}, when=watched)
async def runner_event(event: dict, **_: Any) -> None:
    if State.workflows:
        State.workflows.observe_pod(
            event.get("type") or "ADDED", copy.deepcopy(dict(event["object"]))
        )
