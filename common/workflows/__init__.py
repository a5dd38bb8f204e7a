"""The Workflow resource: its model (`api`, the CRD's single source of truth), references
between steps (`refs`) and the pure decisions over a run (`plan`).

They live in `foundation_common` because two programs use them: the operator validates
Workflows, makes their runners and reports their progress; the runner carries the plan out.
The DAG's checks, which only the operator makes, are `foundation_operator.workflows.dag`.
"""
