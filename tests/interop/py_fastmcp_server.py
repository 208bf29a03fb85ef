"""An upstream MCP server written with the official Python SDK (mcp 1.x,
FastMCP), stateful Streamable HTTP with event-stream answers: a server nobody
here wrote, for tests/it/python_upstream.rs.

Serves 127.0.0.1:PORT/mcp until killed.
"""

import argparse
import asyncio

from mcp.server.fastmcp import Context, FastMCP

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()

server = FastMCP("py-fastmcp", host="127.0.0.1", port=args.port, log_level="WARNING")

# Per MCP session: the Python SDK gives each session its own ServerSession.
counts: dict[int, int] = {}
sessions_seen: set[int] = set()


def session_key(ctx: Context) -> int:
    key = id(ctx.session)
    sessions_seen.add(key)
    return key


@server.tool()
async def increment(by: int, ctx: Context) -> int:
    """Adds `by` to this session's counter and returns it."""
    key = session_key(ctx)
    counts[key] = counts.get(key, 0) + by
    return counts[key]


@server.tool()
async def sessions(ctx: Context) -> int:
    """How many MCP sessions have called a tool so far."""
    session_key(ctx)
    return len(sessions_seen)


@server.tool()
async def countdown(steps: int, ctx: Context) -> str:
    """Reports progress `steps` times and logs a line, then answers."""
    session_key(ctx)
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.01)
    await ctx.info("countdown finished")
    return "liftoff"


@server.prompt()
def greet(name: str) -> str:
    """A greeting."""
    return f"Say hello to {name}."


@server.resource("note://welcome")
def welcome() -> str:
    """A fixed note."""
    return "welcome aboard"


@server.resource("note://{name}")
def note(name: str) -> str:
    """A note by name."""
    return f"note {name}"


if __name__ == "__main__":
    server.run(transport="streamable-http")
