"""The API group and version of Foundation's custom resources, and their names."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "foundation.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# The ports of an Agent's members, and of its Service: the task API (named http) and the A2A
# server for the whole Agent (named a2a).
AGENT_PORT = 8080
A2A_PORT = 8081
# Prometheus's port on a member: apart from the task API, so a NetworkPolicy can admit the
# scraper there and nowhere else.
AGENT_METRICS_PORT = 8082
# The sidecar in every member pod: its proxy on the pod's loopback (the agent's calls out), its
# admin port (probes, metrics) on the pod's address.
SIDECAR_PORT = 15000
SIDECAR_ADMIN_PORT = 15090
SIDECAR_URL = f"http://127.0.0.1:{SIDECAR_PORT}"
# The key of an MCP tool call's `_meta` that carries its Foundation task id: the same id, the
# same task (served by `foundation mcp`, sent by ChatAgent's MCP tools).
TASK_ID_META = f"{GROUP}/taskId"


@dataclass(frozen=True)
class Resource:
    """A custom resource of Foundation's group and version."""

    kind: str
    plural: str
    group: str = GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def reference(self, namespace: str, name: str, uid: str) -> dict[str, str]:
        """One object of this kind as an Event's involvedObject names it."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        }

    def path(self, namespace: str, name: str = "", subresource: str = "") -> str:
        """The REST path of the collection in `namespace`, of one object, or of its subresource."""
        parts = [f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"]
        parts += [p for p in (name, subresource) if p]
        return "/".join(parts)


def member_name(agent: str, ordinal: int) -> str:
    """An Agent's member pod: its ordinal after the Agent's name."""
    return f"{agent}-{ordinal}"


def state_name(member: str) -> str:
    """A member's state object (ConfigMap or PVC), named after the member."""
    return f"{member}-state"


AGENT = Resource("Agent", "agents")
WORKFLOW = Resource("Workflow", "workflows")
WORKFLOW_TEMPLATE = Resource("WorkflowTemplate", "workflowtemplates")
SCHEDULE = Resource("Schedule", "schedules")
