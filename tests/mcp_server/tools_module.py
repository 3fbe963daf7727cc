"""Tools that the MCP tests serve: its ``@tool`` functions, which importing it also
registers on the default registry (the tests compare what is served with those).

It prints on import and in a tool, as real modules do, to show that nothing but the
protocol reaches the server's stdout.
"""

from __future__ import annotations

import codex_tools
from codex_tools import ToolContext, ToolRegistry, tool

print("tools_module: registering tools")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    print(f"adding {a} and {b}")
    return a + b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


@tool
async def describe_call(topic: str, ctx: ToolContext) -> dict[str, object]:
    """Say who called, with what id, about what."""
    return {"topic": topic, "originator": ctx.get("originator"), "call_id": ctx.get("call_id")}


for each in (add, divide, describe_call):
    codex_tools.register(each)

not_a_registry = 42
empty = ToolRegistry()
