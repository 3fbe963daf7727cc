"""The Model Context Protocol (MCP), both ways.

Serve the tools of a registry to any MCP client (Codex CLI, Claude Code, an IDE)::

    from codex_tools.contrib.mcp import serve_stdio

    serve_stdio()                      # the default registry, over stdin/stdout

and meter the tools of an MCP server someone else wrote::

    tools = await import_tools(session)   # every tool the session lists, registered

Served tools are listed with their registry name, description, JSON Schema and
annotations; every call goes through ``ToolRegistry.ainvoke`` with
``originator="mcp"`` and the JSON-RPC request id as ``call_id``. What the server
promises whatever a tool does:

- A failing tool (it raised, timed out, took bad arguments, was disabled, or raised
  ``SystemExit``) answers with an ``isError`` result carrying the error text. An
  unknown tool, and a ``tools/list`` cursor the server never handed out, are JSON-RPC
  errors ``-32602`` (spec 2025-11-25).
- Text that UTF-8 cannot carry (a lone surrogate, as ``os.listdir`` returns for a
  file name that is not UTF-8) goes out with U+FFFD in its place; a value JSON cannot
  hold goes out as its ``str()``. Outputs are passed through whatever their size:
  clients cap what they show the model (Codex CLI and Claude Code both truncate).
- A tool whose hand-written schema the protocol rejects (no ``"type": "object"``) is
  left out of ``tools/list`` with one warning on stderr; the other tools are listed.
- A tool that takes a :class:`~codex_tools.ToolContext` can report progress with
  ``ctx["progress"](progress, total=None, message=None)``: awaited in an async tool,
  called in a sync tool (which runs in a worker thread). It sends
  ``notifications/progress`` when the client asked for progress, and is a no-op
  otherwise.
- A tool may return MCP content (``mcp_types.ImageContent``, ``AudioContent``,
  ``EmbeddedResource``, ``ResourceLink``, a list of them, or a whole
  ``CallToolResult``), which goes out as it is; ``raise ToolErrorResult(result)``
  sends its ``CallToolResult`` as it is and counts a failure.

Imported tools forward each call untouched (the upstream validates it) and hand the
upstream's ``CallToolResult`` back; served again by :func:`build_server` (as the
``codex-tools proxy`` command does), they are listed as the upstream listed them.
"""

from __future__ import annotations

try:
    import mcp_types  # noqa: F401  (the probe: is the extra installed?)
    from mcp.server.lowlevel import Server  # noqa: F401
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.mcp needs the MCP SDK: pip install 'codex-tools[mcp]'"
    ) from error

from codex_tools.contrib.mcp._forward import ToolErrorResult, import_tools
from codex_tools.contrib.mcp._server import build_server, tool_result
from codex_tools.contrib.mcp._stdio import aserve_stdio, serve_stdio

__all__ = [
    "ToolErrorResult",
    "aserve_stdio",
    "build_server",
    "import_tools",
    "serve_stdio",
    "tool_result",
]
