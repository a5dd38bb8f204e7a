"""The task API keeps the contract it publishes: schemathesis reads the OpenAPI document a
member serves (`GET /openapi.json`) and sends what it allows and what it does not to every
operation; each answer must be one the document lists, with a body matching its schema, and
no 5xx (issue 26). The member is the property suite's (a CounterAgent behind the runtime's
limits, on loopback); its teardown checks the count holds exactly the increments taken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from foundation_agent.agents import CounterAgent
from foundation_agent.agents.chat import ChatAgent
from foundation_agent.model import Agent, action
from foundation_agent.runtime import openapi
from foundation_agent.runtime.access import Gate
from foundation_common.limits import Limits
from served_ports import Ports

OPERATIONS = [
    ("/v1/tasks", "GET"),
    ("/v1/tasks", "POST"),
    ("/v1/tasks/{id}", "GET"),
    ("/v1/tasks/{id}/cancel", "POST"),
    ("/v1/actions", "GET"),
    ("/openapi.json", "GET"),
]
TOKEN = "contract-token"  # the one the reviewer below knows: a user RBAC allows everything


async def review(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The API server's two reviews, as the tester's own: one token, every right."""
    if body["kind"] == "TokenReview":
        known = body["spec"]["token"] == TOKEN
        return {"status": {"authenticated": known, "user": {"username": "tester"} if known else {}}}
    return {"status": {"allowed": body["spec"]["user"] == "tester"}}


AUTH = {"Authorization": f"Bearer {TOKEN}"}
BUDGET = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    gate = Gate(review, "ns", "agent", "agent", "Required")
    with Ports(tmp_path_factory.mktemp("contract"), gate) as ports:
        yield ports
        ports.check_exactly_once()


@pytest.fixture(scope="module")
def task_api(served: Ports) -> BaseSchema:
    return schemathesis.openapi.from_url(served.urls["tasks"] + "/openapi.json", headers=AUTH)


def test_the_document_is_valid_openapi_and_names_each_action(served: Ports) -> None:
    document = httpx.get(served.urls["tasks"] + "/openapi.json", headers=AUTH, timeout=10).json()
    validate_openapi(document)
    request = document["components"]["schemas"]["Task_increment"]
    assert request["properties"]["action"] == {"const": "increment"}
    given, null = request["properties"]["input"]["anyOf"]
    assert given["properties"]["by"]["type"] == "integer" and null == {"type": "null"}
    listed = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_the_task_api_keeps_its_openapi_contract(
    task_api: BaseSchema, served: Ports, path: str, method: str, mode: GenerationMode
) -> None:
    """Positive cases must be taken or answered as the document lists; negative ones refused
    with a 4xx it lists; never a 5xx, never a body off its schema."""

    @BUDGET
    @given(case=task_api[path][method].as_strategy(mode))
    def check(case: schemathesis.Case) -> None:
        if mode == GenerationMode.NEGATIVE and isinstance(case.query, dict):
            # A parameter without a name is dropped by the HTTP client before it is sent: the
            # request that arrives is not the schema-violating one schemathesis made.
            assume(all(case.query))
        if mode == GenerationMode.POSITIVE and isinstance(case.query, dict):
            # Any string fits a page token's schema, but only one a listing gave is one
            # (test_history pages with real ones); the other filters are all generated.
            case.query.pop("pageToken", None)
        answer = case.call(headers=AUTH)
        body = case.body if isinstance(case.body, dict) else {}
        if answer.status_code == 202 and body.get("action") == "increment":
            increment = CounterAgent().actions()["increment"]  # its input, as the member read it
            served.accepted[body["id"]] = increment.parse(body.get("input")).by
        case.validate_response(answer)

    check()


class Address(BaseModel):
    city: str


class Order(BaseModel):
    to: Address
    lines: list[Address] = []


class Shop(Agent[Order]):
    State = Order

    @action
    async def ship(self, state: Order, order: Order) -> tuple[Order, str]:
        """Ship an order."""
        return state, order.to.city


@pytest.mark.parametrize(
    "agent", [Shop(), ChatAgent({"upstream": "model"}), CounterAgent()], ids=type
)
def test_every_agent_gets_a_valid_document_whose_references_resolve(agent: Agent) -> None:
    """Nested input models (pydantic's `$defs`) become components, referenced from there."""
    document = openapi.document("shop", "1", agent.actions(), Limits())
    validate_openapi(document)
    text = json.dumps(document)
    assert "#/$defs/" not in text and "$defs" not in text
    schemas = document["components"]["schemas"]
    for name in agent.actions():
        assert schemas[f"Task_{name}"]["properties"]["action"] == {"const": name}
    if isinstance(agent, Shop):
        assert schemas["Task_ship_Address"]["properties"]["city"] == {
            "title": "City",
            "type": "string",
        }


def test_a_request_line_over_8_kib_is_refused_as_the_document_says(served: Ports) -> None:
    """The HTTP parser's own 400 (plain text) is one the document lists, and the member lives."""
    base = served.urls["tasks"]
    answer = httpx.get(base + "/v1/tasks", params={"order": "x" * 9000}, headers=AUTH, timeout=10)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/plain")
    document = httpx.get(base + "/openapi.json", headers=AUTH, timeout=10).json()
    assert "text/plain" in document["paths"]["/v1/tasks"]["get"]["responses"]["400"]["content"]
    assert httpx.get(base + "/v1/tasks", headers=AUTH, timeout=10).status_code == 200
