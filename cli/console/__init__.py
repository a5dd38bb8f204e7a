"""`foundation console`: the web console (server.py) and its page (static/)."""
