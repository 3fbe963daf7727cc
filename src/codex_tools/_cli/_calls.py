"""One line per finished tool call, printed as it happens: what ``run`` and ``demo`` show."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from codex_tools import telemetry

__all__ = ["print_calls"]

_FIXED = 46  # the columns before the output or error, for tool names up to 12 characters


def _preview(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def call_line(measurements: Mapping[str, Any], meta: Mapping[str, Any], width: int = 80) -> str:
    """``✓ tool  attempt  retry  duration  output`` (or the error) in ``width`` columns,
    as rich markup."""
    ok = meta["result"] == "ok"
    room = max(width - _FIXED, 16)
    if ok:
        mark, detail = "[green]✓[/green]", escape(_preview(repr(meta["output"]), room))
    else:
        error = meta["error"]
        text = escape(_preview(f"{type(error).__name__}: {error}", room))
        mark, detail = "[red]✗[/red]", f"[red]{text}[/red]"
    attempt = meta["attempt"]
    return (
        f"{mark} {escape(meta['tool']):<12} attempt {'-' if attempt is None else attempt}  "
        f"{'[yellow]retry[/yellow]' if meta['retry'] else '     '} "
        f"{measurements['duration_ms']:8.2f} ms  {detail}"
    )


@contextlib.contextmanager
def print_calls(console: Console) -> Iterator[None]:
    """Print every tool call that ends inside the block (in any registry)."""
    handler_id = f"codex_tools.cli.calls.{id(console)}"

    def show(
        event: telemetry.EventName, measurements: Mapping[str, Any], meta: Mapping[str, Any], _: Any
    ) -> None:
        line = call_line(measurements, meta, console.width)
        console.print(line, highlight=False, no_wrap=True, overflow="ellipsis")

    telemetry.attach_many(handler_id, [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], show)
    try:
        yield
    finally:
        telemetry.detach(handler_id)
