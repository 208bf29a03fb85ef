"""Interop peer: two concurrent MCP Python SDK 2.x client sessions exercising
server-to-client traffic of `@modelcontextprotocol/server-everything`
(sampling, elicitation, progress), directly or through a gateway.

Run with the venv that scripts/install-peers.sh builds:

    target/peers/py/bin/python tests/interop/py_everything_client.py \
        --url http://127.0.0.1:PORT/mcp --tool-prefix 'everything-' --mode legacy

Opens two independent client sessions (A and B) at the same time. Each
declares the sampling and elicitation capabilities (it has callbacks for
both) and, concurrently with the other session:

1. lists the tools;
2. calls `{prefix}trigger-sampling-request {"prompt": "prompt-from-<S>"}` and
   answers the server's `sampling/createMessage` with the text
   "answer-from-<S>" (model "model-<S>");
3. calls `{prefix}trigger-elicitation-request {}` and accepts the server's
   `elicitation/create` with {"name": "name-from-<S>", "check": true};
4. calls `{prefix}trigger-long-running-operation` with a progress callback
   (A: 3 steps, B: 4 steps, so a progress notification names its session
   by its `total` even though both SDK sessions pick the same request ids,
   which double as progress tokens);
5. with --roots only: also declares roots, answers the server's `roots/list`
   (which server-everything sends on its own, on its GET stream) with
   [file:///roots/<S> "root-from-<S>"], and calls `{prefix}get-roots-list {}`.

The callbacks record every request they receive, so a request meant for the
other session shows up in the wrong session's record.

Prints one JSON line on stdout:

    {"protocol_version": "...",
     "sessions": {"A": {"tools": [...],
                        "sampling": {"requests": [{"id": ..., "texts": [...]}], "result": "...", "error": null},
                        "elicitation": {"requests": [{"id": ..., "message": "..."}], "result": "...", "error": null},
                        "long_running": {"steps": 3, "progress": [[1.0, 3.0, null], ...], "result": "...", "error": null},
                        "roots": {"requests": [{"id": ...}], "result": "...", "error": null},
                        "notifications": [{"method": ..., "params": ...}, ...]},
                  "B": {...}}}

Exits 0 when every step of both sessions got a result (whatever it says: the
caller judges the content), 1 otherwise (the JSON, with each step's error, is
still printed on stdout; the failure on stderr). A hard overall timeout
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
from mcp import types
from mcp.client.streamable_http import streamable_http_client

PROG = "py_everything_client"

# Progress steps per session: distinct, so a misrouted notification is recognisable.
STEPS = {"A": 3, "B": 4}
STEP_SECONDS = 0.5


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
    p.add_argument("--mode", choices=("legacy", "auto"), default="legacy", help="mcp.Client connect mode")
    p.add_argument(
        "--roots",
        action="store_true",
        help="also declare roots (answering roots/list with file:///roots/<S>) and call {prefix}get-roots-list",
    )
    p.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="'Name: value'",
        help="HTTP header sent on every request (repeatable), e.g. 'Authorization: Bearer <token>'",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="hard overall timeout in seconds (default 60)")
    return p.parse_args(argv)


def jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def result_text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


class Session:
    """One `mcp.Client` held open in its own worker task (anyio wants the task
    that entered the transport's task group to exit it); calls are made from
    another task, which the SDK allows."""

    def __init__(self, label: str, args: argparse.Namespace) -> None:
        self.label = label
        self.args = args
        self.client: Client | None = None
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.failed: BaseException | None = None
        self.record: dict[str, Any] = {
            "tools": [],
            "sampling": {"requests": [], "result": None, "error": None},
            "elicitation": {"requests": [], "result": None, "error": None},
            "long_running": {"steps": STEPS[label], "progress": [], "result": None, "error": None},
            "roots": {"requests": [], "result": None, "error": None},
            "notifications": [],
        }

    # --- callbacks: what the server asked this session ---------------------------

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        texts = [getattr(m.content, "text", None) for m in params.messages]
        self.record["sampling"]["requests"].append({"id": jsonable(context.request_id), "texts": texts})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"answer-from-{self.label}"),
            model=f"model-{self.label}",
            stop_reason="endTurn",
        )

    async def on_elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        self.record["elicitation"]["requests"].append(
            {"id": jsonable(context.request_id), "message": getattr(params, "message", None)}
        )
        return types.ElicitResult(action="accept", content={"name": f"name-from-{self.label}", "check": True})

    async def on_list_roots(self, context: Any) -> types.ListRootsResult:
        self.record["roots"]["requests"].append({"id": jsonable(context.request_id)})
        return types.ListRootsResult(
            roots=[types.Root(uri=f"file:///roots/{self.label}", name=f"root-from-{self.label}")]
        )

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.record["notifications"].append({"exception": f"{type(message).__name__}: {message}"})
            return
        root = getattr(message, "root", message)
        self.record["notifications"].append(
            {"method": getattr(root, "method", None), "params": jsonable(getattr(root, "params", None))}
        )

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        timeout = httpx2.Timeout(min(30.0, self.args.timeout), read=min(60.0, self.args.timeout))
        try:
            async with httpx2.AsyncClient(headers=self.args.header, timeout=timeout) as http:
                transport = streamable_http_client(self.args.url, http_client=http)
                client = Client(
                    transport,
                    mode=self.args.mode,
                    cache=None,
                    read_timeout_seconds=min(30.0, self.args.timeout),
                    sampling_callback=self.on_sampling,
                    elicitation_callback=self.on_elicitation,
                    message_handler=self.on_message,
                    list_roots_callback=self.on_list_roots if self.args.roots else None,
                    client_info=types.Implementation(name=f"{PROG}-{self.label}", version="1"),
                )
                async with client:
                    self.client = client
                    self.ready.set()
                    await self.done.wait()
        except BaseException as e:  # noqa: BLE001 - reported by the main task
            self.failed = e
            self.ready.set()
            if not isinstance(e, Exception):
                raise

    # --- the scenario -------------------------------------------------------------

    async def scenario(self) -> None:
        assert self.client is not None
        prefix = self.args.tool_prefix
        label = self.label
        try:
            page = await self.client.list_tools()
            self.record["tools"] = [t.name for t in page.tools]
        except Exception as e:
            self.record["tools_error"] = describe(e)

        rec = self.record["sampling"]
        try:
            r = await self.client.call_tool(
                f"{prefix}trigger-sampling-request", {"prompt": f"prompt-from-{label}", "maxTokens": 32}
            )
            rec["result"] = result_text(r)
            rec["is_error"] = bool(r.is_error)
        except Exception as e:
            rec["error"] = describe(e)

        rec = self.record["elicitation"]
        try:
            r = await self.client.call_tool(f"{prefix}trigger-elicitation-request", {})
            rec["result"] = result_text(r)
            rec["is_error"] = bool(r.is_error)
        except Exception as e:
            rec["error"] = describe(e)

        rec = self.record["long_running"]
        steps = STEPS[label]

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            rec["progress"].append([progress, total, message])

        try:
            r = await self.client.call_tool(
                f"{prefix}trigger-long-running-operation",
                {"duration": STEP_SECONDS * steps, "steps": steps},
                progress_callback=on_progress,
            )
            rec["result"] = result_text(r)
            rec["is_error"] = bool(r.is_error)
            # Progress callbacks run in tasks of their own: let the last ones land.
            await anyio.sleep(0.2)
        except Exception as e:
            rec["error"] = describe(e)

        if self.args.roots:
            rec = self.record["roots"]
            try:
                r = await self.client.call_tool(f"{prefix}get-roots-list", {})
                rec["result"] = result_text(r)
                rec["is_error"] = bool(r.is_error)
            except Exception as e:
                rec["error"] = describe(e)


def errors_of(out: dict[str, Any]) -> list[str]:
    found = []
    for label, rec in out["sessions"].items():
        if rec.get("tools_error"):
            found.append(f"session {label}: tools/list: {rec['tools_error']}")
        if rec.get("connect_error"):
            found.append(f"session {label}: {rec['connect_error']}")
        for step in ("sampling", "elicitation", "long_running", "roots"):
            if rec.get(step, {}).get("error"):
                found.append(f"session {label}: {step}: {rec[step]['error']}")
    return found


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sessions = {label: Session(label, args) for label in STEPS}
    out: dict[str, Any] = {"protocol_version": None, "sessions": {}}
    async with anyio.create_task_group() as tg:
        for s in sessions.values():
            tg.start_soon(s.run)
        for s in sessions.values():
            await s.ready.wait()
        try:
            if all(s.client is not None for s in sessions.values()):
                out["protocol_version"] = getattr(sessions["A"].client, "protocol_version", None)
                # Both sessions run their whole scenario at the same time.
                async with anyio.create_task_group() as work:
                    for s in sessions.values():
                        work.start_soon(s.scenario)
        finally:
            # Held until here so each client DELETEs its session cleanly.
            for s in sessions.values():
                s.done.set()
    for label, s in sessions.items():
        if s.failed is not None:
            s.record["connect_error"] = describe(s.failed)
        out["sessions"][label] = s.record
    return out


def leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        for sub in exc.exceptions:
            leaves.extend(leaf_errors(sub))
        return leaves
    return [exc]


def describe(exc: BaseException) -> str:
    parts = []
    for leaf in leaf_errors(exc):
        text = str(leaf)
        if isinstance(leaf, TimeoutError) and not text:
            text = "timed out"
        parts.append(f"{type(leaf).__name__}: {text}")
    return "; ".join(parts)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    def watchdog() -> None:
        print(f"{PROG}: error: hard timeout: still running {args.timeout + 10:.0f} s after start", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(args.timeout + 10, watchdog)
    timer.daemon = True
    timer.start()

    async def run() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await main_async(args)

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
    failures = errors_of(out)
    for f in failures:
        print(f"{PROG}: error: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
