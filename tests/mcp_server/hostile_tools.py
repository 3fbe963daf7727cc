"""Tools that misbehave the way real ones do, for the MCP server and proxy tests.

Text is passed as code points, so a test can send what JSON cannot carry (a lone
surrogate) to be made here, inside the tool.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import threading
import time

import mcp_types as types

from codex_tools import Tool, ToolContext, ToolRegistry, tool
from codex_tools.contrib.mcp import ToolErrorResult

print("hostile_tools: importing", flush=True)
sys.stdout.write("hostile_tools: written to sys.stdout at import\n")
os.write(1, b"hostile_tools: written to fd 1 at import\n")
atexit.register(print, "hostile_tools: printed at exit")


def _chatter() -> None:
    while True:
        print("hostile_tools: a thread printing")
        time.sleep(0.05)


threading.Thread(target=_chatter, daemon=True).start()


def _text(codepoints: list[int], repeat: int) -> str:
    return "".join(map(chr, codepoints)) * repeat


@tool
def echo(codepoints: list[int], repeat: int = 1) -> str:
    """Say the text back."""
    return _text(codepoints, repeat)


@tool
def fail(codepoints: list[int], repeat: int = 1) -> None:
    """Raise with the text as the message."""
    raise RuntimeError(_text(codepoints, repeat))


@tool
def file_names() -> list[str]:
    """Names as os.listdir gives them for bytes that are not UTF-8."""
    return [b"caf\xe9.txt".decode("utf-8", "surrogateescape"), "plain.txt"]


@tool
def not_json() -> dict[str, object]:
    """A value JSON cannot hold."""
    return {"nan": float("nan"), (1, 2): "tuple key"}


class _Unprintable:
    """Even asking what it is fails (isinstance falls back to ``__class__``)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no questions")


@tool
def unprintable() -> object:
    """An output that breaks whatever is done with it."""
    return _Unprintable()


@tool
def exits(code: int) -> None:
    """An argparse-style tool: SystemExit on bad input."""
    sys.exit(code)


@tool
def picture() -> types.ImageContent:
    """An image, as MCP content."""
    return types.ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")


@tool
async def slow(steps: int, ctx: ToolContext) -> str:
    """Report progress at each step, a tenth of a second apart."""
    for step in range(1, steps + 1):
        await ctx["progress"](step, steps, f"step {step}")
        await asyncio.sleep(0.1)
    return "done"


@tool
def progress_asked(ctx: ToolContext) -> bool:
    """Whether the caller asked for progress (the reporter knows)."""
    return bool(getattr(ctx.get("progress"), "requested", False))


@tool
def slow_sync(steps: int, ctx: ToolContext) -> str:
    """The same from a sync tool, in its worker thread."""
    for step in range(1, steps + 1):
        ctx["progress"](step, steps)
    return "done"


@tool
def refuse() -> None:
    """Fail with a result of its own making."""
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text="no access")],
        structured_content={"reason": "denied"},
        is_error=True,
    )
    raise ToolErrorResult(result)


@tool
def nap(seconds: float) -> str:
    """Block a worker thread, as a stuck sync tool does."""
    time.sleep(seconds)
    return "rested"


@tool
def crash() -> None:
    """The whole server dies mid-call."""
    os._exit(3)


@tool
def counts() -> dict[str, list[int]]:
    """What this server counted so far: tool -> [success, failure]."""
    return {name: [m["success"], m["failure"]] for name, m in registry.metrics().items()}


def _undocumented(x: int) -> int:
    return x


TOOLS = (
    echo,
    fail,
    file_names,
    not_json,
    unprintable,
    exits,
    picture,
    slow,
    slow_sync,
    progress_asked,
    refuse,
    nap,
    crash,
)
#: What is served: some tools are not module-level ``Tool`` objects.
registry = ToolRegistry()
for each in (*TOOLS, counts):
    registry.register(each)
registry.register(Tool(name="undocumented", fn=_undocumented))
# A name made from a file name that is not UTF-8: UTF-8 cannot carry it as it is.
registry.register(Tool(name="caf\udce9", fn=_undocumented, description="Not UTF-8."))
# A hand-written schema that is not an object schema: MCP rejects it.
registry.register(Tool(name="bad_schema", fn=_undocumented, parameters={"type": "integer"}))
