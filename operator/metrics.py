"""Every metric the operator exports, defined once and named foundation_*."""

from __future__ import annotations

from prometheus_client import Info, start_http_server

from foundation_operator import __version__

BUILD_INFO = Info("foundation_operator_build", "Version of the running Foundation operator.")
BUILD_INFO.info({"version": __version__})


def serve(port: int) -> None:
    """Expose /metrics on a background thread (prometheus-client's own server)."""
    if port:
        start_http_server(port)
