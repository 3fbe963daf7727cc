"""Our registry as an MCP server: ``tools/list`` and ``tools/call`` over the registry.

This uses the low-level ``mcp.server.lowlevel.Server``: its decorator-based sibling
``MCPServer`` derives each schema from a Python signature, while ours already come from
the registry. The tool list is read on every ``tools/list``, so tools registered after
the server started are served too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import methods
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from codex_tools import Tool, ToolError, ToolNotFoundError, ToolRegistry, __version__
from codex_tools import default_registry as _default_registry
from codex_tools.contrib.mcp._forward import ToolErrorResult, upstream_definition
from codex_tools.contrib.mcp._text import clean_text, safe_str

__all__ = ["build_server", "registry_server", "tool_result"]

logger = logging.getLogger("codex_tools.contrib.mcp")

_CONTENT = (
    types.TextContent,
    types.ImageContent,
    types.AudioContent,
    types.ResourceLink,
    types.EmbeddedResource,
)
#: How long a sync tool's thread waits for its progress notification to be sent.
_PROGRESS_SEND_TIMEOUT = 5.0


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
    tools = _default_registry() if registry is None else registry

    async def fixed() -> ToolRegistry:
        return tools

    return registry_server(fixed, name, version=version, instructions=instructions)


def registry_server(
    registry: Callable[[], Awaitable[ToolRegistry]],
    name: str,
    *,
    version: str,
    instructions: str | None,
    originator: str = "mcp",
) -> Server[Any]:
    """:func:`build_server` for a registry that may arrive after the server starts.

    ``registry()`` is awaited before every ``tools/*`` request, so ``codex-tools mcp``
    answers ``initialize`` while the tools module is still being imported. Calls are
    counted with ``originator`` (``"mcp-proxy"`` for the proxy).
    """
    left_out: set[str] = set()  # tools already reported as unlistable
    known: list[ToolRegistry] = []  # the registry once it is there, for sync callers

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if params is not None and params.cursor is not None:
            # One page holds every tool, so no cursor was ever handed out.
            raise MCPError(code=types.INVALID_PARAMS, message="Invalid cursor")
        listed = []
        tools = await registry()
        known[:] = [tools]
        # A tool switched off for good is not offered; a predicate decides per call.
        for tool in tools.tools():
            if tool.enabled is False:
                continue
            entry = _listable(_definition(tool), ctx.protocol_version)
            if entry is not None:
                listed.append(entry)
            elif tool.name not in left_out:
                left_out.add(tool.name)
                logger.warning(
                    "codex-tools: tool %r is not listed: MCP rejects its schema "
                    "(an input schema must be a JSON Schema object)",
                    clean_text(tool.name),
                )
        return types.ListToolsResult(tools=listed)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        context = {
            "originator": originator,
            "call_id": None if ctx.request_id is None else str(ctx.request_id),
            "progress": _Progress(ctx.session, requested=_progress_requested(ctx)),
        }
        tools = await registry()
        known[:] = [tools]
        try:
            output = await tools.ainvoke(params.name, params.arguments or {}, context)
        except ToolNotFoundError:
            raise MCPError(
                code=types.INVALID_PARAMS, message=f"Unknown tool: {clean_text(params.name)}"
            ) from None
        except ToolError as error:
            if isinstance(error.__cause__, ToolErrorResult):
                return error.__cause__.result  # an upstream's own answer, handed back as it came
            return _error_result(error)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:  # noqa: BLE001  (SystemExit and the like from a tool: a host survives its tools)
            return _error_result(error)
        try:
            return tool_result(output)
        except Exception as error:  # noqa: BLE001  (an output that breaks even str(): still answered)
            return _text_result(
                f"the output could not be sent: {_error_text(error)}", is_error=True
            )

    def input_schema(tool_name: str) -> Mapping[str, Any] | None:
        # Used by the Streamable HTTP transport to check request headers against the schema.
        try:
            return known[0].lookup(tool_name).parameters if known else None
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


def tool_result(output: Any) -> types.CallToolResult:
    """A tool's output as MCP content: text for every client, structured where it fits.

    MCP content (a block, a list of blocks, a whole ``CallToolResult``) goes out as it
    is. A string is sent as it is; a JSON-able value (pydantic models and dataclasses
    included) as JSON text, and a JSON object also as ``structuredContent``; anything
    else as ``str(output)``. Text UTF-8 cannot carry has U+FFFD in place of each lone
    surrogate.
    """
    if isinstance(output, types.CallToolResult):
        return output
    if isinstance(output, _CONTENT):
        return types.CallToolResult(content=[output])
    if isinstance(output, list | tuple) and output and all(isinstance(x, _CONTENT) for x in output):
        return types.CallToolResult(content=list(output))
    if isinstance(output, str):
        return _text_result(clean_text(output))
    try:
        value = to_jsonable_python(output)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError, RecursionError):
        return _text_result(safe_str(output))
    cleaned = clean_text(text)
    if cleaned is not text:
        value = json.loads(cleaned)
    # Protocol versions before 2026-07-28 allow only an object as structured content.
    structured = value if isinstance(value, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=cleaned)], structured_content=structured
    )


def _text_result(text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], is_error=is_error
    )


def _error_result(error: BaseException) -> types.CallToolResult:
    return _text_result(_error_text(error), is_error=True)


def _error_text(error: BaseException) -> str:
    if isinstance(error, ToolError):
        return safe_str(error)
    # Only what escaped the registry lands here (SystemExit before it counted as a failure).
    return f"{type(error).__name__}: {safe_str(error)}"


def _definition(tool: Tool) -> types.Tool:
    """How ``tools/list`` shows a tool: an imported one as its upstream listed it."""
    upstream = upstream_definition(tool)
    if upstream is not None:
        return (
            upstream
            if upstream.name == tool.name
            else upstream.model_copy(update={"name": tool.name})
        )
    annotations = tool.annotations
    return types.Tool(
        name=tool.name,
        # Clients (and the conformance suite) expect every tool to say something.
        description=tool.description or f"The {tool.name} tool.",
        input_schema=dict(tool.parameters),
        annotations=None if annotations is None else types.ToolAnnotations(**dict(annotations)),
    )


def _listable(definition: types.Tool, version: str) -> types.Tool | None:
    """The definition if the protocol version accepts it, so one bad tool hides only itself."""
    dumped = definition.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        methods.serialize_server_result("tools/list", version, {"tools": [dumped]})
    except ValidationError as error:
        # Only the tool is checked here; the envelope's fields are the runner's to fill.
        if any(problem["loc"][:1] == ("tools",) for problem in error.errors()):
            return None
    except (KeyError, ValueError):  # a version the surface does not know: nothing to check
        pass
    return definition


def _progress_requested(ctx: ServerRequestContext[Any]) -> bool:
    meta = ctx.meta
    return meta is not None and meta.get("progress_token") is not None


class _Progress:
    """``ctx["progress"](progress, total=None, message=None)`` for a tool called over MCP.

    In the event loop (an async tool) the notification is scheduled and the task that
    sends it returned, to await or not; in a worker thread (a sync tool) it is sent
    before the call returns ``None``. Without a progress token from the client it sends
    nothing.
    """

    __slots__ = ("_loop", "_sending", "_session", "requested")

    def __init__(self, session: ServerSession, *, requested: bool) -> None:
        self.requested = requested  # did the client ask? (a forwarded call asks only then)
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._sending: set[asyncio.Task[None]] = set()  # a task nobody holds may vanish

    def __call__(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> asyncio.Task[None] | None:
        text = None if message is None else clean_text(message)
        try:
            in_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            task = self._loop.create_task(self._session.report_progress(progress, total, text))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return task
        try:
            send = self._session.report_progress(progress, total, text)
            sent = asyncio.run_coroutine_threadsafe(send, self._loop)
            sent.result(_PROGRESS_SEND_TIMEOUT)
        except Exception:  # noqa: BLE001  (a lost progress note must not fail the tool)
            pass
        return None

    def __repr__(self) -> str:
        return "<MCP progress reporter>"
