"""What the benchmarks read from kube-apiserver itself: its request counters
(`apiserver_request_total`) and the write rate the cluster sustains."""

from __future__ import annotations

import asyncio
import time
import uuid

from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

# (verb, resource, subresource, code) -> requests
Counts = dict[tuple[str, str, str, str], int]
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


async def request_counts(api: client.ApiClient) -> Counts:
    response = await api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        response_types_map={},
    )
    text = (await response.read()).decode()
    counts: Counts = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
                labels.get("code", ""),
            )
            counts[key] = counts.get(key, 0) + int(sample.value)
    return counts


def delta(after: Counts, before: Counts) -> Counts:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def writes(counts: Counts) -> int:
    """Successful writes of every kind (whoever made them: operator, runner, node, scheduler)."""
    return sum(
        v for (verb, _, _, code), v in counts.items() if verb in WRITE_VERBS and code[:1] == "2"
    )


def writes_by_kind(counts: Counts, per: int = 1) -> dict[str, float]:
    """Successful writes by "VERB resource[/subresource]", divided by `per`."""
    out: dict[str, int] = {}
    for (verb, resource, sub, code), v in counts.items():
        if verb in WRITE_VERBS and code[:1] == "2":
            kind = f"{verb} {resource}" + (f"/{sub}" if sub else "")
            out[kind] = out.get(kind, 0) + v
    return {k: round(v / per, 2) for k, v in sorted(out.items())}


async def write_capacity(
    core: client.CoreV1Api, ns: str, count: int = 1500, at_once: int = 64
) -> float:
    """Writes/s the cluster sustains: `count` ConfigMap creates, `at_once` in flight (deleted
    with the namespace)."""
    prefix = f"cap-{uuid.uuid4().hex[:4]}"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await core.create_namespaced_config_map(
                ns,
                {"metadata": {"name": f"{prefix}-{i}"}, "data": {"k": "v"}},
                _preload_content=False,
            )

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(at_once)))
    return count / (time.monotonic() - started)
