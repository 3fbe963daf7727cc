"""The metrics table every command prints: one row per tool of a ``metrics()`` snapshot.

Only ``success`` and ``failure`` are required of each entry; the other keys of the
snapshot show as a dash when they are missing or ``None``, so a snapshot written by an
older version still prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from rich import box
from rich.table import Table
from rich.text import Text

__all__ = ["SORT_KEYS", "SortKey", "metrics_table", "sort_snapshot"]

SortKey = Literal["calls", "failure", "p95"]
SORT_KEYS: tuple[SortKey, ...] = ("calls", "failure", "p95")

_DASH = "-"
_ERROR_WIDTH = 120


def _calls(entry: Mapping[str, Any]) -> int:
    return int(entry["success"]) + int(entry["failure"])


def _number(entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key)
    return float(value) if isinstance(value, int | float) else -1.0


_ORDER: dict[SortKey, Callable[[Mapping[str, Any]], tuple[float, ...]]] = {
    "calls": lambda entry: (_calls(entry),),
    "failure": lambda entry: (int(entry["failure"]), _number(entry, "consecutive_failures")),
    "p95": lambda entry: (_number(entry, "p95_latency_ms"),),
}


def sort_snapshot(
    snapshot: Mapping[str, Mapping[str, Any]], sort: SortKey = "calls"
) -> dict[str, Mapping[str, Any]]:
    """The snapshot's tools, the worst (or busiest) first; ties in name order."""
    order = _ORDER[sort]
    # Sorting is stable (also in reverse), so ties keep the name order of the inner sort.
    names = sorted(sorted(snapshot), key=lambda name: order(snapshot[name]), reverse=True)
    return {name: snapshot[name] for name in names}


def metrics_table(
    snapshot: Mapping[str, Mapping[str, Any]], sort: SortKey = "calls", title: str | None = None
) -> Table:
    """A rich table of ``snapshot``: calls, outcomes, latency percentiles, the last error."""
    table = Table(title=title, title_justify="left", caption="latencies in ms", box=box.SIMPLE_HEAD)
    table.add_column("tool", style="bold", overflow="fold")
    for header in ("calls", "failed", "retries", "p50", "p95", "p99"):
        table.add_column(header, justify="right", no_wrap=True)
    # Names and messages wrap, so a narrow terminal squeezes them rather than the numbers.
    table.add_column("last error", overflow="fold")
    for name, entry in sort_snapshot(snapshot, sort).items():
        failing = bool(entry.get("consecutive_failures"))
        table.add_row(
            Text(name, style="red" if failing else ""),
            str(_calls(entry)),
            Text(str(entry["failure"]), style="red" if entry["failure"] else ""),
            _integer(entry.get("retries")),
            *(_ms(entry.get(f"{key}_latency_ms")) for key in ("p50", "p95", "p99")),
            _error(entry.get("last_error")),
        )
    return table


def _integer(value: Any) -> str:
    return _DASH if value is None else str(value)


def _ms(value: Any) -> str:
    if value is None:
        return _DASH
    ms = float(value)
    # Three significant digits or so: the histogram's error is 5% anyway.
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _error(value: Any) -> str:
    if not isinstance(value, Mapping):
        return _DASH
    kind, message = value.get("type", ""), value.get("message", "")
    first_line = (str(message).splitlines() or [""])[0]
    text = f"{kind}: {first_line}" if first_line else str(kind)
    # A message may be 1,000 characters long; a table row should stay a few lines tall.
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 1] + "…"
