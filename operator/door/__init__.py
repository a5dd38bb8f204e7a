"""People's door: the Agents' task API and A2A endpoint behind the API server.

An APIService serves the version `access` of the group `foundation.dev` from the operator's
pods. The API server authenticates a person however their kubeconfig does (client certificates,
tokens, exec plugins), authorizes the request with RBAC on the Agent's subresource (`create
agents/tasks`, `get agents/a2a`, ...), writes it to its audit log, and relays it here as its
front proxy, naming the person in request headers. The door checks that the relay is the API
server's (its client certificate, from the CA the API server publishes), then relays the call
to a ready member with its own token, naming the person; the member believes that only because
RBAC lets the operator `relay` the Agent's tasks, and authorizes the person again.
"""
