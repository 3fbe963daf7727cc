"""Serve the tools of a registry over the Model Context Protocol (MCP).

Any MCP client (Codex CLI, Claude Code, an IDE) can then list and call them::

    from codex_tools.contrib.mcp import serve_stdio

    serve_stdio()                      # the default registry, over stdin/stdout

Tools are listed with their registry name, description and JSON Schema as they are,
so what the client validates against is what the registry validates against. Every
call goes through ``ToolRegistry.ainvoke``, so metrics and telemetry record it with
``originator="mcp"`` and the JSON-RPC request id as ``call_id``. A tool that fails in
any way the registry knows of (unknown tool, bad arguments, the tool raised or timed
out) answers with an ``isError`` result that carries the error text, which the model
can read and act on; the server goes on serving.

The tool list is read on every ``tools/list``, so tools registered after the server
started are served too. This uses the low-level ``mcp.server.lowlevel.Server``: its
decorator-based sibling ``MCPServer`` derives each schema from a Python signature,
while ours already come from the registry.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from typing import Any

try:
    import anyio
    import mcp_types as types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.mcp needs the MCP SDK: pip install 'codex-tools[mcp]'"
    ) from error

from pydantic_core import PydanticSerializationError, to_jsonable_python

from codex_tools import ToolError, ToolRegistry, __version__, default_registry

__all__ = ["aserve_stdio", "build_server", "serve_stdio", "tool_result"]


def build_server(
    registry: ToolRegistry | None = None,
    name: str = "codex-tools",
    *,
    version: str = __version__,
    instructions: str | None = None,
) -> Server[Any]:
    """An MCP server for the tools of ``registry`` (the default registry if ``None``).

    Run it with :func:`aserve_stdio`, or on any transport the ``mcp`` package offers
    (``server.run(read, write, server.create_initialization_options())``,
    ``server.streamable_http_app()``).
    """
    tools = default_registry() if registry is None else registry

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description or None,
                    input_schema=dict(tool.parameters),
                )
                # A tool switched off for good is not offered; a predicate decides per call.
                for tool in tools.tools()
                if tool.enabled is not False
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        context = {"originator": "mcp", "call_id": _call_id(ctx)}
        try:
            output = await tools.ainvoke(params.name, params.arguments or {}, context)
        except ToolError as error:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(error))], is_error=True
            )
        return tool_result(output)

    def input_schema(tool_name: str) -> Mapping[str, Any] | None:
        # Used by the Streamable HTTP transport to check request headers against the schema.
        try:
            return tools.lookup(tool_name).parameters
        except ToolError:
            return None

    return Server(
        name,
        version=version,
        instructions=instructions,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def aserve_stdio(
    registry: ToolRegistry | None = None,
    name: str = "codex-tools",
    *,
    version: str = __version__,
    instructions: str | None = None,
) -> None:
    """Serve ``registry`` over stdin and stdout until the client closes stdin.

    While it serves, ``sys.stdout`` and the process's stdout point at stderr, so a
    stray ``print`` in a tool (or a child process it starts) cannot corrupt the protocol.
    """
    server = build_server(registry, name, version=version, instructions=instructions)
    async with stdio_server() as (read_stream, write_stream):
        # The mcp package points fd 1 at stderr while it serves, but text a tool prints
        # can wait in sys.stdout's buffer until exit, when fd 1 is the wire again.
        with contextlib.redirect_stdout(sys.stderr):
            await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_stdio(
    registry: ToolRegistry | None = None,
    name: str = "codex-tools",
    *,
    version: str = __version__,
    instructions: str | None = None,
) -> None:
    """Blocking :func:`aserve_stdio`, for a script's last line."""
    anyio.run(lambda: aserve_stdio(registry, name, version=version, instructions=instructions))


def tool_result(output: Any) -> types.CallToolResult:
    """A tool's output as MCP content: text for every client, structured where it fits.

    A string is sent as it is; a JSON-able value (pydantic models and dataclasses
    included) as JSON text, and a JSON object also as ``structuredContent``; anything
    else as ``str(output)``.
    """
    if isinstance(output, str):
        return types.CallToolResult(content=[types.TextContent(type="text", text=output)])
    try:
        value = to_jsonable_python(output)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError):
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(output))])
    # Protocol versions before 2026-07-28 allow only an object as structured content.
    structured = value if isinstance(value, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def _call_id(ctx: ServerRequestContext[Any]) -> str | None:
    return None if ctx.request_id is None else str(ctx.request_id)
