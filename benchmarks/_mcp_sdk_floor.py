"""``python -m benchmarks._mcp_sdk_floor COMMAND [ARG...]``: the floor under ``codex-tools proxy``.

The ``mcp`` SDK's lowlevel ``Server`` in front of a ``ClientSession`` to COMMAND, on the
same pipes and event loop the proxy uses (``Inbox``, ``PipeWriter``), with nothing of
ours in between: no registry, no metering, no relay of notifications. What the proxy
adds over this is what codex-tools costs; the rest is the SDK's per-message work.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.lowlevel import Server

from codex_tools._runners import new_server_loop
from codex_tools.contrib.mcp._stdio import Inbox, PipeWriter, serve_over_stdio
from codex_tools.contrib.mcp._upstream import read_upstream, stop


async def serve(upstream: subprocess.Popen[bytes]) -> None:
    assert upstream.stdin is not None
    assert upstream.stdout is not None
    inbox = Inbox()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_upstream, upstream.stdout.fileno(), inbox, anyio.Event())
        async with ClientSession(inbox, PipeWriter(upstream.stdin.fileno())) as session:
            await session.initialize()
            listed = await session.list_tools()

            async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
                return listed

            async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
                request = types.CallToolRequest(params=params)
                return await session.send_request(request, types.CallToolResult)

            server: Server[Any] = Server(
                "sdk-floor", on_list_tools=list_tools, on_call_tool=call_tool
            )
            server.middleware = []  # as the proxy: no OpenTelemetry span per message
            await serve_over_stdio(server, server.create_initialization_options())
        tasks.cancel_scope.cancel()
    await stop(upstream)


if __name__ == "__main__":
    upstream = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # The proxy's own event loop (uvloop where installed), so the two compare like for like.
    anyio.run(serve, upstream, backend_options={"loop_factory": new_server_loop})
