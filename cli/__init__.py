"""The `foundation` command (import package ``foundation_cli``), run on a user's machine with
their kubeconfig: tasks for Agents through the API server's proxy (`tasks`), Agents as MCP
tools (`agent_tools`), and its command line (`main`). It imports only `foundation_common`."""
