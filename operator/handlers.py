"""The kopf handlers: thin. They feed watch events of Agents, Workflows and Schedules to the
controllers (the Agent supervisor, the Workflow controller, the Schedule controller) and manage
their life; pods and owned objects come from watches filtered on the server (`core.watches`),
started here.

They register on kopf's default registry, which also holds kopf's login handlers (kubeconfig,
in-cluster); ours comes first (`login`): importing this module is what registers them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

import kopf

from foundation_common import __version__
from foundation_common.resources import AGENT, SCHEDULE, WORKFLOW
from foundation_operator.agents import objects
from foundation_operator.agents.controller import Supervisor
from foundation_operator.core.client import Api, ApiError, Obj, connect, kopf_credentials
from foundation_operator.core.index import slim
from foundation_operator.core.watches import LabelledWatch
from foundation_operator.settings import Settings
from foundation_operator.workflows.controller import WorkflowController
from foundation_operator.workflows.objects import WORKFLOW_LABEL
from foundation_operator.workflows.schedules import ScheduleController
from foundation_operator.workflows.shared import NAME as SHARED_RUNNER

logger = logging.getLogger(__name__)


class State:
    supervisor: Supervisor | None = None
    workflows: WorkflowController | None = None
    schedules: ScheduleController | None = None
    excluded: frozenset[str] = frozenset()
    watches: list[LabelledWatch] = []
    # Set by kopf's cleanup: kopf is stopping, whether asked to or on its own (a watch it
    # takes for fatal, such as a 404 while a restarted API server installs its CRDs).
    stopped: asyncio.Event | None = None


def watched(namespace: str | None, **_: Any) -> bool:
    """kopf's `when` filter: events from excluded namespaces are dropped before any work."""
    return namespace not in State.excluded


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, found as the operator's own client finds them (see
    `core.client.kopf_credentials`: in a pod, the API server's address without cluster DNS)."""
    return kopf_credentials()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's peering is not used (docs/operator.md): leadership is our Lease
    # (`foundation_operator.leadership`), and this process runs only while it holds it.
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    # kopf logs every handled watch event at INFO; with thousands of pods that is all noise.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = Settings.from_env()
    State.excluded = frozenset(settings.excluded_namespaces)
    kube = Api(await connect())
    State.supervisor = Supervisor(
        kube,
        workers=settings.workers,
        agent_image=settings.agent_image,
        caller_auth=settings.caller_auth,
        platform=settings.platform,
        privileged_namespaces=settings.privileged_namespaces,
        callers_from=await callers_from(kube, settings),
        manages=settings.manages,
    )
    State.workflows = WorkflowController(
        kube,
        workers=settings.workers,
        image=settings.agent_image,
        runner_resources=settings.runner_resources,
        platform=settings.platform,
    )
    State.schedules = ScheduleController(kube)
    State.supervisor.start()
    State.workflows.start()
    State.schedules.start()
    State.watches = watches(kube, settings, State.supervisor, State.workflows)
    for watch in State.watches:
        watch.start()
    logger.info("foundation operator %s starting", __version__)


async def callers_from(kube: Api, settings: Settings) -> list[Obj] | None:
    """Who besides Foundation's pods reaches members (each Agent's NetworkPolicy), or None
    with NetworkPolicies off: the peers configured, people's door (the operator's pods), and,
    while members let tokenless calls through (Permissive), the API server's own addresses
    (the `kubernetes` Service's endpoints; its pod proxy), where readable."""
    if not settings.network_policy:
        return None
    peers = [*settings.network_policy_from, *settings.door_from]
    if settings.caller_auth == "Required":
        return peers
    try:
        endpoints = await kube.read("Endpoints", "default", "kubernetes")
    except ApiError as exc:
        endpoints = None
        logger.warning(
            "cannot read the API server's addresses (%s); Agents' NetworkPolicies admit only"
            " the peers of networkPolicyFrom besides Foundation's pods",
            exc.reason,
        )
    for subset in (endpoints or {}).get("subsets") or []:
        for address in subset.get("addresses") or []:
            ip = address["ip"]
            peers.append({"ipBlock": {"cidr": f"{ip}/{128 if ':' in ip else 32}"}})
    return peers


def watches(
    kube: Api, settings: Settings, supervisor: Supervisor, workflows: WorkflowController
) -> list[LabelledWatch]:
    """Pods and owned objects, filtered on the server by their labels (kopf would watch every
    pod of the cluster and filter on the client): member pods, runner pods, and what Agents
    own, whose changes by anyone else are repaired (Supervisor.observe_owned)."""

    def unless_excluded(observe: Callable[[str, Obj], None]) -> Callable[[str, Obj], None]:
        def observed(event: str, body: Obj) -> None:
            if body["metadata"]["namespace"] not in State.excluded:
                observe(event, body)

        return observed

    namespaces = tuple(settings.namespaces)
    managed = "app.kubernetes.io/managed-by=foundation-operator"
    specs = [
        ("Pod", objects.AGENT_LABEL, supervisor.observe_pod),
        ("Pod", objects.SPARE_LABEL, supervisor.observe_spare),
        ("Pod", WORKFLOW_LABEL, workflows.observe_pod),
        ("Deployment", f"app.kubernetes.io/name={SHARED_RUNNER}", workflows.observe_shared_runner),
        *((kind, managed, supervisor.observe_owned) for kind in OWNED_KINDS),
    ]
    return [
        LabelledWatch(kube.api, kind, selector, namespaces, unless_excluded(observe))
        for kind, selector, observe in specs
    ]


OWNED_KINDS = ("Service", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy")


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if State.stopped is not None:
        State.stopped.set()
    for watch in State.watches:
        await watch.stop()
    if State.schedules:
        await State.schedules.stop()
    if State.workflows:
        await State.workflows.stop()
    if State.supervisor:
        await State.supervisor.stop()
        await State.supervisor.kube.api.close()


@kopf.on.event(AGENT.group, AGENT.version, AGENT.plural, when=watched)
async def agent_event(event: dict, **_: Any) -> None:
    # kopf reports objects of the initial listing with type None.
    if State.supervisor:
        State.supervisor.observe_agent(
            event.get("type") or "ADDED", copy.deepcopy(slim(dict(event["object"])))
        )


@kopf.on.event(WORKFLOW.group, WORKFLOW.version, WORKFLOW.plural, when=watched)
async def workflow_event(event: dict, **_: Any) -> None:
    if State.workflows:
        State.workflows.observe_workflow(
            event.get("type") or "ADDED", copy.deepcopy(slim(dict(event["object"])))
        )


@kopf.on.event(SCHEDULE.group, SCHEDULE.version, SCHEDULE.plural, when=watched)
async def schedule_event(event: dict, **_: Any) -> None:
    if State.schedules:
        State.schedules.observe_schedule(
            event.get("type") or "ADDED", copy.deepcopy(slim(dict(event["object"])))
        )
