"""Traces, with OpenTelemetry's official SDK: one setup for every Foundation process (member,
sidecar, runner, operator's door, CLI), W3C trace context in and out, and Foundation's own
attributes beside the GenAI conventions' (`gen_ai.*`).

- On only where an OTLP endpoint is set, by the standard variables
  (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and their friends:
  headers, timeout, protocol http/protobuf); `OTEL_SDK_DISABLED=true` or
  `OTEL_TRACES_EXPORTER=none` keep it off. Off, nothing of the SDK is imported and every
  call site checks `enabled()` first: no span, no context, no allocation per call.
- Context travels as the `traceparent` and `tracestate` headers. A member keeps the context
  a task was sent with in its record (`trace`), so the task's runs, a run after a crash
  included, belong to the caller's trace, and its record shows the trace id.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
HEADERS = (TRACEPARENT, TRACESTATE)
# version 00: trace id, parent span id, flags (W3C Trace Context, level 1)
PARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
MAX_STATE = 512  # characters of a tracestate kept (the spec lets vendors cut it)
SCHEDULE_DELAY_MS = 1000  # how often ended spans are sent

# Foundation's attributes (the GenAI conventions' own are written out where used).
AGENT, MEMBER, NAMESPACE = "foundation.agent", "foundation.member", "foundation.namespace"
TASK_ID, ACTION, ATTEMPT = "foundation.task.id", "foundation.task.action", "foundation.task.attempt"
WORKFLOW, STEP = "foundation.workflow", "foundation.step"

# The trace context a request came with (its headers), for what it leads to further in: set by
# the server that took the request, read where a task is stored or a call is passed on.
INCOMING: ContextVar[dict[str, str] | None] = ContextVar("foundation_trace_incoming", default=None)

_provider: Any = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OpenTelemetry variables ask for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def enabled() -> bool:
    return _provider is not None


def setup(service: str, exporter: Any = None, **attributes: str) -> bool:
    """Export spans of this process (named `service`, with resource `attributes`) over OTLP
    if the environment asks for it (or to `exporter`, at once: the tests'); a second call
    does nothing. Whether it is on."""
    global _provider
    if _provider is not None or not (exporter is not None or wanted()):
        return _provider is not None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), as the SDK reads them.
    provider = TracerProvider(resource=Resource.create({"service.name": service, **attributes}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Sent every second (the SDK's default is 5): a process killed loses at most the spans
        # it ended in its last second. OTEL_BSP_SCHEDULE_DELAY still decides where it is set.
        delay = int(os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or SCHEDULE_DELAY_MS)
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=delay)
        )
    _provider = provider
    return True


def shutdown() -> None:
    """Export what is left (at a process's end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def flush(timeout_ms: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def tracer() -> Tracer:
    """Foundation's tracer, from this module's provider (never the global one, which a
    process may set only once)."""
    assert _provider is not None
    return _provider.get_tracer("foundation")  # type: ignore[no-any-return]


def carried(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context in `headers` (any case), if it has a valid traceparent."""
    parent = headers.get(TRACEPARENT) or headers.get("Traceparent")
    if not parent or not PARENT.fullmatch(parent.strip()):
        return None
    kept = {TRACEPARENT: parent.strip()}
    state = headers.get(TRACESTATE) or headers.get("Tracestate")
    if state:
        kept[TRACESTATE] = state[:MAX_STATE]
    return kept


def rooted(key: str) -> dict[str, str]:
    """A context of its own for `key` (a Workflow's uid): the same trace id and parent span id
    from every process that derives it, so every runner of a Workflow, a restarted one too,
    adds its spans to one trace, with nothing written anywhere to share it."""
    digest = hashlib.blake2b(key.encode(), digest_size=24).hexdigest()
    return {TRACEPARENT: f"00-{digest[:32]}-{digest[32:]}-01"}


def sampled(context: Mapping[str, str]) -> bool:
    """Whether a kept context's trace is sampled (its flags' lowest bit)."""
    return int(context.get(TRACEPARENT, "00")[-2:], 16) & 1 == 1


def trace_id(context: Mapping[str, str] | None) -> str | None:
    """The trace id of a kept context (`{"traceparent": ...}`), if any."""
    if not context:
        return None
    found = PARENT.fullmatch(context.get(TRACEPARENT, ""))
    return found[1] if found else None


def parent(context: Mapping[str, str] | None) -> Context | None:
    """An OpenTelemetry context whose parent is the kept `context` (None: a new trace)."""
    if not context:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(dict(context))


def current() -> dict[str, str]:
    """The current span's context as headers, to send along with a call."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    return headers


def headers() -> dict[str, str]:
    """The trace headers a call made now should carry: the current span's when tracing is on
    and a span is current, else the context this request came with (passed on as it was),
    else none."""
    if enabled():
        made = current()
        if made:
            return made
    return dict(INCOMING.get() or {})


def failed(opened: Span, message: str) -> None:
    """Mark a span as an error without an exception (a task that failed, a call refused)."""
    from opentelemetry.trace import Status, StatusCode

    opened.set_status(Status(StatusCode.ERROR, message[:500]))


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: str = "INTERNAL",
    context: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span named `name` (None, and nothing done, when tracing is off), the child of the
    kept `context` if given, else of the current span; an exception marks it as an error."""
    if not enabled():
        yield None
        return
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(
        name,
        context=parent(context) if context else None,
        kind=SpanKind[kind],
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    ) as opened:
        yield opened
