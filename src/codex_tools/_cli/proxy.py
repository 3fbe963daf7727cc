"""``codex-tools proxy [--metrics-port N] -- COMMAND [ARG...]``: meter an MCP server.

Starts COMMAND as an MCP server over stdio and serves it, unchanged, over this
process's stdio, counting every tool call (``originator="mcp-proxy"``). See
``codex_tools.contrib.mcp._proxy`` for what passes through and what happens when the
upstream fails.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from codex_tools import ToolRegistry
from codex_tools._cli import CLIError
from codex_tools._cli.mcp import metrics_endpoint, port, serve_until_stopped

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "proxy",
        help="meter an MCP server: serve it over stdio and count every tool call",
        description="Start COMMAND as an MCP server (stdio) and serve it over stdin/stdout "
        "unchanged (tools, resources, prompts, progress, cancellation), counting every tool "
        "call. Put -- before COMMAND. When the upstream exits, the proxy exits with status 1.",
    )
    parser.add_argument(
        "--metrics-port",
        type=port,
        metavar="N",
        help="also serve Prometheus metrics on 127.0.0.1:N (0 picks a free port)",
    )
    parser.add_argument("--name", help="server name shown to clients (default: the upstream's)")
    parser.add_argument(
        "--verbose", action="store_true", help="say on stderr what is served, and where"
    )
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
    try:
        from codex_tools.contrib.mcp._proxy import serve_proxy
    except ImportError as error:
        raise CLIError(str(error)) from None
    registry = ToolRegistry()

    async def serve() -> int:
        with metrics_endpoint(registry, namespace.metrics_port, verbose=namespace.verbose):

            def ready() -> None:
                if namespace.verbose:
                    names = ", ".join(sorted(each.name for each in registry.tools()))
                    print(f"codex-tools: proxying {names} over MCP on stdio", file=sys.stderr)

            return await serve_proxy(command, registry, name=namespace.name, on_ready=ready)

    serve_until_stopped(serve)
