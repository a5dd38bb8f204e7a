"""The Workflow runner (import package ``foundation_runner``): `foundation-runner`, the program
of one Workflow's own pod. The operator makes the pod and never imports this package."""
