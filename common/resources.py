"""The API group and version of Foundation's custom resources, and their names."""

from __future__ import annotations

GROUP = "foundation.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

AGENT_KIND = "Agent"
AGENT_PLURAL = "agents"
