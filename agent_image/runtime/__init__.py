"""The runtime of one member: task inbox, execution, group commit, task API, status reports."""
