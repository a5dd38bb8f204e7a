"""Property-based: whatever a caller sends to a member's task API, its A2A port or the
sidecar's routes, the answer is a status the protocol names (never a 5xx from a bug), the
process goes on, and nothing slips past a boundary (issue 26).

The servers run once, in a thread of their own with the runtime's limits made small (64 KiB
bodies, 16 levels of JSON); hypothesis sends a fixed budget of requests to them (`BUDGET`
each), the bodies ranging over any JSON, bytes, deep nesting and bodies over the limit. At
the end the task API's counter holds exactly the increments it accepted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from served_ports import BASE, LIMITS, Ports

BUDGET = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def deep(depth: int) -> bytes:
    """JSON nested `depth` deep, as text (json.dumps itself recurses)."""
    return b'{"n":[' * (depth // 2) + b"1" + b"]}" * (depth // 2)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.integers(min_value=10, max_value=3000).map(deep),
    st.integers(min_value=60_000, max_value=80_000).map(lambda n: b'"' + b"x" * n + b'"'),
)
IDS = st.one_of(st.sampled_from([f"t{i}" for i in range(8)]), st.text(max_size=140))
TASKS = st.fixed_dictionaries(
    {
        "id": IDS,
        "action": st.sampled_from(["increment", "get", "nope", "", None]),
        "input": st.one_of(
            st.fixed_dictionaries({"by": st.integers(min_value=-5, max_value=5)}),
            JSON,
        ),
    },
    optional={"context": st.one_of(st.text(max_size=300), JSON), "extra": JSON},
)


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    with Ports(tmp_path_factory.mktemp("ports")) as served:
        # Let the A2A port answer before hypothesis starts (uvicorn binds after the banner).
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(served.urls["a2a"] + "/.well-known/agent-card.json", timeout=2)
                break
        yield served
        served.check_exactly_once()


TASK_API = {200, 202, 400, 404, 409, 413, 429}


@BUDGET
@given(task=TASKS)
def test_the_task_api_answers_any_task_with_a_status_it_names(ports: Ports, task: dict) -> None:
    answer = httpx.post(ports.urls["tasks"] + "/v1/tasks", json=task, timeout=10)
    assert answer.status_code in TASK_API, (answer.status_code, answer.text)
    body = answer.json()
    if answer.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"]
    if answer.status_code == 202 and task["action"] == "increment":
        given_input = task["input"]
        by = given_input.get("by", 1) if isinstance(given_input, dict) else 1  # By's default
        ports.accepted[task["id"]] = by


@BUDGET
@given(body=BODIES, path=st.sampled_from(["/v1/tasks", "/v1/tasks/t1/cancel"]))
def test_the_task_api_answers_any_body(ports: Ports, body: bytes, path: str) -> None:
    answer = httpx.post(
        ports.urls["tasks"] + path,
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code in TASK_API, (answer.status_code, answer.text[:200])
    if len(body) > LIMITS.request_bytes:
        assert answer.status_code == 413
        assert "the limit is 65536 bytes" in answer.json()["error"]
    assert httpx.get(ports.urls["tasks"] + "/readyz", timeout=5).status_code == 200


@BUDGET
@given(
    body=BODIES
    | JSON.map(
        lambda p: json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                **(p if isinstance(p, dict) else {"params": p}),
                "method": "SendMessage",
            }
        ).encode()
    )
)
def test_a2a_answers_any_body_without_a_server_error(ports: Ports, body: bytes) -> None:
    answer = httpx.post(
        ports.urls["a2a"] + "/",
        content=body,
        headers={"Content-Type": "application/json", "A2A-Version": "1.0"},
        timeout=10,
    )
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if len(body) > LIMITS.request_bytes:
        assert answer.status_code == 413


SEGMENTS = st.one_of(
    st.sampled_from(
        ["..", ".", "%2e%2e", "%2E", "%2F", "%2f", "%5C", "%25", "\\", "", "v1", "a b"]
    ),
    st.text(alphabet="abc.%/2fFeE5C\\", max_size=8),
)
HEADERS = st.dictionaries(
    st.sampled_from(
        ["X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "X-Hop", "Keep-Alive", "X-Key", "TE"]
    ),
    st.text(alphabet="abcdef123", min_size=1, max_size=6),
    max_size=5,
)


@BUDGET
@given(segments=st.lists(SEGMENTS, min_size=1, max_size=5), headers=HEADERS)
def test_nothing_reaches_an_upstream_outside_its_base_or_with_hop_headers(
    ports: Ports, segments: list[str], headers: dict[str, str]
) -> None:
    before = len(ports.echo.seen)
    raw = "/upstream/llm/" + "/".join(segments)
    with contextlib.suppress(ValueError):  # paths no HTTP client can send
        sent = {**headers, "Connection": "X-Hop"} if "X-Hop" in headers else headers
        answer = httpx.get(
            httpx.URL(ports.urls["sidecar"]).copy_with(raw_path=raw.encode()),
            headers=sent,
            timeout=10,
        )
        assert answer.status_code < 500 or answer.status_code in (502, 504), answer.text
    for path, got in ports.echo.seen[before:]:
        assert path.startswith(BASE + "/"), path
        assert ".." not in path.split("?")[0].split("/") and "%2f" not in path.lower()
        lowered = {k.lower() for k in got}
        assert not lowered & {"x-forwarded-for", "x-forwarded-host", "forwarded", "x-hop", "te"}
