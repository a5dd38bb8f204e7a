"""`TaskAgent`: named handlers over the durable task queue.

Each action is a handler named in the Agent's `config.handlers` (`{"name": "module:function"}`);
without it, the built-in handlers below. A handler is `async def h(data, input) -> (result,
data)`, where `data` is the agent's state: a JSON object it may change.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from typing import Any

from pydantic import BaseModel, Field

from foundation_agent.model import Action, Agent, AgentError, AnyInput


class TaskState(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict)


async def echo(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """Returns its input."""
    return input, data


async def put(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """`{"key", "value"}`: stores value under key."""
    if not isinstance(input, dict) or not isinstance(input.get("key"), str):
        raise ValueError('input must be {"key": <string>, "value": <any>}')
    return {"key": input["key"]}, {**data, input["key"]: input.get("value")}


async def get(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """`{"key"}`: the value stored under key (null if none)."""
    key = input.get("key") if isinstance(input, dict) else None
    return {"key": key, "value": data.get(key) if isinstance(key, str) else None}, data


async def sleep(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """`{"seconds"}`: waits (a stand-in for a slow call), then counts itself in `slept`."""
    seconds = float(input.get("seconds", 0)) if isinstance(input, dict) else 0.0
    await asyncio.sleep(seconds)
    return {"slept": seconds}, {**data, "slept": int(data.get("slept", 0)) + 1}


async def clock(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """The member's wall clock when the task ran (`{"at": seconds}`): to time what happens
    between tasks, such as a Workflow's steps."""
    return {"at": time.time()}, data


async def fill(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """`{"key", "bytes"}`: stores a string of that many bytes (state that grows on its own,
    for trying the stores' limits)."""
    if not isinstance(input, dict) or not isinstance(input.get("key"), str):
        raise ValueError('input must be {"key": <string>, "bytes": <count>}')
    size = int(input.get("bytes", 0))
    return {"key": input["key"], "bytes": size}, {**data, input["key"]: "x" * size}


async def emit(data: dict[str, Any], input: Any) -> tuple[Any, dict[str, Any]]:
    """`{"bytes"}`: returns a string of that many bytes and stores nothing (a large result
    from a small input, for trying the result budget)."""
    size = int(input.get("bytes", 0)) if isinstance(input, dict) else 0
    return "x" * max(0, size), data


BUILT_IN = {
    "echo": echo,
    "put": put,
    "get": get,
    "sleep": sleep,
    "fill": fill,
    "clock": clock,
    "emit": emit,
}


def _handler(name: str, path: str) -> Any:
    module_name, _, fn_name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise AgentError(f"config.handlers.{name}: cannot load {path!r}: {exc}") from None
    if not asyncio.iscoroutinefunction(fn):
        raise AgentError(f"config.handlers.{name}: {path} must be an async function")
    return fn


class TaskAgent(Agent[TaskState]):
    State = TaskState

    def actions(self) -> dict[str, Action]:
        configured = self.config.get("handlers")
        if configured is None:
            handlers = dict(BUILT_IN)
        elif isinstance(configured, dict):
            handlers = {name: _handler(name, str(path)) for name, path in configured.items()}
        else:
            raise AgentError('config.handlers must be an object {"action": "module:function"}')

        def bound(fn: Any) -> Any:
            async def run(state: TaskState, input: Any) -> tuple[Any, TaskState]:
                result, data = await fn(dict(state.data), input)
                return result, TaskState(data=data)

            return run

        return {
            name: Action(name, bound(fn), AnyInput, inspect.cleandoc(fn.__doc__ or ""))
            for name, fn in handlers.items()
        }
