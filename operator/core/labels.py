"""The labels that mark Foundation's pods, shared by the controllers: a member's Agent, a
runner's Workflow. (NetworkPolicies of one select the pods of the other.)"""

AGENT_LABEL = "foundation.dev/agent"
WORKFLOW_LABEL = "foundation.dev/workflow"
