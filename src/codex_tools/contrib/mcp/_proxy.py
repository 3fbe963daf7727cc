"""``codex-tools proxy``: an MCP server in front of another one, metering every call.

Built from the two halves the library already has: :func:`import_tools` makes the
upstream's tools forwarding tools of a registry, and the registry's MCP server serves
them (``originator="mcp-proxy"``). Resources, prompts and completions, which are not
tools, are forwarded request by request. What the upstream sends unasked (list
changes, resource updates, log messages) is passed on; a changed tool list is imported
again first. Progress and cancellation of a call travel with the call itself.

The upstream's life is the proxy's: when it cannot start, or does not answer
``initialize`` and list its tools in time (``startup_timeout``), every request gets a
JSON-RPC error saying so; when it exits or crashes, the calls in flight get error
results, stderr says how it ended, and the proxy exits with status 1. It does not restart the
upstream: state the upstream held (open resources, subscriptions, anything a tool
remembers) would be lost without the client knowing, and MCP clients restart a server
that exited on their own terms.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry import trace

from codex_tools import ToolRegistry, __version__
from codex_tools.contrib.mcp._forward import import_tools
from codex_tools.contrib.mcp._server import registry_server
from codex_tools.contrib.mcp._stdio import Inbox, PipeWriter, serve_over_stdio
from codex_tools.contrib.mcp._upstream import how_it_ended, read_upstream, stop

__all__ = ["STARTUP_TIMEOUT", "serve_failure", "serve_proxy", "trace_nothing"]

logger = logging.getLogger("codex_tools.contrib.mcp")

#: Seconds the upstream has to answer ``initialize`` and list its tools, by default.
STARTUP_TIMEOUT = 60.0
#: Seconds the calls in flight have to be answered once the upstream is gone.
_DRAIN_TIMEOUT = 2.0


async def serve_proxy(
    upstream: subprocess.Popen[bytes],
    registry: ToolRegistry,
    *,
    name: str | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
    call_timeout: float | None = None,
    on_ready: Callable[[], None] = lambda: None,
) -> int:
    """Serve the ``upstream`` MCP server over our stdio, its tools metered in ``registry``.

    Returns the exit status: 0 when the client closed stdin, 1 when the upstream did not
    start or ended first. The upstream is stopped on the way out, whatever the way.
    ``call_timeout`` bounds each tool call (see ``import_tools``).
    """
    try:
        return await _proxy(upstream, registry, name, startup_timeout, call_timeout, on_ready)
    finally:
        with anyio.CancelScope(shield=True):
            await stop(upstream)


def trace_nothing() -> None:
    """Make the ``mcp`` SDK's OpenTelemetry span per request free, where nobody traces.

    ``ClientSession.send_request`` opens a span and injects its context for every request
    sent upstream. With no tracer provider set, the span records nothing and the context
    it injects is empty, yet going through the API's default (proxy) tracer costs about
    4% of the proxy's instructions per call. So the ``codex-tools proxy`` process, when nothing has
    set a provider by the time it serves, sets one whose spans cost nothing. Not for a
    library user: a process has one provider, set once.
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(_Untraced())


class _NoSpan(trace.NoOpTracer):
    _current = contextlib.nullcontext(trace.INVALID_SPAN)

    # The API's own no-op tracer builds a generator-based context manager and sets the
    # (invalid) span as current, a context switch for nothing; one shared null context
    # does what a caller can observe: a span that records nothing, and no context change.
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current


class _Untraced(trace.NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _NoSpan()


async def serve_failure(reason: str) -> int:
    """Say on stderr why, answer every request with that error until stdin closes, exit 1."""
    print(f"codex-tools: error: {reason}", file=sys.stderr, flush=True)

    async def refuse(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:
            return None
        raise MCPError(code=types.INTERNAL_ERROR, message=f"codex-tools proxy: {reason}")

    server: Server[Any] = Server("codex-tools-proxy", version=__version__)
    server.middleware = [refuse]
    await serve_over_stdio(server, server.create_initialization_options())
    return 1


async def _proxy(
    upstream: subprocess.Popen[bytes],
    registry: ToolRegistry,
    name: str | None,
    startup_timeout: float,
    call_timeout: float | None,
    on_ready: Callable[[], None],
) -> int:
    assert upstream.stdin is not None  # started with pipes
    assert upstream.stdout is not None
    from_upstream = Inbox()
    to_upstream = PipeWriter(upstream.stdin.fileno())
    gone = anyio.Event()
    served = anyio.Event()
    downstream = _Downstream()
    relay = _Relay(downstream)
    failure: str | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_upstream, upstream.stdout.fileno(), from_upstream, gone)
        async with ClientSession(from_upstream, to_upstream, message_handler=relay) as session:

            async def import_all() -> None:
                await import_tools(session, registry, call_timeout=call_timeout)

            relay.refresh = import_all
            try:
                with anyio.fail_after(startup_timeout):
                    started = await _start(session, import_all, gone)
            except TimeoutError:
                failure = f"the upstream MCP server did not start within {startup_timeout:g} s"
            except Exception as error:  # noqa: BLE001  (any way of not starting is reported)
                failure = await _why_not_started(upstream, error)
            else:
                server = _server(session, started, registry, name, downstream)
                on_ready()
                options = server.create_initialization_options(_notifications(started.capabilities))

                async def serve() -> None:
                    await serve_over_stdio(server, options)
                    served.set()

                tasks.start_soon(serve)
                await _first(served, gone)
                if not served.is_set():
                    # The upstream went first: answer what is in flight, then say so.
                    with anyio.move_on_after(_DRAIN_TIMEOUT):
                        await downstream.drained()
                    how = await how_it_ended(upstream)
                    print(
                        f"codex-tools: the upstream MCP server exited ({how}); stopping",
                        file=sys.stderr,
                    )
        tasks.cancel_scope.cancel()
    if failure is not None:
        await stop(upstream)
        return await serve_failure(failure)
    return 0 if served.is_set() else 1


class _UpstreamGone(Exception):
    """The upstream closed its stdout before it was ready."""


class _Started:
    """What the upstream said about itself at start-up."""

    def __init__(self, result: types.InitializeResult) -> None:
        self.capabilities = result.capabilities
        self.info = result.server_info
        self.instructions = result.instructions


async def _start(
    session: ClientSession, import_all: Callable[[], Awaitable[None]], gone: anyio.Event
) -> _Started:
    """Initialize the upstream and import its tools; ``_UpstreamGone`` if it leaves first,
    ``MCPError`` (or what its answers could not be read as) if it refuses."""
    started: list[_Started] = []
    errors: list[Exception] = []

    async def start() -> None:
        try:
            result = await session.initialize()
            if result.capabilities.tools is not None:
                await import_all()
            started.append(_Started(result))
        except Exception as error:  # noqa: BLE001  (raised below, outside the task group)
            errors.append(error)
        tasks.cancel_scope.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start)
        await gone.wait()
        tasks.cancel_scope.cancel()
    if started:
        return started[0]
    if gone.is_set() or not errors:  # its leaving also fails what was waiting on it
        raise _UpstreamGone
    raise errors[0]


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _first(*events: anyio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    async with anyio.create_task_group() as tasks:
        for event in events:
            tasks.start_soon(_cancel_when, event, tasks.cancel_scope)


#: (offered when the upstream has it, method, params, request and result types).
_FORWARDED: list[tuple[Callable[[types.ServerCapabilities], object], str, Any, Any, Any]] = [
    (lambda c: c.resources, "resources/list", types.PaginatedRequestParams,
     types.ListResourcesRequest, types.ListResourcesResult),
    (lambda c: c.resources, "resources/templates/list", types.PaginatedRequestParams,
     types.ListResourceTemplatesRequest, types.ListResourceTemplatesResult),
    (lambda c: c.resources, "resources/read", types.ReadResourceRequestParams,
     types.ReadResourceRequest, types.ReadResourceResult),
    (lambda c: c.resources and c.resources.subscribe, "resources/subscribe",
     types.SubscribeRequestParams, types.SubscribeRequest, types.EmptyResult),
    (lambda c: c.resources and c.resources.subscribe, "resources/unsubscribe",
     types.UnsubscribeRequestParams, types.UnsubscribeRequest, types.EmptyResult),
    (lambda c: c.prompts, "prompts/list", types.PaginatedRequestParams,
     types.ListPromptsRequest, types.ListPromptsResult),
    (lambda c: c.prompts, "prompts/get", types.GetPromptRequestParams,
     types.GetPromptRequest, types.GetPromptResult),
    (lambda c: c.completions, "completion/complete", types.CompleteRequestParams,
     types.CompleteRequest, types.CompleteResult),
]  # fmt: skip


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
    # call it forwards, and the registry reports each call already.
    server.middleware = [downstream]
    server.add_request_handler(
        "subscriptions/listen",
        types.SubscriptionsListenRequestParams,
        ListenHandler(downstream.events),
    )
    for offered, method, params_type, request_type, result_type in _FORWARDED:
        if offered(started.capabilities):
            server.add_request_handler(
                method, params_type, _forwarder(session, request_type, result_type)
            )
    return server


def _forwarder(
    session: ClientSession, request_type: Any, result_type: Any
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
    """Server middleware: keeps a handshake-era client's session for notifications, counts
    requests. A 2026-07-28 client hears of changes on its ``subscriptions/listen`` stream."""

    def __init__(self) -> None:
        self.session: ServerSession | None = None
        self.events = InMemorySubscriptionBus()
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
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


#: What the upstream sends unasked that the client hears too.
_PASSED_ON = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceUpdatedNotification,
    types.LoggingMessageNotification,
)


def _event(notification: types.ServerNotification) -> ServerEvent | None:
    """The listen-stream event of a change notification, for 2026-07-28 clients."""
    if isinstance(notification, types.ToolListChangedNotification):
        return ToolsListChanged()
    if isinstance(notification, types.PromptListChangedNotification):
        return PromptsListChanged()
    if isinstance(notification, types.ResourceListChangedNotification):
        return ResourcesListChanged()
    if isinstance(notification, types.ResourceUpdatedNotification):
        return ResourceUpdated(uri=str(notification.params.uri))
    return None


class _Relay:
    """The upstream session's message handler: what the upstream says unasked, passed on."""

    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream
        self.refresh: Callable[[], Awaitable[None]] | None = None  # imports the tools again

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.warning("codex-tools: the upstream MCP server sent a bad message: %s", message)
            return
        if isinstance(message, types.ToolListChangedNotification) and self.refresh is not None:
            await self.refresh()
        client = self.downstream.session
        if client is not None and isinstance(message, _PASSED_ON):
            await client.send_notification(message)
        event = _event(message)
        if event is not None:
            await self.downstream.events.publish(event)


async def _why_not_started(upstream: subprocess.Popen[bytes], error: Exception) -> str:
    if isinstance(error, _UpstreamGone):
        how = await how_it_ended(upstream)
        return f"the upstream MCP server ended before it was ready ({how})"
    reason = error.message if isinstance(error, MCPError) else f"{type(error).__name__}: {error}"
    return f"the upstream MCP server refused to start: {reason}"
