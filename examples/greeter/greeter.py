"""A first agent: it greets people and remembers, durably, how often it has met each one."""

from pydantic import BaseModel, Field

from foundation_agent.model import Agent, action


class Greeted(BaseModel):
    """The agent's state: saved after every task, loaded again after any restart."""

    times: dict[str, int] = Field(default_factory=dict)


class Person(BaseModel):
    """The input of `greet`: the runtime validates it and names a bad field."""

    name: str = Field(min_length=1, max_length=100)


class Greeter(Agent[Greeted]):
    State = Greeted

    @action
    async def greet(self, state: Greeted, input: Person) -> tuple[dict, Greeted]:
        times = state.times.get(input.name, 0) + 1
        greeting = self.config.get("greeting", "Hello")  # the Agent's spec.config
        new = Greeted(times={**state.times, input.name: times})
        return {"message": f"{greeting}, {input.name}!", "times": times}, new
