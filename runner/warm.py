"""What a Workflow's runner imports only when it first calls out (httpx's transport, its async
backend, the IDNA codec, strptime's tables): imported once in the shared runner's forkserver
(foundation_runner.shared.PRELOAD), so a Workflow's process, forked from it, imports nothing.
Measured: without this, each process imported about 75 modules, some 100 ms of CPU."""

from __future__ import annotations

import _strptime  # noqa: F401
import encodings.idna  # noqa: F401
import queue  # noqa: F401
import stringprep  # noqa: F401

import anyio._backends._asyncio
import anyio.streams.memory
import anyio.streams.stapled
import anyio.streams.tls
import anyio.to_thread  # noqa: F401
import certifi  # noqa: F401
import h11  # noqa: F401
import httpcore
import httpcore._async.connection_pool
import httpcore._backends.anyio
import httpcore._backends.auto  # noqa: F401
import sniffio  # noqa: F401

import foundation_runner.main
import foundation_runner.runner  # noqa: F401
