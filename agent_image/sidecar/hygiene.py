"""What the sidecar lets through, as pure rules: a path stays under the base it is appended
to, and only end-to-end headers the caller may set go on.

Paths: the agent's path is appended to an upstream's base URL (`/v1/tenant-a`), where an
encoded slash or a dot segment would climb out of it (`..%2F..%2Fadmin` reached `/admin`,
with the upstream's API key). Both are refused, encoded or not, as is an encoded backslash
or percent sign (a second decoding further on would make them slashes again).

Headers: hop-by-hop ones (RFC 9110 7.6.1), those a `Connection` header names, and every
`Forwarded`/`X-Forwarded-*` (the sidecar is no proxy the agent may speak for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import unquote

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REFUSED_ENCODINGS = ("%2f", "%5c", "%25", "\\")


def path_problem(raw: str) -> str | None:
    """Why the raw (still encoded) path may not be appended to a base; None if it may."""
    lowered = raw.lower()
    for encoded in REFUSED_ENCODINGS:
        if encoded in lowered:
            return (
                f"the path holds {encoded!r}: encoded slashes, backslashes and percent signs"
                " are refused (they could reach past the upstream's base path)"
            )
    for segment in raw.split("/"):
        if unquote(segment) in (".", ".."):
            return "the path holds a dot segment ('.' or '..'), which is refused"
    return None


def forwardable(headers: Mapping[str, str], also_drop: Iterable[str] = ()) -> dict[str, str]:
    """The headers to pass on: not hop-by-hop, not named by `Connection`, not forwarding
    information, not in `also_drop` (lower case)."""
    named = set(also_drop)
    connection = headers.get("Connection")
    if connection:
        named.update(token.strip().lower() for token in connection.split(","))
    return {
        k: v
        for k, v in headers.items()
        if (low := k.lower()) not in HOP_BY_HOP
        and low not in named
        and not low.startswith("x-forwarded-")
        and low != "forwarded"
    }
