"""The Workflow resource: a DAG of steps, each a task on an Agent."""
