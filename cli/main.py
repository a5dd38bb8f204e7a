"""`foundation` (also `kubectl-foundation`, so `kubectl foundation ...` works): tasks for Agents.

    foundation send AGENT ACTION [--input JSON | --input -] [--id ID] [--member N]
                    [--wait] [--timeout S]
    foundation get AGENT ID [--wait] [--timeout S]
    foundation tasks AGENT [--status S] [--action A] [--context C] [--sender U]
                     [--since T] [--until T] [--limit N] [--page-token T] [--all]
                     [-o table|wide|json|yaml]
    foundation card AGENT [--timeout S]
    foundation mcp --agent AGENT [--agent AGENT ...] [--listen HOST:PORT | --stdio]
    foundation console [--listen 127.0.0.1:8765]

It prints the task record (or the Agent's A2A card) as JSON. Exit codes: 0 done (or accepted,
without --wait), 1 the task failed or was cancelled, 2 bad arguments or input, 3 no such Agent
or task, 4 no ready member or none reachable in time, 5 not done within --timeout, 6 the member
refused the task, 7 RBAC does not allow it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
import uuid
from typing import Any

try:
    from kubernetes_asyncio import client, config
except ModuleNotFoundError as missing:  # the package installed without the CLI's extra
    raise SystemExit(
        "foundation: the command needs kubernetes_asyncio, which comes with the CLI's extra: "
        "pip install 'foundation[cli]'"
    ) from missing

from foundation_cli import history, tasks
from foundation_cli.tasks import Problem
from foundation_common import __version__, tracing
from foundation_common.tasks import ENDED

DEFAULT_TIMEOUT = 60.0


def parser(prog: str) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog,
        description="Send tasks to Foundation Agents and read their records, through the "
        "Kubernetes API server (your kubeconfig; no port-forward needed).",
    )
    top.add_argument("--version", action="version", version=__version__)
    top.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    top.add_argument("--context", help="kubeconfig context (default: the current one)")
    top.add_argument("-n", "--namespace", help="namespace (default: the context's, or default)")
    commands = top.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send", help="send a task to an Agent; prints its record")
    send.add_argument("agent")
    send.add_argument("action")
    send.add_argument(
        "--input", default=None, help="the task's input as JSON, or - to read it from stdin"
    )
    send.add_argument(
        "--id", help="the task id (default: a new one); the same id twice is one task"
    )
    send.add_argument("--member", type=int, help="the member's index (default: by the id)")
    send.add_argument("--wait", action="store_true", help="wait until the task is done")
    send.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 60)")

    get = commands.add_parser("get", help="print one task's record")
    get.add_argument("agent")
    get.add_argument("id")
    get.add_argument("--wait", action="store_true", help="wait until the task is done")
    get.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 60)")

    history.add_parser(commands, DEFAULT_TIMEOUT)

    card = commands.add_parser(
        "card", help="print an Agent's A2A card (its URL: through the API server's proxy)"
    )
    card.add_argument("agent")
    card.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 60)")

    mcp = commands.add_parser(
        "mcp",
        help="serve the Agents' actions as MCP tools (streamable HTTP, or stdio); each call is "
        "a task",
    )
    mcp.add_argument(
        "--agent", action="append", required=True, help="an Agent whose actions to serve"
    )
    where = mcp.add_mutually_exclusive_group()
    where.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        help="HOST:PORT of the streamable HTTP endpoint /mcp (default 127.0.0.1:8765)",
    )
    where.add_argument("--stdio", action="store_true", help="speak MCP on stdin/stdout instead")
    mcp.add_argument(
        "--unauthenticated-non-loopback",
        action="store_true",
        help="serve --listen on an address other machines reach, where anyone who reaches it "
        "acts with your kubeconfig (it asks no one who they are)",
    )
    mcp.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds a call waits for its task"
    )
    console = commands.add_parser(
        "console",
        help="a web console for the namespace's Agents and Workflows, on this machine's "
        "loopback, acting with your kubeconfig",
    )
    console.add_argument(
        "--listen", default="127.0.0.1:8765", help="loopback HOST:PORT (default 127.0.0.1:8765)"
    )
    for verb, what in (("approve", "approve"), ("reject", "reject")):
        decide = commands.add_parser(
            verb,
            help=f"{what} a Workflow's approval step (needs create on workflows/approval in "
            "access.foundation.dev, not the right to edit it)",
        )
        decide.add_argument("workflow")
        decide.add_argument("step")
        decide.add_argument("--message", default="", help="what you say about it (recorded)")
        if verb == "approve":
            decide.add_argument(
                "--input",
                default=None,
                help="what the step's later steps get, as JSON (or - for stdin); it must fit "
                "the step's inputSchema",
            )
        decide.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    return top


def task_input(raw: str | None) -> Any:
    if raw is None:
        return None
    text = sys.stdin.read() if raw == "-" else raw
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Problem(f"--input is not JSON: {exc}", tasks.USAGE) from None


def namespace_of(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        contexts, active = config.list_kube_config_contexts(args.kubeconfig)
    except Exception:  # no kubeconfig: connecting says so
        return "default"
    chosen = next((c for c in contexts if c["name"] == args.context), active) or {}
    return str((chosen.get("context") or {}).get("namespace") or "default")


async def connect(args: argparse.Namespace) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        await config.load_kube_config(
            config_file=args.kubeconfig, context=args.context, client_configuration=configuration
        )
    except Exception as exc:  # a missing file, an unknown context: say which
        raise Problem(f"kubeconfig: {exc}", tasks.USAGE) from None
    return client.ApiClient(configuration)


def ended(record: dict, agent: str, member: str, task_id: str) -> dict:
    if record.get("status") not in ENDED:
        raise Problem(
            f"task {task_id} is still {record.get('status')} at {member} after the timeout "
            f"(the same send with --id {task_id} --wait goes on waiting, never a second task)",
            tasks.TIMEOUT,
        )
    return record


def listen_address(args: argparse.Namespace) -> tuple[str, int]:
    """`mcp --listen`'s HOST and PORT; refused (before anything else is done) if the host is
    not loopback and the user has not said they mean it."""
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise Problem(f"--listen {args.listen!r} must be HOST:PORT", tasks.USAGE)
    if not loopback(host) and not args.unauthenticated_non_loopback:
        raise Problem(
            f"--listen {args.listen}: not a loopback address. The MCP endpoint asks no one who "
            "they are, and anyone who reaches it would act with your kubeconfig's rights. Serve "
            "on 127.0.0.1 (or use --stdio); add --unauthenticated-non-loopback to mean it",
            tasks.USAGE,
        )
    return host, int(port)


async def run(args: argparse.Namespace) -> int:
    if args.command == "mcp" and not args.stdio:
        listen_address(args)
    if args.command == "tasks":
        history.usage(args.limit)
    if args.command == "console":
        host, port = console_address(args.listen)
    deadline = time.monotonic() + getattr(args, "timeout", DEFAULT_TIMEOUT)
    payload = task_input(args.input) if args.command in ("send", "approve") else None
    api_client = await connect(args)
    tracing.setup("foundation-cli")  # where OTEL_EXPORTER_OTLP_ENDPOINT says so
    try:
        api = tasks.Tasks(api_client, namespace_of(args))
        if args.command == "mcp":
            await serve_mcp(api, args)
            return 0
        if args.command == "console":
            from foundation_cli.console import server as console

            await console.serve(console.Kubeconfig(api_client), namespace_of(args), host, port)
            return 0
        if args.command == "tasks":
            await history.run(api, args, deadline)
            return 0
        if args.command in ("approve", "reject"):
            verdict = await api.decide(
                args.workflow, args.step, args.command, args.message, payload, deadline
            )
            print(json.dumps(verdict, indent=2))
            return 0
        if args.command == "card":
            print(json.dumps(await api.card(args.agent, deadline), indent=2))
            return 0
        if args.command == "send":
            task_id = args.id or uuid.uuid4().hex
            pinned = None if args.member is None else f"{args.agent}-{args.member}"
            with tracing.span(
                f"invoke_agent {args.agent}",
                kind="CLIENT",
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": args.agent,
                    tracing.TASK_ID: task_id,
                    tracing.ACTION: args.action,
                },
            ):
                member, record = await api.send(
                    args.agent, task_id, args.action, payload, deadline, member=pinned
                )
                if args.wait:
                    member, record = await api.sent_until_done(
                        args.agent, member, record, deadline, payload
                    )
        else:
            task_id = args.id
            if args.wait:
                member, record = await api.until_done(args.agent, task_id, deadline)
            else:
                member, record = await api.get(args.agent, task_id, deadline)
        if args.wait:
            record = ended(record, args.agent, member, task_id)
        print(json.dumps({**record, "member": member}, indent=2))
        status = record.get("status")
        if args.wait and status != "succeeded":
            return tasks.TASK_FAILED
        return 0
    finally:
        await api_client.close()
        tracing.shutdown()


async def serve_mcp(api: tasks.Tasks, args: argparse.Namespace) -> None:
    from foundation_cli.agent_tools import AgentTools

    server = AgentTools(api, list(dict.fromkeys(args.agent)), args.timeout).server(__version__)
    if args.stdio:
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    import uvicorn

    host, port = listen_address(args)
    app = server.streamable_http_app(host=host)
    print(f"serving MCP at http://{args.listen}/mcp", file=sys.stderr, flush=True)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()


def console_address(listen: str) -> tuple[str, int]:
    """The console's HOST and PORT: loopback only (it acts with your kubeconfig)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise Problem(f"--listen {listen!r} must be HOST:PORT", tasks.USAGE)
    if not loopback(host):
        raise Problem(
            f"--listen {listen}: the console acts with your kubeconfig, so it serves this "
            "machine's loopback only; to share it, run it in the cluster (docs/console.md)",
            tasks.USAGE,
        )
    return host.strip("[]"), int(port)


def loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine's loopback only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    prog = os.path.basename(sys.argv[0]) if argv is None else "foundation"
    if prog.startswith("kubectl-"):
        prog = "kubectl foundation"
    args = parser(prog).parse_args(argv)
    try:
        code = asyncio.run(run(args))
    except Problem as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
