"""Calls to the model: an OpenAI-compatible chat completions API (`POST /v1/chat/completions`)
behind a sidecar upstream, so its circuit breaker, rate limits and retries protect them.

A call the sidecar refuses (an open circuit, a rate limit) or gives up on fails at once with a
message that says which upstream and why: a chat task never hangs on a model that is down.
Each call carries an Idempotency-Key derived from the chat task's id, so the sidecar may retry
it (a completion has no effect to double; the key marks it safe to send again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from foundation_agent.chat import metrics
from foundation_agent.client import Sidecar
from foundation_common import tracing
from foundation_common.sidecar import CIRCUIT_HEADER, LIMIT_HEADER

Message = dict[str, Any]


class ModelError(Exception):
    """A model call failed; the message names the upstream and the cause."""


@dataclass(frozen=True)
class Completion:
    message: Message  # the assistant's message: role, content, and tool_calls if any
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str = ""  # as the answer names it

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


def _error_text(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # OpenAI's shape: {"error": {"message": ...}}
        return str(error.get("message") or error)[:300]
    return str(error or body)[:300]


def refusal(upstream: str, answer: httpx.Response) -> tuple[str, str]:
    """(outcome, message) for an answer that is not a completion."""
    status = answer.status_code
    retry = answer.headers.get("Retry-After")
    later = f"; retry after {retry} s" if retry else ""
    if status == 503 and CIRCUIT_HEADER in answer.headers:
        state = answer.headers[CIRCUIT_HEADER]
        return "circuit_open", (
            f"model upstream {upstream!r}: its circuit is {state} after repeated failures, "
            f"so the sidecar refuses calls{later}"
        )
    if status == 429 and LIMIT_HEADER in answer.headers:
        scope = answer.headers[LIMIT_HEADER]
        return "rate_limited", f"model upstream {upstream!r}: the {scope}'s rate limit{later}"
    if status == 504:
        return "timeout", f"model upstream {upstream!r}: {_error_text(answer)}"
    if status == 404 and "no upstream named" in answer.text:
        return "error", (
            f"model upstream {upstream!r} is not configured in spec.sidecar.upstreams: "
            f"{_error_text(answer)}"
        )
    return "error", f"model upstream {upstream!r} answered {status}: {_error_text(answer)}"


class ModelClient:
    def __init__(self, sidecar: Sidecar, upstream: str, agent: str, timeout_seconds: float) -> None:
        self.sidecar = sidecar
        self.upstream = upstream
        self.agent = agent
        self.timeout = timeout_seconds
        metrics.MODEL_UPSTREAM.labels(agent=agent, upstream=upstream).set(1)

    def _count(self, outcome: str, started: float) -> None:
        metrics.MODEL_CALLS.labels(agent=self.agent, upstream=self.upstream, outcome=outcome).inc()
        metrics.MODEL_SECONDS.labels(agent=self.agent, upstream=self.upstream).observe(
            time.monotonic() - started
        )

    async def complete(self, request: dict[str, Any], key: str) -> Completion:
        """One completion; a `chat` span (GenAI conventions: model, token usage, finish
        reasons) around it when tracing is on."""
        if not tracing.enabled():
            return await self._complete(request, key)
        model = str(request.get("model") or "")
        with tracing.span(
            f"chat {model}",
            kind="CLIENT",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",  # the API's shape: any compatible server
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": request.get("max_tokens"),
                "gen_ai.request.temperature": request.get("temperature"),
                "foundation.upstream": self.upstream,
            },
        ) as span:
            try:
                completion = await self._complete(request, key)
            except ModelError as exc:
                if span is not None:
                    tracing.failed(span, str(exc))
                raise
            if span is not None:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": completion.prompt_tokens,
                        "gen_ai.usage.output_tokens": completion.completion_tokens,
                        "gen_ai.response.finish_reasons": [completion.finish_reason],
                        "gen_ai.response.model": completion.model or model,
                    }
                )
            return completion

    async def _complete(self, request: dict[str, Any], key: str) -> Completion:
        started = time.monotonic()
        try:
            answer = await self.sidecar.call(
                self.upstream,
                "v1/chat/completions",
                method="POST",
                json=request,
                headers={"Idempotency-Key": key},
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            self._count("timeout", started)
            raise ModelError(
                f"model upstream {self.upstream!r}: no answer within {self.timeout:g} s "
                "(config.timeoutSeconds)"
            ) from None
        except httpx.TransportError as exc:
            self._count("unreachable", started)
            raise ModelError(
                f"model upstream {self.upstream!r}: the sidecar could not be reached: {exc}"
            ) from None
        if answer.status_code != 200:
            outcome, message = refusal(self.upstream, answer)
            self._count(outcome, started)
            raise ModelError(message)
        try:
            body = answer.json()
            choice = body["choices"][0]
            message = dict(choice["message"])
            usage = body.get("usage") or {}
            completion = Completion(
                message=message,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=str(choice.get("finish_reason") or ""),
                model=str(body.get("model") or ""),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._count("error", started)
            raise ModelError(
                f"model upstream {self.upstream!r}: not a chat completion "
                f"({type(exc).__name__}: {exc}): {answer.text[:200]}"
            ) from None
        self._count("ok", started)
        metrics.TOKENS.labels(agent=self.agent, kind="prompt").inc(completion.prompt_tokens)
        metrics.TOKENS.labels(agent=self.agent, kind="completion").inc(completion.completion_tokens)
        return completion
