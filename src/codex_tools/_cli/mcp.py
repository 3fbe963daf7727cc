"""``codex-tools mcp MODULE[:ATTR]``: serve a module's tools to MCP clients over stdio.

stdout carries the protocol and nothing else, from the first line of the command to
its exit: the protocol gets private copies of stdin and stdout, and fd 1 and
``sys.stdout`` point at stderr for everything else (the module's prints at import, its
tools, their child processes, threads printing at exit).

Start-up is ordered for clients that wait on ``initialize`` (Claude Code gives up after
about 3 s, Codex CLI starts its first turn without the tools): the server answers
``initialize`` as soon as the ``mcp`` SDK is imported, and imports MODULE in a worker
thread meanwhile; ``tools/list`` and ``tools/call`` wait for it. SIGINT and SIGTERM
end the command at once, as does the client closing stdin; calls still running are
abandoned (a thread cannot be stopped, and it does not keep the process alive).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from codex_tools import ToolRegistry, __version__
from codex_tools._cli import CLIError
from codex_tools._cli._loading import load_registry

if TYPE_CHECKING:
    from codex_tools._endpoint import MetricsServer

__all__ = [
    "add_parser",
    "add_serving_options",
    "metrics_endpoint",
    "say",
    "serve_until_stopped",
]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mcp",
        help="serve the tools of a module over MCP (stdio)",
        description="Serve every tool of a registry to MCP clients (Codex CLI, Claude Code) "
        "over stdin/stdout. MODULE is a dotted name or a .py file; its tools are the "
        "ToolRegistry that ATTR names, else its ToolRegistry, else every Tool object "
        "(@tool function) in it, else what importing it registered on the default registry.",
    )
    parser.add_argument("module", metavar="MODULE[:ATTR]", help="where the tools are")
    parser.add_argument(
        "--name", default="codex-tools", help="server name shown to clients (default codex-tools)"
    )
    add_serving_options(parser)
    parser.set_defaults(handler=run)


def add_serving_options(parser: argparse.ArgumentParser) -> None:
    """The options ``mcp`` and ``proxy`` share."""
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="N",
        help="also serve Prometheus metrics on 127.0.0.1:N (0 picks a free port)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="say on stderr what is served, and where"
    )


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def run(namespace: argparse.Namespace) -> int:
    from codex_tools._stdio import claim_stdio

    claim_stdio()  # before anything else can print
    try:
        import anyio

        from codex_tools.contrib.mcp._server import registry_server
        from codex_tools.contrib.mcp._stdio import serve_over_stdio
    except ImportError as error:
        raise CLIError(str(error)) from None

    async def serve() -> int:
        loaded = asyncio.Event()
        found: list[ToolRegistry] = []

        async def registry() -> ToolRegistry:
            await loaded.wait()
            return found[0]

        server = registry_server(registry, namespace.name, version=__version__, instructions=None)
        served = asyncio.Event()

        async def serve_until_stdin_closes() -> None:
            await serve_over_stdio(server, server.create_initialization_options())
            served.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve_until_stdin_closes)
            # Waited for even when stdin closes first: a module that cannot be imported
            # is reported, and the exit status says so.
            found.append(await anyio.to_thread.run_sync(load_registry, namespace.module))
            metrics_endpoint(found[0], namespace.metrics_port, verbose=namespace.verbose)
            if namespace.verbose:
                names = ", ".join(sorted(each.name for each in found[0].tools()))
                say(f"codex-tools: serving {names} over MCP on stdio")
            loaded.set()
            await served.wait()
        return 0

    serve_until_stopped(serve)


def serve_until_stopped(
    serve: Callable[[], Awaitable[int]], on_signal: Callable[[int], None] = lambda signum: None
) -> NoReturn:
    """Run ``serve`` until it returns its exit status or SIGINT/SIGTERM comes, then end
    the process.

    The process ends there and then, from inside the event loop (``os._exit``): a tool
    thread still running (which the loop's shutdown would wait for), or one the tools
    module started, must not keep a server alive that its client has left. A
    :class:`CLIError` is one line on stderr and exit status 2; a signal exits with 128
    plus its number. ``on_signal`` is told of every signal as it comes (the proxy passes
    it on to its upstream). The handlers stay until the process ends: a client that sends
    SIGTERM while the server stops on its SIGINT (Claude Code does, 100 ms later) does
    not kill it halfway, with its upstream left behind.
    """
    import anyio

    # A pipe whose reader left is an error to handle (EPIPE), not a reason to die
    # silently: the client still gets its answers when an upstream goes away.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    async def main() -> NoReturn:
        stopped_by: list[int] = []
        serving = anyio.CancelScope()
        code = 0
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def stop_on_signal() -> None:  # and pass on the signals that come meanwhile
                async for signum in signals:
                    stopped_by.append(signum)
                    on_signal(signum)
                    serving.cancel()

            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stop_on_signal)
                    with serving:
                        code = await serve()
                    tasks.cancel_scope.cancel()
            except* CLIError as group:
                error: BaseException = group
                while isinstance(error, BaseExceptionGroup):  # task groups nest them
                    error = error.exceptions[0]
                say(f"codex-tools: error: {error}")
                code = 2
            except* Exception:  # noqa: BLE001  (a bug of ours: worth an operator's attention)
                with contextlib.suppress(OSError):
                    traceback.print_exc()
                code = 1
            _exit(128 + stopped_by[0] if stopped_by else code)

    from codex_tools._runners import new_server_loop

    try:
        # The core's pool: sync tools run on it, bounded, as everywhere else.
        anyio.run(main, backend_options={"loop_factory": new_server_loop})
    except KeyboardInterrupt:  # before the signal handler was in place
        _exit(130)
    _exit(1)  # not reached: main ends the process


def say(line: str) -> None:
    """One line on stderr; a client that closed it (it is going away) is no failure."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _exit(code: int) -> NoReturn:
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def metrics_endpoint(
    registry: ToolRegistry, port: int | None, *, verbose: bool
) -> MetricsServer | None:
    """Serve ``/metrics`` and ``/metrics.json`` on 127.0.0.1 from now on, if a port is
    given. Without prometheus_client, ``/metrics.json`` (all that ``codex-tools top``
    reads) is still served, and ``/metrics`` says what to install.

    The commands never close it: the process ends with the server
    (:func:`serve_until_stopped`), which frees the port, and closing would hold a
    stopping server up to 0.1 s, the endpoint thread's poll (longer than Claude Code
    waits before its next signal).
    """
    if port is None:
        return None
    from codex_tools._endpoint import MetricsServer

    def start() -> MetricsServer:
        try:
            from codex_tools.contrib.prometheus import serve_metrics
        except ImportError as error:
            say(f"codex-tools: /metrics.json only: {error}")
            return MetricsServer(registry, "127.0.0.1", port)
        return serve_metrics(registry, "127.0.0.1", port)

    try:
        server = start()
    except OSError as error:
        raise CLIError(f"cannot serve metrics on 127.0.0.1:{port}: {error.strerror}") from None
    if verbose:
        say(f"codex-tools: metrics at {server.url}/metrics")
    return server
