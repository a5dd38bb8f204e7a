"""The Workflow resource: its model (`api`, the CRD's single source of truth), references
between steps (`refs`), the DAG's checks (`dag`) and the pure decisions over a run (`plan`).

They live in `foundation_common` because two programs use them: the operator validates
Workflows, makes their runners and reports their progress; the runner carries the plan out.
"""
