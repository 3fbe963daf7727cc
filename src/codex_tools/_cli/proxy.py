"""``codex-tools proxy [--metrics-port N] [--name NAME] -- COMMAND [ARG...]``: meter an
MCP server someone else wrote.

Starts COMMAND as an MCP server over stdio and serves it, unchanged, over this
process's stdio, counting every tool call (``originator="mcp-proxy"``). The upstream
is started first thing, so it starts while the ``mcp`` SDK is being imported here. See
``codex_tools.contrib.mcp._proxy`` for what passes through and what happens when the
upstream fails (the proxy exits; it does not restart it).
"""

from __future__ import annotations

import argparse
from typing import Any

from codex_tools import ToolRegistry
from codex_tools._cli import CLIError, seconds
from codex_tools._cli.mcp import add_serving_options, metrics_endpoint, say, serve_until_stopped

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "proxy",
        help="meter an MCP server: serve it over stdio and count every tool call",
        description="Start COMMAND as an MCP server (stdio) and serve it over stdin/stdout "
        "unchanged (tools, resources, prompts, progress, cancellation), counting every tool "
        "call. Put -- before COMMAND. When the upstream exits, the proxy exits with status 1.",
    )
    parser.add_argument("--name", help="server name shown to clients (default: the upstream's)")
    parser.add_argument(
        "--startup-timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long the upstream has to start and list its tools (default 60)",
    )
    parser.add_argument(
        "--call-timeout",
        type=seconds,
        metavar="SECONDS",
        help="fail a tool call the upstream has not answered in time, and cancel it there "
        "(default: wait as long as the client does)",
    )
    add_serving_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    parser.set_defaults(handler=run)


def run(namespace: argparse.Namespace) -> int:
    from codex_tools._stdio import claim_stdio

    claim_stdio()  # before anything else can print
    command = list(namespace.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CLIError("no upstream command given (codex-tools proxy -- COMMAND [ARG...])")
    import subprocess

    try:
        # Before the SDK import below: the two start-ups overlap. In the proxy's own
        # process group, so that a client that ends its server's group (Codex CLI sends
        # SIGTERM, then SIGKILL milliseconds later) ends the upstream and what it started
        # as it would without the proxy; a signal to the proxy alone is passed on.
        upstream: subprocess.Popen[bytes] | None = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        failure = ""
    except OSError as error:
        upstream = None
        failure = f"cannot start the upstream MCP server {command[0]!r}: {error.strerror or error}"
    try:
        from codex_tools.contrib.mcp._proxy import serve_failure, serve_proxy, trace_nothing
        from codex_tools.contrib.mcp._upstream import signal_upstream
    except ImportError as error:
        raise CLIError(str(error)) from None
    trace_nothing()
    registry = ToolRegistry()

    def ready() -> None:
        if namespace.verbose:
            names = ", ".join(sorted(each.name for each in registry.tools()))
            say(f"codex-tools: proxying {names} over MCP on stdio")

    async def serve() -> int:
        if upstream is None:
            return await serve_failure(failure)
        metrics_endpoint(registry, namespace.metrics_port, verbose=namespace.verbose)
        return await serve_proxy(
            upstream,
            registry,
            name=namespace.name,
            startup_timeout=namespace.startup_timeout,
            call_timeout=namespace.call_timeout,
            on_ready=ready,
        )

    def pass_on(signum: int) -> None:
        if upstream is not None:
            signal_upstream(upstream, signum)

    serve_until_stopped(serve, pass_on)
