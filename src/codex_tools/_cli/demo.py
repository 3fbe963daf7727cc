"""``codex-tools demo``: a few tools (one flaky, one slow, one async) invoked offline,
their telemetry printed as it happens and their metrics as a table at the end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from codex_tools import RetryPolicy, ToolError, ToolRegistry, telemetry, tool
from codex_tools._cli._table import metrics_table

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run an offline demo and print its telemetry and metrics"
    )
    parser.add_argument("--calls", type=int, default=20, help="calls per tool (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.set_defaults(handler=run)


def _demo_registry(rng: random.Random) -> ToolRegistry:
    registry = ToolRegistry()

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool(retry=RetryPolicy(max_attempts=2, backoff=None))
    def flaky_search(query: str) -> list[str]:
        """A search backend that drops one request in three."""
        if rng.random() < 0.33:
            raise ConnectionError("upstream reset the connection")
        return [f"{query} result {i}" for i in range(3)]

    @tool(timeout=0.05)
    async def slow_fetch(url: str) -> str:
        """An async fetch that sometimes hangs past its 50 ms deadline."""
        await asyncio.sleep(0.08 if rng.random() < 0.2 else rng.uniform(0.001, 0.01))
        return f"<html>{url}</html>"

    for each in (add, flaky_search, slow_fetch):
        registry.register(each)
    return registry


def run(namespace: argparse.Namespace) -> int:
    console = Console()
    rng = random.Random(namespace.seed)
    registry = _demo_registry(rng)

    def show(
        event: telemetry.EventName, measurements: Mapping[str, Any], meta: Mapping[str, Any], _: Any
    ) -> None:
        ok = meta["result"] == "ok"
        detail = "" if ok else f" [red]{type(meta['error']).__name__}[/red]"
        console.print(
            f"{meta['tool']:>13} attempt={meta['attempt']} retry={meta['retry']!s:5} "
            f"{'[green]ok[/green]' if ok else '[red]error[/red]'} "
            f"{measurements['duration_ms']:8.3f} ms{detail}"
        )

    async def calls() -> None:
        for i in range(namespace.calls):
            for name, args in (
                ("add", {"a": i, "b": 1}),
                ("flaky_search", {"query": f"q{i}"}),
                ("slow_fetch", {"url": f"https://example.test/{i}"}),
            ):
                with contextlib.suppress(ToolError):  # counted and shown; the demo goes on
                    await registry.ainvoke(name, args)

    telemetry.attach_many("codex_tools.demo", telemetry.TOOL_EVENTS[1:], show)
    try:
        asyncio.run(calls())
    finally:
        telemetry.detach("codex_tools.demo")
    console.print(metrics_table(registry.metrics()))
    return 0
