"""ChatAgent on the real model (SmolLM2-135M, llama-cpp-python, examples/model-server.yaml) on
the local cluster: what Foundation adds to a model call, and chat tasks/s.

    .venv/bin/python bench/chat_latency.py [--calls 30] [--max-tokens 96]

- Added latency, one member (ConfigMap store, and PVC store), for a question with a short
  answer and one whose answer runs to `--max-tokens`: the same chat completion (system
  prompt, one user message, temperature 0) sent in turn straight to the model server's pod and
  as a `chat` task to each member (each task a new session, so the prompt is the same). A
  task's time runs from the POST of the task to its durable completion (`GET ?wait`): the
  durable acceptance, the run, the call through the sidecar, the durable completion.
  Added = task p50 - direct p50, as a share of the direct call.
- Throughput: `--calls` tasks, four at a time, to one member and to four members, against the
  same requests four at a time straight to the model server: tasks/s, p50/p99 and completion
  tokens/s. One model server serves all of them, so it bounds every figure.
- Tools on the real model: `chat` tasks with a tool offered, counting how many made a tool
  call (llama-cpp-python's server passes tools to the model's chat template; SmolLM2's template
  ignores them).

A benchmark, not a test: it asserts nothing and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import yaml
from harness import (
    KUBECONFIG,
    REPO,
    agent_body,
    delete_namespace,
    new_namespace,
    operator_env,
)
from kubernetes_asyncio import client, config

KUBECTL = str(REPO / "e2e/local/kubectl")
SYSTEM = "You are a helpful assistant. Answer in one sentence."
# A short answer (a few tokens, so the model call is short and the overhead shows most) and a
# long one (the answer runs to max_tokens, as chat answers usually do).
QUESTIONS = {
    "short_answer": "What is the capital of France?",
    "long_answer": "Tell me a long story about a robot who learns to paint.",
}
QUESTION = QUESTIONS["short_answer"]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p99_ms": round(quantile(seconds, 0.99) * 1000, 1),
    }


def kubectl(ns: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [KUBECTL, "-n", ns, *args], input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout


def chat_agent(name: str, replicas: int, max_tokens: int, tools: bool = False) -> dict:
    config_: dict[str, Any] = {
        "upstream": "model",
        "model": "smollm2",
        "system": SYSTEM,
        "maxTokens": max_tokens,
        "temperature": 0,
    }
    if tools:
        config_["tools"] = [{"capability": "count", "action": "increment"}]
    return agent_body(
        name,
        "foundation_agent.agents:ChatAgent",
        replicas=replicas,
        config=config_,
        sidecar={
            "upstreams": [
                {
                    "name": "model",
                    "service": {"name": "model-server", "port": 8000},
                    "timeoutSeconds": 120,
                    "retries": 0,
                }
            ]
        },
    )


async def ready_pods(core: client.CoreV1Api, ns: str, selector: str, count: int) -> list[str]:
    """The pod IPs of `count` ready pods matching `selector`, once there are."""
    while True:
        pods = (await core.list_namespaced_pod(ns, label_selector=selector)).items
        ready = [
            p.status.pod_ip
            for p in pods
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        if len(ready) >= count:
            return sorted(ready)[:count]
        await asyncio.sleep(0.2)


class Bench:
    def __init__(self, http: httpx.AsyncClient, model_ip: str, max_tokens: int) -> None:
        self.http = http
        self.model = f"http://{model_ip}:8000/v1/chat/completions"
        self.max_tokens = max_tokens

    def request(self, question: str) -> dict:
        # What ChatAgent sends for a new session's first turn.
        return {
            "model": "smollm2",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
            ],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }

    async def direct(self, question: str = QUESTION) -> tuple[float, int]:
        started = time.perf_counter()
        answer = await self.http.post(self.model, json=self.request(question))
        took = time.perf_counter() - started
        answer.raise_for_status()
        return took, int(answer.json()["usage"]["completion_tokens"])

    async def task(self, member_ip: str, question: str = QUESTION) -> tuple[float, dict]:
        base = f"http://{member_ip}:8080/v1/tasks"
        task_id = uuid.uuid4().hex
        body = {"id": task_id, "action": "chat", "input": {"session": task_id, "message": question}}
        started = time.perf_counter()
        accepted = await self.http.post(base, json=body)
        accepted.raise_for_status()
        record = (await self.http.get(f"{base}/{task_id}?wait=60")).json()
        took = time.perf_counter() - started
        if record.get("status") != "succeeded":
            raise RuntimeError(f"chat task failed: {record}")
        return took, record["result"]


async def four_at_a_time(calls: int, one: Any) -> dict[str, float]:
    """`calls` calls of `one()` (-> (seconds, completion tokens)), four in flight at once."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    times: list[float] = []
    tokens = 0

    async def worker(slot: int) -> None:
        nonlocal tokens
        while not queue.empty():
            queue.get_nowait()
            took, used = await one(slot)
            times.append(took)
            tokens += used

    started = time.perf_counter()
    await asyncio.gather(*(worker(slot) for slot in range(4)))
    wall = time.perf_counter() - started
    return {
        "per_s": round(calls / wall, 2),
        **summary(times),
        "completion_tokens_per_s": round(tokens / wall, 1),
    }


async def main_async(calls: int, max_tokens: int) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    ns = f"bench-chat-{uuid.uuid4().hex[:5]}"
    env = operator_env(ns, health_port=18083, metrics_port=19093)
    log = open(REPO / ".local-cluster" / "logs" / "bench-chat.log", "ab")
    out: dict[str, Any] = {"calls": calls, "max_tokens": max_tokens}
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await new_namespace(core, ns)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")], env=env, stdout=log, stderr=log
        )
        try:
            kubectl(ns, "apply", "-f", str(REPO / "examples/model-server.yaml"))
            agents = (("one", 1, False), ("four", 4, False), ("tools", 1, True), ("pvc", 1, False))
            for name, replicas, tools in agents:
                agent = chat_agent(name, replicas, max_tokens, tools)
                if name == "pvc":
                    agent["spec"]["persistence"] = {"store": "PVC"}
                kubectl(ns, "apply", "-f", "-", stdin=yaml.safe_dump(agent))
            (model_ip,) = await ready_pods(core, ns, "app.kubernetes.io/name=model-server", 1)
            (one_ip,) = await ready_pods(core, ns, "foundation.dev/agent=one", 1)
            four_ips = await ready_pods(core, ns, "foundation.dev/agent=four", 4)
            (tools_ip,) = await ready_pods(core, ns, "foundation.dev/agent=tools", 1)
            (pvc_ip,) = await ready_pods(core, ns, "foundation.dev/agent=pvc", 1)
            async with httpx.AsyncClient(timeout=180) as http:
                bench = Bench(http, model_ip, max_tokens)
                for _ in range(3):  # warm: the model's first calls, the members' pools
                    await bench.direct()
                    await bench.task(one_ip)
                    await bench.task(pvc_ip)
                    for ip in four_ips:
                        await bench.task(ip)

                # -- added latency, one member, alternating with the direct call ----------
                stores = {"ConfigMap": one_ip, "PVC": pvc_ip}
                for shape, question in QUESTIONS.items():
                    direct: list[float] = []
                    direct_tokens: set[int] = set()
                    chat: dict[str, list[float]] = {store: [] for store in stores}
                    chat_tokens: set[int] = set()
                    for _ in range(calls):
                        took, used = await bench.direct(question)
                        direct.append(took)
                        direct_tokens.add(used)
                        for store, ip in stores.items():
                            took, result = await bench.task(ip, question)
                            chat[store].append(took)
                            chat_tokens.add(result["usage"]["completionTokens"])
                    model_call = statistics.median(direct)
                    out[f"one_member_sequential_{shape}"] = {
                        "direct": summary(direct),
                        "direct_completion_tokens": sorted(direct_tokens),
                        "chat_completion_tokens": sorted(chat_tokens),
                        "completion_tokens_per_s": round(max(direct_tokens) / model_call, 1),
                        **{
                            f"store_{store}": {
                                "chat_task": summary(times),
                                "added_p50_ms": round(
                                    (statistics.median(times) - model_call) * 1000, 1
                                ),
                                "added_share_of_model_call": round(
                                    (statistics.median(times) - model_call) / model_call, 4
                                ),
                                "chat_tasks_per_s": round(1 / statistics.median(times), 2),
                            }
                            for store, times in chat.items()
                        },
                    }

                # -- four at a time: straight to the model, one member, four members ------
                async def direct_one(_: int) -> tuple[float, int]:
                    return await bench.direct()

                async def to(ip_of: Any) -> Any:
                    async def one(slot: int) -> tuple[float, int]:
                        took, result = await bench.task(ip_of(slot))
                        return took, result["usage"]["completionTokens"]

                    return one

                out["four_at_a_time"] = {
                    "direct": await four_at_a_time(calls, direct_one),
                    "one_member": await four_at_a_time(calls, await to(lambda _: one_ip)),
                    "four_members": await four_at_a_time(calls, await to(lambda s: four_ips[s])),
                }
                direct_rate = out["four_at_a_time"]["direct"]["per_s"]
                out["four_at_a_time"]["ratio_four_members_to_direct"] = round(
                    out["four_at_a_time"]["four_members"]["per_s"] / direct_rate, 3
                )

                # -- tools offered to the real model ---------------------------------------
                made = failed = 0
                tried = min(calls, 10)
                for _ in range(tried):
                    try:
                        _, result = await bench.task(tools_ip)
                    except RuntimeError:
                        failed += 1
                        continue
                    made += bool(result["toolCalls"])
                out["real_model_tool_calls"] = {
                    "chats": tried,
                    "with_a_tool_call": made,
                    "failed": failed,
                }
        finally:
            operator.terminate()
            operator.wait(30)
            await delete_namespace(core, custom, ns, ["one", "four", "tools", "pvc"])
    out["goal_added_share_below"] = 0.05
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    subprocess.run([str(REPO / "e2e/local/llm")], check=True, capture_output=True)
    subprocess.run([KUBECTL, "apply", "-f", str(REPO / "crds")], check=True, capture_output=True)
    subprocess.run(
        [KUBECTL, "wait", "--for=condition=Established", "crd/agents.foundation.dev"],
        check=True,
        capture_output=True,
    )
    print(json.dumps(asyncio.run(main_async(args.calls, args.max_tokens)), indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
