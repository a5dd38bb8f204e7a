"""`CounterAgent`: the smallest useful agent, and the one exactly-once is proven with."""

from __future__ import annotations

from pydantic import BaseModel, Field

from foundation_agent.model import Agent, NoInput, action


class CounterState(BaseModel):
    count: int = 0


class By(BaseModel):
    by: int = Field(1, ge=-(10**9), le=10**9, description="How much to add.")


class CounterAgent(Agent[CounterState]):
    """Actions: `increment` with `{"by": n}` adds n to `count`; `get` returns the count."""

    State = CounterState

    @action
    async def increment(self, state: CounterState, input: By) -> tuple[dict, CounterState]:
        new = state.model_copy(update={"count": state.count + input.by})
        return {"count": new.count}, new

    @action
    async def get(self, state: CounterState, input: NoInput) -> tuple[dict, CounterState]:
        return {"count": state.count}, state
