"""Foundation's Kubernetes operator (import package ``foundation_operator``).

The folder is named ``operator/`` in the repository but is installed under this name so it
never shadows the standard library's ``operator`` module.
"""
