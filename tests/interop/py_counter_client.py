"""Interop peer: two concurrent MCP Python SDK 2.x client sessions against one counter server.

Run with the venv that scripts/install-peers.sh builds:

    target/peers/py/bin/python tests/interop/py_counter_client.py \
        --url http://127.0.0.1:PORT/mcp --tool-prefix '' --mode legacy \
        [--header 'Authorization: Bearer x' ...]

Opens two independent client sessions (A and B) at the same time, lists the
tools in each, then interleaves `{prefix}increment {"by": 1}` calls
(A,B,A,B,A,B,A,A: five for A, three for B) and finally calls `{prefix}get {}`
in each. A server (or a gateway in front of one) that keeps one counter per
session answers a=5, b=3.

Prints one JSON line on stdout and exits 0:

    {"tools": [...names listed by A...], "a": 5, "b": 3, "protocol_version": "2025-11-25"}

On any error prints it on stderr and exits 1. A hard overall timeout
(--timeout, default 60 s) guarantees it never hangs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, NoReturn

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

PROG = "py_counter_client"


def parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {raw!r}")
    return name, value.strip()


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Any error exits 1, usage errors included (argparse would exit 2).
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="Streamable HTTP MCP endpoint")
    p.add_argument("--tool-prefix", default="", help="string prepended to the tool names (may be empty)")
    p.add_argument("--mode", choices=("legacy", "auto"), default="auto", help="mcp.Client connect mode")
    p.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="'Name: value'",
        help="HTTP header sent on every request (repeatable)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="hard overall timeout in seconds (default 60)")
    return p.parse_args(argv)


class Session:
    """Holds one `mcp.Client` open in its own task.

    anyio requires a task group (the transport's, inside the client) to be
    exited by the task that entered it, so each client lives in a worker task;
    the main task makes the calls, which is fine from any task.
    """

    def __init__(self, label: str, args: argparse.Namespace) -> None:
        self.label = label
        self.args = args
        self.client: Client | None = None
        self.ready = anyio.Event()
        self.done = anyio.Event()

    async def run(self) -> None:
        # Per-request timeouts well inside the overall one; the read timeout
        # must allow for an SSE answer that takes a moment.
        timeout = httpx2.Timeout(min(30.0, self.args.timeout), read=min(60.0, self.args.timeout))
        async with httpx2.AsyncClient(headers=self.args.header, timeout=timeout) as http:
            transport = streamable_http_client(self.args.url, http_client=http)
            # cache=None: every tools/list goes on the wire (the default caches per client).
            client = Client(
                transport,
                mode=self.args.mode,
                cache=None,
                read_timeout_seconds=min(30.0, self.args.timeout),
            )
            try:
                async with client:
                    self.client = client
                    self.ready.set()
                    await self.done.wait()
            except Exception as e:
                raise RuntimeError(f"session {self.label}: {describe(e)}") from e

    async def list_tool_names(self) -> list[str]:
        assert self.client is not None
        names: list[str] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang us
            page = await self.client.list_tools(cursor=cursor)
            names.extend(tool.name for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                return names
        raise RuntimeError(f"session {self.label}: tools/list pagination did not end after 100 pages")

    async def call_counter(self, name: str, arguments: dict[str, Any]) -> int:
        assert self.client is not None
        try:
            result = await self.client.call_tool(name, arguments)
        except Exception as e:
            raise RuntimeError(f"session {self.label}: tools/call {name}: {describe(e)}") from e
        if result.is_error:
            raise RuntimeError(f"session {self.label}: tools/call {name} returned isError: {dump(result)}")
        texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
        structured = result.structured_content
        value: int | None = None
        if texts:
            try:
                value = int(texts[0].strip())
            except ValueError:
                raise RuntimeError(
                    f"session {self.label}: tools/call {name}: text content is not an integer: {texts[0]!r}"
                ) from None
        elif isinstance(structured, dict) and isinstance(structured.get("value"), int):
            value = structured["value"]
        if value is None:
            raise RuntimeError(f"session {self.label}: tools/call {name}: no integer in the result: {dump(result)}")
        if isinstance(structured, dict) and "value" in structured and structured["value"] != value:
            raise RuntimeError(
                f"session {self.label}: tools/call {name}: text content {value} disagrees with "
                f"structuredContent {structured!r}"
            )
        return value


def dump(result: Any) -> str:
    try:
        return result.model_dump_json(by_alias=True, exclude_none=True)
    except Exception:
        return repr(result)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    a = Session("A", args)
    b = Session("B", args)
    out: dict[str, Any] = {}
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        # Both sessions connect at the same time and stay open until the end.
        tg.start_soon(a.run)
        tg.start_soon(b.run)
        await a.ready.wait()
        await b.ready.wait()
        assert a.client is not None and b.client is not None
        try:
            tools_a = await a.list_tool_names()
            await b.list_tool_names()

            inc = f"{args.tool_prefix}increment"
            for who in "ABABABAA":
                await (a if who == "A" else b).call_counter(inc, {"by": 1})

            get = f"{args.tool_prefix}get"
            out = {
                "tools": tools_a,
                "a": await a.call_counter(get, {}),
                "b": await b.call_counter(get, {}),
                "protocol_version": getattr(a.client, "protocol_version", None),
            }
        except Exception as e:
            # Held, not raised here: raising would cancel the workers, and a
            # cancelled client skips its session DELETE, leaking sessions on the
            # server (or gateway) under test.
            failure = e
        finally:
            a.done.set()
            b.done.set()
    if failure is not None:
        raise failure
    return out


def leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        for sub in exc.exceptions:
            leaves.extend(leaf_errors(sub))
        return leaves
    return [exc]


def describe(exc: BaseException) -> str:
    """`Type: message` for each leaf of a (possibly nested) exception group."""
    parts = []
    for leaf in leaf_errors(exc):
        text = str(leaf)
        if isinstance(leaf, TimeoutError) and not text:
            text = "timed out"
        parts.append(f"{type(leaf).__name__}: {text}")
    return "; ".join(parts)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    # Last resort if cancellation cannot unwind (e.g. a shielded cleanup hangs).
    def watchdog() -> None:
        print(f"{PROG}: error: hard timeout: still running {args.timeout + 10:.0f} s after start", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(args.timeout + 10, watchdog)
    timer.daemon = True
    timer.start()

    async def run() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await scenario(args)

    try:
        out = anyio.run(run)
    except BaseException as exc:  # noqa: BLE001 - report everything, exit 1
        if isinstance(exc, SystemExit):
            raise
        for leaf in leaf_errors(exc):
            if isinstance(leaf, TimeoutError) and not str(leaf):
                msg = f"timed out after {args.timeout:g} s (overall --timeout)"
            else:
                msg = describe(leaf)
            print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    finally:
        timer.cancel()

    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
