"""``codex-tools mcp MODULE[:ATTR]``: serve a module's tools to MCP clients over stdio.

stdout carries the protocol and nothing else: the module is imported with ``print``
sent to stderr, and every message of ours goes to stderr too.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from codex_tools import ToolRegistry
from codex_tools._cli import CLIError
from codex_tools._cli._loading import load_registry

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mcp",
        help="serve the tools of a module over MCP (stdio)",
        description="Serve every tool of a registry to MCP clients (Codex CLI, Claude Code) "
        "over stdin/stdout. Importing MODULE (a dotted name or a .py file) registers "
        "tools on the default registry, or ATTR names a ToolRegistry in it.",
    )
    parser.add_argument("module", metavar="MODULE[:ATTR]", help="where the tools are")
    parser.add_argument(
        "--name", default="codex-tools", help="server name shown to clients (default codex-tools)"
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="N",
        help="also serve Prometheus metrics on 127.0.0.1:N (0 picks a free port)",
    )
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def run(namespace: argparse.Namespace) -> int:
    try:
        from codex_tools.contrib.mcp import serve_stdio
    except ImportError as error:
        raise CLIError(str(error)) from None
    with contextlib.redirect_stdout(sys.stderr):
        registry = load_registry(namespace.module)
    with _metrics_endpoint(registry, namespace.metrics_port):
        names = ", ".join(sorted(each.name for each in registry.tools()))
        print(f"codex-tools: serving {names} over MCP on stdio", file=sys.stderr, flush=True)
        serve_stdio(registry, namespace.name)
    return 0


@contextlib.contextmanager
def _metrics_endpoint(registry: ToolRegistry, port: int | None) -> Iterator[None]:
    """Serve ``/metrics`` and ``/metrics.json`` on 127.0.0.1 while the block runs, if a
    port is given. Without prometheus_client, ``/metrics.json`` (all that
    ``codex-tools top`` reads) is still served, and ``/metrics`` says what to install."""
    if port is None:
        yield
        return
    from codex_tools._endpoint import MetricsServer

    def start() -> MetricsServer:
        try:
            from codex_tools.contrib.prometheus import serve_metrics
        except ImportError as error:
            print(f"codex-tools: /metrics.json only: {error}", file=sys.stderr)
            return MetricsServer(registry, "127.0.0.1", port)
        return serve_metrics(registry, "127.0.0.1", port)

    try:
        server = start()
    except OSError as error:
        raise CLIError(f"cannot serve metrics on 127.0.0.1:{port}: {error.strerror}") from None
    print(f"codex-tools: metrics at {server.url}/metrics", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        server.close()
