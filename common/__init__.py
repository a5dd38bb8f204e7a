"""What two or more of Foundation's programs use, and nothing else (import package
``foundation_common``). The programs are the operator (`foundation_operator`), the Workflow
runner (`foundation_runner`), the CLI (`foundation_cli`) and the agent image
(`foundation_agent`); each imports this package and never another of them
(`tests/unit/test_package_boundaries.py`).

- `resources`: the API group and version, the names of Foundation's kinds, the Agent's ports.
- `rest`: how the product calls the Kubernetes API (operator, member runtime, runner, the
  sidecar's discovery, the CLI): plain REST on aiohttp, dicts in and out, errors as the API
  server words them, credentials in a pod or from a kubeconfig, the list-then-watch loop. No
  generated models: kubernetes_asyncio's cost each process about 35 MB.
- `retry`: the one back-off, and the one retry loop over it.
- `settings`: configuration from FOUNDATION_* environment variables.
- `aio`: background tasks of long-lived objects, stopped the one way.
- `status`: conditions and timestamps, as the operator and the runner write them.
- `events`: Kubernetes Events (the operator's and the runner's).
- `schema`: pydantic pieces the Agent's and the Workflow's models share.
- `tasks`: a task record's states, as the runtime, the runner, the CLI and agents' clients
  read them.
- `discovery`: the ready members behind a Service, from an EndpointSlice watch, with balancing
  and outlier ejection (the sidecar's calls by capability; the runner's steps; the CLI).
- `sidecar`: the sidecar's configuration model (an Agent's `spec.sidecar`).
- `workflows`: the Workflow resource's model, its references, and `plan`, the pure decisions
  the runner carries out and the operator reports.
"""

__version__ = "0.1.0"
