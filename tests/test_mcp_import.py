"""`import_tools`: the tools of an MCP session as forwarding tools of a registry, and the
registry's server in front of them (the proxy's pieces, in process)."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from codex_tools import (
    ToolAlreadyRegisteredError,
    ToolExecutionError,
    ToolRegistry,
    telemetry,
    tool,
)
from codex_tools.contrib.mcp import ToolErrorResult, import_tools
from codex_tools.contrib.mcp._server import registry_server

TIMEOUT = 30


class Upstream:
    """An MCP server that lists its tools two a page and says back what it was sent."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.received: list[tuple[str, Any]] = []
        self.server: Server[Any] = Server(
            "upstream", on_list_tools=self.list_tools, on_call_tool=self.call_tool
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        start = int(params.cursor) if params is not None and params.cursor else 0
        page = self.names[start : start + 2]
        more = start + 2 < len(self.names)
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=name,
                    description=f"Tool {name}.",
                    input_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
                    annotations=types.ToolAnnotations(read_only_hint=True),
                )
                for name in page
            ],
            next_cursor=str(start + 2) if more else None,
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self.received.append((params.name, params.arguments))
        if params.name == "broken":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="it broke")], is_error=True
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text="ok")],
            structured_content={"got": params.arguments},
        )


async def test_every_page_is_imported_and_calls_are_forwarded_untouched() -> None:
    upstream = Upstream(["a", "b", "c", "d", "broken"])
    registry = ToolRegistry()
    with anyio.fail_after(TIMEOUT):
        async with Client(upstream.server) as client:
            handles = await import_tools(client.session, registry)
            # Not what the advertised schema says: the upstream's own validation decides.
            odd = {"n": "not a number", "extra-key": [1, {"x": None}]}
            result = await registry.ainvoke("c", odd)
            with pytest.raises(ToolExecutionError) as failed:
                await registry.ainvoke("broken", {})
    assert [handle.name for handle in handles] == ["a", "b", "c", "d", "broken"]
    assert registry.lookup("a").description == "Tool a."
    assert registry.lookup("a").annotations == {"readOnlyHint": True}  # for adapters too
    assert upstream.received == [("c", odd), ("broken", {})]
    assert result.structured_content == {"got": odd}
    assert isinstance(failed.value.__cause__, ToolErrorResult)
    assert failed.value.__cause__.result.is_error
    assert str(failed.value.__cause__) == "it broke"
    snapshot = registry.metrics()
    assert (snapshot["c"]["success"], snapshot["c"]["failure"]) == (1, 0)
    assert (snapshot["broken"]["success"], snapshot["broken"]["failure"]) == (0, 1)
    assert snapshot["broken"]["last_error"] == {"type": "ToolErrorResult", "message": "it broke"}


async def test_a_tool_that_cannot_be_one_of_ours_costs_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = Upstream(["a", "", "b", "a"])  # an empty name; a name listed twice
    registry = ToolRegistry()
    with anyio.fail_after(TIMEOUT):
        async with Client(upstream.server) as client:
            handles = await import_tools(client.session, registry)
    assert [handle.name for handle in handles] == ["a", "b"]
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 2
    assert "listed twice" in left_out[1]


async def test_importing_again_follows_the_upstream_and_leaves_other_tools_alone() -> None:
    upstream = Upstream(["a", "b", "c"])
    registry = ToolRegistry()

    @tool
    def mine() -> str:
        """A local tool."""
        return "mine"

    registry.register(mine)
    with anyio.fail_after(TIMEOUT):
        async with Client(upstream.server) as client:
            await import_tools(client.session, registry)
            upstream.names = ["a", "c", "e"]
            await import_tools(client.session, registry)
            upstream.names = ["mine"]
            with pytest.raises(ToolAlreadyRegisteredError):
                await import_tools(client.session, registry)
    assert sorted(each.name for each in registry.tools()) == ["a", "c", "e", "mine"]
    assert registry.lookup("mine").fn() == "mine"


async def test_served_again_they_are_listed_as_the_upstream_listed_them_and_metered() -> None:
    upstream = Upstream(["a", "broken"])
    registry = ToolRegistry()
    events = [("codex", "tool", "success"), ("codex", "tool", "failure")]
    with anyio.fail_after(TIMEOUT), telemetry.capture(*events) as captured:
        async with Client(upstream.server) as client:
            await import_tools(client.session, registry)

            async def tools() -> ToolRegistry:
                return registry

            proxy = registry_server(
                tools, "proxy", version="1", instructions=None, originator="mcp-proxy"
            )
            async with Client(proxy) as downstream:
                listed = (await downstream.list_tools()).tools
                theirs = (await client.list_tools()).tools
                good = await downstream.call_tool("a", {"n": 1})
                bad = await downstream.call_tool("broken", {})
    assert [each.model_dump() for each in listed] == [each.model_dump() for each in theirs]
    assert listed[0].annotations.read_only_hint is True
    assert good.structured_content == {"got": {"n": 1}}
    assert bad.is_error
    assert bad.content[0].text == "it broke"  # the upstream's result, not our error text
    assert [event.metadata["originator"] for event in captured] == ["mcp-proxy"] * 2
    assert all(event.metadata["call_id"] for event in captured)
    assert [event.event[-1] for event in captured] == ["success", "failure"]
