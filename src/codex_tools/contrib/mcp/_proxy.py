"""``codex-tools proxy``: an MCP server in front of another one, metering every call.

Built from the two halves the library already has: :func:`import_tools` makes the
upstream's tools forwarding tools of a registry, and the registry's MCP server serves
them (``originator="mcp-proxy"``). Resources, prompts and completions, which are not
tools, are forwarded request by request. What the upstream sends unasked
(``tools/list_changed``, other list changes, resource updates, log messages) is passed
on; a changed tool list is imported again first.

The upstream's life is the proxy's: when it cannot start (within
:data:`STARTUP_TIMEOUT`), every request gets a JSON-RPC error saying so; when it exits
or crashes, the calls in flight get error results, stderr says how it ended, and the
proxy exits with status 1. It does not restart the upstream: state the upstream held
(open resources, subscriptions) would be lost without the client knowing, and MCP
clients restart a server that exited on their own terms.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.session import ClientSession, IncomingMessage
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from codex_tools import ToolRegistry, __version__
from codex_tools.contrib.mcp._forward import import_tools
from codex_tools.contrib.mcp._server import registry_server
from codex_tools.contrib.mcp._stdio import encode, serve_over_stdio

__all__ = ["STARTUP_TIMEOUT", "serve_proxy"]

logger = logging.getLogger("codex_tools.contrib.mcp")

#: Seconds the upstream has to answer ``initialize`` and ``tools/list``.
STARTUP_TIMEOUT = 60.0
#: Seconds the calls in flight have to be answered once the upstream is gone.
_DRAIN_TIMEOUT = 2.0
#: Seconds the upstream has to exit after its stdin closes, or after SIGTERM.
_STOP_TIMEOUT = 2.0


async def serve_proxy(
    command: list[str],
    registry: ToolRegistry,
    *,
    name: str | None = None,
    on_ready: Callable[[], None] = lambda: None,
) -> int:
    """Serve ``command``'s MCP server over stdio, its tools metered in ``registry``.

    Returns the exit status: 0 when the client closed stdin, 1 when the upstream could
    not start or ended first.
    """
    try:
        process = await anyio.open_process(
            command, stdin=-1, stdout=-1, stderr=None, start_new_session=True
        )
    except OSError as error:
        reason = f"cannot start the upstream MCP server {command[0]!r}: {error.strerror or error}"
        return await _serve_failure(reason)
    try:
        return await _proxy(process, registry, name, on_ready)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)


async def _proxy(
    process: anyio.abc.Process,
    registry: ToolRegistry,
    name: str | None,
    on_ready: Callable[[], None],
) -> int:
    upstream_read, session_read = anyio.create_memory_object_stream[SessionMessage | Exception](
        math.inf
    )
    session_write, upstream_write = anyio.create_memory_object_stream[SessionMessage](math.inf)
    downstream = _Downstream()
    gone = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_pump_from_upstream, process, upstream_read, gone)
        tasks.start_soon(_pump_to_upstream, process, upstream_write)
        relay = _Relay(registry, downstream)
        async with ClientSession(session_read, session_write, message_handler=relay) as session:
            relay.session = session
            try:
                with anyio.fail_after(STARTUP_TIMEOUT):
                    started = await _start(session, registry, gone)
            except (MCPError, TimeoutError, _UpstreamGone) as error:
                tasks.cancel_scope.cancel()
                return await _serve_failure(await _why_not_started(process, error))
            server = _server(session, started, registry, name, downstream)
            on_ready()
            options = server.create_initialization_options(_notifications(started.capabilities))
            serving = anyio.Event()

            async def serve() -> None:
                await serve_over_stdio(server, options)
                serving.set()

            tasks.start_soon(serve)
            async with anyio.create_task_group() as watch:
                watch.start_soon(_set_when, serving, watch.cancel_scope)
                watch.start_soon(_set_when, gone, watch.cancel_scope)
            if serving.is_set():
                tasks.cancel_scope.cancel()
                return 0
            # The upstream went first: answer what is in flight, then say so and stop.
            with anyio.move_on_after(_DRAIN_TIMEOUT):
                await downstream.drained()
            code = await _exit_code(process)
            print(
                f"codex-tools: the upstream MCP server exited ({code}); stopping", file=sys.stderr
            )
            tasks.cancel_scope.cancel()
            return 1
    return 1  # pragma: no cover  (the task group returns above)


class _UpstreamGone(Exception):
    """The upstream closed its stdout before it was ready."""


class _Started:
    def __init__(self, result: types.InitializeResult) -> None:
        self.capabilities = result.capabilities
        self.info = result.server_info
        self.instructions = result.instructions


async def _start(session: ClientSession, registry: ToolRegistry, gone: anyio.Event) -> _Started:
    async with anyio.create_task_group() as tasks:
        outcome: list[_Started] = []

        async def start() -> None:
            result = await session.initialize()
            if result.capabilities.tools is not None:
                await import_tools(session, registry)
            outcome.append(_Started(result))
            tasks.cancel_scope.cancel()

        async def watch() -> None:
            await gone.wait()
            raise _UpstreamGone

        tasks.start_soon(start)
        tasks.start_soon(watch)
    if not outcome:
        raise _UpstreamGone
    return outcome[0]


async def _set_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _server(
    session: ClientSession,
    started: _Started,
    registry: ToolRegistry,
    name: str | None,
    downstream: _Downstream,
) -> Server[Any]:
    async def tools() -> ToolRegistry:
        return registry

    server = registry_server(
        tools,
        name or started.info.name,
        version=started.info.version or __version__,
        instructions=started.instructions,
        originator="mcp-proxy",
    )
    # Only ours: the SDK's OpenTelemetry span per message costs the proxy more than the
    # call it forwards, and our registry reports each call already.
    server.middleware = [downstream]
    capabilities = started.capabilities
    forwarded: list[tuple[bool, str, type[Any], type[Any], type[Any]]] = [
        (
            capabilities.resources is not None,
            "resources/list",
            types.PaginatedRequestParams,
            types.ListResourcesRequest,
            types.ListResourcesResult,
        ),
        (
            capabilities.resources is not None,
            "resources/templates/list",
            types.PaginatedRequestParams,
            types.ListResourceTemplatesRequest,
            types.ListResourceTemplatesResult,
        ),
        (
            capabilities.resources is not None,
            "resources/read",
            types.ReadResourceRequestParams,
            types.ReadResourceRequest,
            types.ReadResourceResult,
        ),
        (
            bool(capabilities.resources and capabilities.resources.subscribe),
            "resources/subscribe",
            types.SubscribeRequestParams,
            types.SubscribeRequest,
            types.EmptyResult,
        ),
        (
            bool(capabilities.resources and capabilities.resources.subscribe),
            "resources/unsubscribe",
            types.UnsubscribeRequestParams,
            types.UnsubscribeRequest,
            types.EmptyResult,
        ),
        (
            capabilities.prompts is not None,
            "prompts/list",
            types.PaginatedRequestParams,
            types.ListPromptsRequest,
            types.ListPromptsResult,
        ),
        (
            capabilities.prompts is not None,
            "prompts/get",
            types.GetPromptRequestParams,
            types.GetPromptRequest,
            types.GetPromptResult,
        ),
        (
            capabilities.completions is not None,
            "completion/complete",
            types.CompleteRequestParams,
            types.CompleteRequest,
            types.CompleteResult,
        ),
    ]
    for offered, method, params_type, request_type, result_type in forwarded:
        if offered:
            server.add_request_handler(
                method, params_type, _forwarder(session, request_type, result_type)
            )
    return server


def _forwarder(
    session: ClientSession, request_type: type[Any], result_type: type[Any]
) -> Callable[[ServerRequestContext[Any], Any], Awaitable[Any]]:
    async def forward(ctx: ServerRequestContext[Any], params: Any) -> Any:
        return await session.send_request(request_type(params=params), result_type)

    return forward


def _notifications(capabilities: types.ServerCapabilities) -> NotificationOptions:
    return NotificationOptions(
        prompts_changed=bool(capabilities.prompts and capabilities.prompts.list_changed),
        resources_changed=bool(capabilities.resources and capabilities.resources.list_changed),
        tools_changed=bool(capabilities.tools and capabilities.tools.list_changed),
    )


class _Downstream:
    """Server middleware: keeps the client's session for notifications, counts requests."""

    def __init__(self) -> None:
        self.session: ServerSession | None = None
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        self.session = ctx.session
        if ctx.request_id is None:
            return await call_next(ctx)
        self._in_flight += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        try:
            return await call_next(ctx)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()
        await anyio.sleep(0.05)  # the answers just made still have to be written


class _Relay:
    """The upstream session's message handler: what the upstream says unasked, passed on."""

    def __init__(self, registry: ToolRegistry, downstream: _Downstream) -> None:
        self.registry = registry
        self.downstream = downstream
        self.session: ClientSession | None = None

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.warning("codex-tools: the upstream MCP server sent a bad message: %s", message)
            return
        notification = message
        if isinstance(notification, types.ToolListChangedNotification) and self.session is not None:
            await import_tools(self.session, self.registry)
        session = self.downstream.session
        if session is not None and isinstance(notification, _PASSED_ON):
            await session.send_notification(notification)


_PASSED_ON = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceUpdatedNotification,
    types.LoggingMessageNotification,
)


async def _pump_from_upstream(
    process: anyio.abc.Process,
    messages: MemoryObjectSendStream[SessionMessage | Exception],
    gone: anyio.Event,
) -> None:
    assert process.stdout is not None
    try:
        async with messages:
            async for line in _lines(process.stdout):
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError as error:
                    await messages.send(error)
                else:
                    await messages.send(SessionMessage(message))
    finally:
        gone.set()


async def _lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[str]:
    pending = b""
    while True:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode("utf-8", "replace")


async def _pump_to_upstream(
    process: anyio.abc.Process, messages: MemoryObjectReceiveStream[SessionMessage]
) -> None:
    assert process.stdin is not None
    async with messages:
        async for message in messages:
            data = encode(message)
            try:
                await process.stdin.send(data)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                return


async def _stop(process: anyio.abc.Process) -> None:
    """Close the upstream's stdin, then SIGTERM and SIGKILL its process group, bounded."""
    if process.stdin is not None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
        if await _exited(process):
            return


async def _exited(process: anyio.abc.Process) -> bool:
    with anyio.move_on_after(_STOP_TIMEOUT):
        await process.wait()
    return process.returncode is not None


async def _exit_code(process: anyio.abc.Process) -> str:
    await _exited(process)
    code = process.returncode
    if code is None:
        return "it closed its stdout"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


async def _why_not_started(process: anyio.abc.Process, error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"the upstream MCP server did not answer initialize within {STARTUP_TIMEOUT:g} s"
    if isinstance(error, MCPError):
        return f"the upstream MCP server refused to start: {error.message}"
    return f"the upstream MCP server ended before it was ready ({await _exit_code(process)})"


async def _serve_failure(reason: str) -> int:
    """Say on stderr why, answer every request with that error until stdin closes, exit 1."""
    print(f"codex-tools: error: {reason}", file=sys.stderr, flush=True)

    async def refuse(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:
            return None
        raise MCPError(code=types.INTERNAL_ERROR, message=f"codex-tools proxy: {reason}")

    server: Server[Any] = Server("codex-tools-proxy", version=__version__)
    server.middleware.append(refuse)
    await serve_over_stdio(server, server.create_initialization_options())
    return 1
