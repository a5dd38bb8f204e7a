"""The `foundation` command: tasks for Agents through the API server's proxy (`tasks`), and
its command line (`main`)."""
