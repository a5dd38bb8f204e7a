"""What the operator and the agent image both need, and nothing else (import package
``foundation_common``).

- `resources`: the API group, version and the names of Foundation's kinds.
- `rest`: how the product calls the Kubernetes API (the operator, the member runtime, the
  Workflow runner, the sidecar's discovery): plain REST on httpx, dicts in and out, errors as
  the API server words them, credentials in a pod or from a kubeconfig, the list-then-watch
  loop. No generated models: kubernetes_asyncio's cost each process about 35 MB.
- `kube`: the same on kubernetes_asyncio, for the test node and the benchmarks (the CLI uses
  kubernetes_asyncio too, for its kubeconfig contexts).
- `settings`: configuration from FOUNDATION_* environment variables.
- `retry`: the one back-off helper.
- `discovery`: the ready members behind a Service, from an Endpoints watch, with balancing and
  outlier ejection (the sidecar's calls by capability; the Workflow runner's steps).
- `sidecar`: the sidecar's configuration model (an Agent's `spec.sidecar`).

`foundation_operator` and `foundation_agent` import this package, never each other; a unit test
asserts it. Only `kube` imports kubernetes_asyncio, and no product process imports `kube`.
"""
