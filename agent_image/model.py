"""The programming model: an agent is a class with a pydantic state and async actions.

    class Counter(Agent[CounterState]):
        State = CounterState

        @action
        async def increment(self, state: CounterState, input: By) -> tuple[dict, CounterState]:
            new = state.model_copy(update={"count": state.count + input.by})
            return {"count": new.count}, new

An action takes the current state and a validated input and returns (result, new state). The
runtime validates the new state after every action; an action that raises, or returns a state
that does not validate, fails its task and leaves the state as it was.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

S = TypeVar("S", bound=BaseModel)

# Bound to its agent: (state, input) -> (result, new state).
ActionFn = Callable[[Any, Any], Awaitable[tuple[Any, Any]]]


class AnyInput(RootModel[Any]):
    """The input of an action that declares no model: any JSON value."""


class NoInput(BaseModel):
    """The input of an action that takes none: `{}` or null."""

    model_config = ConfigDict(extra="forbid")


class AgentError(Exception):
    """An agent class cannot be loaded or is not a valid agent."""


class InvalidInput(ValueError):
    """A task's input does not fit its action; the message names the problem."""


@dataclass(frozen=True)
class TaskContext:
    """The task an action runs for: its id (the client's, stable across retries and re-runs
    after a crash) and its runs since it was last stored (a run cut short by a crash is not
    stored, so a re-run after one may count 1 again: derive ids from `id`, never from this)."""

    id: str
    action: str
    attempt: int


_TASK: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("task", default=None)


def current_task() -> TaskContext:
    """The task the running action belongs to. Derive the ids of calls that have effects
    elsewhere from its `id` (`f"{task.id}.step-1"`): a re-run after a crash sends the same ids,
    so the receivers do not apply them twice."""
    task = _TASK.get()
    if task is None:
        raise RuntimeError("current_task() is only known inside an action")
    return task


def running(task: TaskContext) -> contextvars.Token[TaskContext | None]:
    """For the runtime: the task the action about to run belongs to."""
    return _TASK.set(task)


@dataclass(frozen=True)
class Action:
    name: str
    fn: ActionFn
    input_model: type[BaseModel]
    description: str = ""

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the action's input (what a model's tool call must send)."""
        if self.input_model is AnyInput:
            return {}
        return self.input_model.model_json_schema()

    def parse(self, raw: Any) -> Any:
        try:
            if raw is None and self.input_model is not AnyInput:
                raw = {}  # no input: the model's defaults
            value = self.input_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"input{''.join(f'.{p}' for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"action {self.name!r}: {problems}") from None
        return value.root if isinstance(value, AnyInput) else value


def action(fn: Callable[..., Awaitable[tuple[Any, Any]]]) -> Callable[..., Any]:
    """Register an async method `(self, state, input) -> (result, new_state)` as an action.

    The input's type hint (a pydantic model) validates the task's input; without one the input
    is any JSON value.
    """
    if not inspect.iscoroutinefunction(fn):
        raise AgentError(f"action {fn.__qualname__} must be `async def`")
    fn.__foundation_action__ = True  # type: ignore[attr-defined]
    return fn


def _input_model(fn: Callable[..., Any]) -> type[BaseModel]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 3:
        return NoInput
    hint = get_type_hints(fn).get(params[2].name)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    return AnyInput


class Agent(Generic[S]):
    """Base class of agents. Subclasses set `State` and register actions with @action."""

    State: ClassVar[type[BaseModel]]
    name: str = "agent"  # the Agent's name (the runtime sets it), e.g. for metrics' labels

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    def initial_state(self) -> S:
        """The state of a member that has none saved yet."""
        return self.State()  # type: ignore[return-value]

    async def on_start(self, state: S) -> S | None:
        """After the state is loaded, before the first task; may return a new state."""
        return None

    async def on_stop(self, state: S) -> S | None:
        """On shutdown, before the final save; may return a new state."""
        return None

    def actions(self) -> dict[str, Action]:
        """The registered actions by name (an agent may add more by overriding this)."""
        found: dict[str, Action] = {}
        for name, member in inspect.getmembers(type(self)):
            if getattr(member, "__foundation_action__", False):
                found[name] = Action(
                    name,
                    getattr(self, name),
                    _input_model(member),
                    inspect.cleandoc(member.__doc__ or ""),
                )
        return found


def load_agent(path: str, config: dict[str, Any], name: str = "agent") -> Agent[Any]:
    """Import `module:Class` and make the agent, with messages that say what to fix."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise AgentError(f"agent {path!r} must be an import path module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentError(f"agent {path!r}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise AgentError(
            f"agent {path!r}: {module_name}.{class_name} is not a foundation_agent Agent class"
        )
    state_model = getattr(cls, "State", None)
    if not (isinstance(state_model, type) and issubclass(state_model, BaseModel)):
        raise AgentError(f"agent {path!r}: its State must be a pydantic model")
    agent = cls(config)
    agent.name = name
    if not agent.actions():
        raise AgentError(f"agent {path!r} registers no actions")
    return agent
