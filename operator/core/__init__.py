"""The reconciler core: what every Foundation resource's controller is made of.

- `queue`: a work queue with one worker per key, deduplication, per-key exponential back-off
  and requeue-after (client-go's rate-limited work queue, for asyncio).
- `reconciler`: workers that take keys from the queue and call a resource's `reconcile`,
  with errors, back-off and metrics handled once.
- `index`: the objects the watches delivered, newest first (stale events after own writes
  dropped), and owned objects grouped by their owner.
- `status`: status written only when it changed, progress-only changes at a bounded rate.
- `owned`: owner references, create-or-adopt, and owner lists edited under a precondition.
- `finalizers`: adding and releasing a controller's finalizer.
- `client`: the operator's API calls (the kinds it manages, every request counted).
- `metrics`: the operator's Prometheus metrics, defined once.
- `watches`: list-then-watch of core kinds, filtered on the server by label.
- `rbac`: the operator's own permissions, and the discovery rule it grants.
- `security`: the restricted Pod Security Standard, for every pod the operator makes.
- `trim`: memory handed back once many objects are gone.

`core` imports nothing else of the operator. A resource (`agents/`, `workflows/`) adds a typed
view, pure builders, a pure plan and the apply step on top; Events, conditions and timestamps
come from `foundation_common` (the runner writes them too).
"""
