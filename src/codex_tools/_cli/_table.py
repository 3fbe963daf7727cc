"""The metrics table the demo, ``run`` and ``metrics`` commands print, and the one way
they all make text from tools and models safe to show.

The table fits the width it is given, from 40 columns up. Tool names are never folded
into fragments: columns are dropped first, in this order, as the width shrinks: ``last
error``, ``p99``, ``p50``, ``rate``, ``retry``, ``p95``; ``tool``, ``ok`` and ``fail``
always stay. A name still too long for what is left ends in an ellipsis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["SORT_KEYS", "metrics_table", "printable"]

SortKey = Literal["name", "calls", "failure", "p95"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "calls", "failure", "p95")

# Control characters would move the cursor or recolour the terminal, bidirectional
# overrides reorder what is shown, and a lone surrogate (an undecodable file name) cannot
# be written to a UTF-8 stream at all.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


_KEPT = {"\n": "\n", "\t": "    "}  # what text of several lines keeps of its controls


def printable(text: str, *, one_line: bool = True) -> Text:
    """``text`` as plain rich text (never markup), on one line unless told, every other
    control character and lone surrogate shown as its escape."""
    kept = {} if one_line else _KEPT
    text = " ".join(text.split()) if one_line else text.replace("\r\n", "\n")
    return Text(_UNPRINTABLE.sub(lambda match: kept.get(match[0], ascii(match[0])[1:-1]), text))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _error(value: Mapping[str, Any] | None) -> str:
    return "" if value is None else str(value["type"])


# Every column but the tool's: header, the snapshot key it shows, how, and its drop rank
# (the lowest goes first when the table is too wide; 0 never goes).
_COLUMNS: tuple[tuple[str, str, Callable[[Any], str], int], ...] = (
    ("ok", "success", str, 0),
    ("fail", "failure", str, 0),
    ("retry", "retries", str, 5),
    ("rate", "success_rate", _rate, 4),
    ("p50", "p50_latency_ms", _ms, 3),
    ("p95", "p95_latency_ms", _ms, 6),
    ("p99", "p99_latency_ms", _ms, 2),
    ("last error", "last_error", _error, 1),
)
_LAST_ERROR_ROOM = 10  # the least room worth showing an error type in


def _sort_value(sort: SortKey, name: str, row: Mapping[str, Any]) -> Any:
    if sort == "calls":
        return -(row["success"] + row["failure"])
    if sort == "failure":
        return -row["failure"]
    if sort == "p95":
        return -(row["p95_latency_ms"] or 0.0)
    return name


def metrics_table(
    snapshot: Mapping[str, Mapping[str, Any]],
    width: int,
    sort: SortKey = "name",
    title: str = "Tool metrics",
) -> RenderableType:
    """One row per tool, in ``width`` columns: counts, success rate, latency percentiles
    and the type of the last error (``--json`` gives every key)."""
    if not snapshot:
        return Text("no tool calls yet")
    rows = sorted(snapshot.items(), key=lambda item: (_sort_value(sort, *item), item[0]))
    names = [printable(name) for name, _ in rows]
    cells = {header: [show(row[key]) for _, row in rows] for header, key, show, _ in _COLUMNS}
    widths = {header: max(map(cell_len, [header, *cells[header]])) for header in cells}
    name_width = max(cell_len("tool"), *(name.cell_len for name in names))

    def excess(kept: list[str]) -> int:
        """Columns more than ``width`` the table takes (one space between columns), once
        the last error is cut down to the least room worth showing it in."""
        used = name_width + sum(widths[header] + 1 for header in kept)
        room = widths["last error"] - _LAST_ERROR_ROOM if "last error" in kept else 0
        return used - max(room, 0) - width

    kept = list(widths)
    for header, *_ in sorted(filter(lambda column: column[3], _COLUMNS), key=lambda c: c[3]):
        if excess(kept) <= 0:
            break
        kept.remove(header)
    over = max(excess(kept), 0)  # only at the narrowest: names then end in an ellipsis
    table = Table(title=f"{title} (latency in ms)", box=box.SIMPLE_HEAD, show_edge=False, padding=0)
    table.add_column("tool", no_wrap=True, overflow="ellipsis", max_width=name_width - over)
    for header in kept:
        last = header == "last error"
        table.add_column(
            header,
            justify="left" if last else "right",
            no_wrap=True,
            overflow="ellipsis",
            max_width=max(width - name_width - sum(widths[h] + 1 for h in kept[:-1]) - 1, 1)
            if last
            else None,
        )
    for index, name in enumerate(names):
        table.add_row(name, *(Text(cells[header][index]) for header in kept))
    return table
