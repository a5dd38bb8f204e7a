"""The Agent resource: its typed view (api), pure builders (objects), reconciliation
(controller) and the kopf handlers (handlers)."""
