"""What the operator and the agent image both need, and nothing else (import package
``foundation_common``).

- `resources`: the API group, version and the names of Foundation's kinds.
- `kube`: the one way to call the Kubernetes API (kubernetes_asyncio, plain dicts, checked
  statuses), the client setup, and the list-then-watch loop.
- `settings`: configuration from FOUNDATION_* environment variables.
- `retry`: the one back-off helper.
- `discovery`: the ready members behind a Service, from an Endpoints watch, with balancing and
  outlier ejection (the sidecar's calls by capability; the Workflow runner's steps).
- `sidecar`: the sidecar's configuration model (an Agent's `spec.sidecar`).

`foundation_operator` and `foundation_agent` import this package, never each other; a unit test
asserts it. Modules here import kubernetes_asyncio only where they call the API, so the
sidecar, which imports `settings` and `sidecar`, does not carry the API client's models.
"""
