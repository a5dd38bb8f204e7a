"""The reconciler core: what every Foundation resource's controller is made of.

- `queue`: a work queue with one worker per key, deduplication, per-key exponential back-off
  and requeue-after (client-go's rate-limited work queue, for asyncio).
- `reconciler`: workers that take keys from the queue and call a resource's `reconcile`,
  with errors, back-off and metrics handled once.
- `index`: the objects the watches delivered, newest first (stale events after own writes
  dropped), and owned objects grouped by their owner.
- `status`: status written only when it changed, progress-only changes at a bounded rate.
- `owned`: owner references, create-or-adopt, and owner lists edited under a precondition.
- `events`: Kubernetes Events on the object a controller is about.
- `finalizers`: adding and releasing a controller's finalizer.

A resource (`agents/`, later `workflows/`) adds a typed view, pure builders, a pure plan and
the apply step on top.
"""
