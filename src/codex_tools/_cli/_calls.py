"""One line per finished tool call, printed as it happens: what ``run`` and ``demo`` show."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

from codex_tools import telemetry
from codex_tools._cli._table import printable
from codex_tools.autorun._model import safe_str

__all__ = ["call_line", "print_calls"]

_NAME = 12  # names up to this long line up; a longer one pushes the rest right, uncut
_NARROW = 60  # below this many columns, "attempt 2" shrinks to "#2"
_PREVIEW = 2_000  # characters of an output or error worth cleaning up for one line


def call_line(measurements: Mapping[str, Any], meta: Mapping[str, Any], width: int) -> Text:
    """``✓ tool  attempt 2  retry  41.20 ms  output`` (or ``✗`` and the error), cut to
    ``width`` columns at the output or error; the name is never cut."""
    ok = meta["result"] == "ok"
    attempt = meta["attempt"]
    name = printable(meta["tool"])
    line = Text.assemble(
        ("✓", "green") if ok else ("✗", "red"),
        " ",
        name,
        " " * max(_NAME - name.cell_len, 0),
        f" #{attempt} " if width < _NARROW else f" attempt {attempt}  ",
        ("retry", "yellow") if meta["retry"] else "     ",
        f" {measurements['duration_ms']:8.2f} ms  ",
    )
    if ok:
        detail = printable(safe_str(meta["output"], repr)[:_PREVIEW])
    else:
        error = meta["error"]
        detail = printable(f"{type(error).__name__}: {safe_str(error)[:_PREVIEW]}")
        detail.stylize("red")
    room = width - line.cell_len
    if room > 1:
        detail.truncate(room, overflow="ellipsis")
        line.append_text(detail)
    return line


@contextlib.contextmanager
def print_calls(console: Console) -> Iterator[None]:
    """Print every tool call that ends inside the block (in any registry)."""
    handler_id = f"codex_tools.cli.calls.{id(console)}"

    def show(
        event: telemetry.EventName, measurements: Mapping[str, Any], meta: Mapping[str, Any], _: Any
    ) -> None:
        console.print(call_line(measurements, meta, console.width), overflow="fold")

    telemetry.attach_many(handler_id, [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], show)
    try:
        yield
    finally:
        telemetry.detach(handler_id)
