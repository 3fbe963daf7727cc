"""The tools of an MCP server someone else wrote, as tools of our registry.

Each imported tool's ``fn`` forwards the call over the ``ClientSession``: the arguments
go out exactly as given (the local schema validates nothing, so the upstream's own
validation is the one that counts), and the upstream's ``CallToolResult`` comes back as
the output. An ``isError`` result is a failure: :class:`ToolErrorResult` (so the
registry counts it and a Python caller gets ``ToolExecutionError``) that still holds the
result, which our MCP server hands back unchanged. This is the one forwarding path: the
``codex-tools proxy`` command is :func:`import_tools` plus ``build_server``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession

from codex_tools import (
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolHandle,
    ToolNotFoundError,
    ToolRegistry,
    default_registry,
)
from codex_tools.contrib.mcp._text import clean_text

__all__ = ["ToolErrorResult", "import_tools", "upstream_definition"]

logger = logging.getLogger("codex_tools.contrib.mcp")


class ToolErrorResult(Exception):
    """An upstream MCP tool answered with ``isError``; ``result`` is its answer.

    The message is the result's text, so ``metrics()["last_error"]`` shows what the
    upstream said. A Python caller sees it as the cause of a ``ToolExecutionError``.
    """

    def __init__(self, result: types.CallToolResult) -> None:
        text = "\n".join(
            block.text for block in result.content if isinstance(block, types.TextContent)
        )
        super().__init__(text or "the tool returned an error result")
        self.result = result


class _Forward:
    """The ``fn`` of an imported tool: calls go to the upstream, arguments untouched."""

    __slots__ = ("definition", "session")

    def __init__(self, session: ClientSession, definition: types.Tool) -> None:
        self.session = session
        self.definition = definition

    async def __call__(
        self, _codex_tools_context: ToolContext, **arguments: Any
    ) -> types.CallToolResult:
        # ``send_request`` rather than ``call_tool``: the result is handed on as the
        # upstream sent it, and checking it against the output schema is the client's job.
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(name=self.definition.name, arguments=arguments)
        )
        progress = _codex_tools_context.get("progress")
        if not getattr(progress, "requested", True):  # the upstream need not report
            progress = None
        result = await self.session.send_request(
            request, types.CallToolResult, progress_callback=progress
        )
        if result.is_error:
            raise ToolErrorResult(result)
        return result

    def __repr__(self) -> str:
        return f"<forward to MCP tool {self.definition.name!r}>"


def upstream_definition(tool: Tool) -> types.Tool | None:
    """How the upstream listed ``tool``, if it is an imported one."""
    fn = tool.fn
    return fn.definition if isinstance(fn, _Forward) else None


async def import_tools(
    session: ClientSession,
    registry: ToolRegistry | None = None,
    *,
    call_timeout: float | None = None,
) -> list[ToolHandle]:
    """Register every tool ``session`` lists (all pages) as a tool forwarding to it.

    Calls are forwarded, validated by the upstream and counted in ``registry`` (the
    default registry if ``None``). With a ``call_timeout`` (seconds) a call the upstream
    does not answer in time fails with ``ToolTimeoutError``, and the upstream is told
    to cancel it. Importing the same session again brings the registry in line with the
    upstream's list: changed tools are replaced and tools it no longer lists are
    removed. A name taken by any other tool raises
    :class:`~codex_tools.ToolAlreadyRegisteredError`; a tool that cannot be one of ours
    (an empty name, a name listed twice) is left out with a warning, so it costs only
    itself.
    """
    tools = default_registry() if registry is None else registry
    listed: list[types.Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        params = None if cursor is None else types.PaginatedRequestParams(cursor=cursor)
        page = await session.list_tools(params=params)
        listed.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None or cursor in seen:  # a repeated cursor would loop forever
            break
        seen.add(cursor)
    ours = {
        tool.name: tool
        for tool in tools.tools()
        if isinstance(tool.fn, _Forward) and tool.fn.session is session
    }
    handles: list[ToolHandle] = []
    names: set[str] = set()
    for definition in listed:
        try:
            if definition.name in names:
                raise ToolDefinitionError(f"tool {definition.name!r} is listed twice")
            tool = Tool(
                name=definition.name,
                fn=_Forward(session, definition),
                description=definition.description or "",
                parameters=definition.input_schema,
                timeout=call_timeout,
                annotations=definition.annotations,
            )
        except ToolDefinitionError as error:
            logger.warning("codex-tools: an MCP tool is left out: %s", clean_text(str(error)))
            continue
        names.add(definition.name)
        handles.append(tools.register(tool, replace=definition.name in ours))
    for name, tool in ours.items():
        if name not in names:
            with contextlib.suppress(ToolNotFoundError):  # someone else removed it first
                tools.deregister(tool)
    return handles
