"""The metrics table the demo, ``run`` and ``metrics`` commands print."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from rich import box
from rich.table import Table

__all__ = ["SORT_KEYS", "metrics_table"]

SortKey = Literal["name", "calls", "failure", "p95"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "calls", "failure", "p95")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _sort_value(sort: SortKey, name: str, row: Mapping[str, Any]) -> Any:
    if sort == "calls":
        return -(row["success"] + row["failure"])
    if sort == "failure":
        return -row["failure"]
    if sort == "p95":
        return -(row["p95_latency_ms"] or 0.0)
    return name


def metrics_table(
    snapshot: Mapping[str, Mapping[str, Any]], sort: SortKey = "name", title: str = "Tool metrics"
) -> Table:
    """One row per tool: counts, success rate, latency percentiles and the last error
    (its type only, to fit 80 columns; ``--json`` gives every key)."""
    table = Table(title=f"{title} (latency in ms)", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("tool", overflow="fold")
    for column in ("ok", "fail", "retry", "rate", "p50", "p95", "p99"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("last error", no_wrap=True, overflow="ellipsis")
    rows = sorted(snapshot.items(), key=lambda item: (_sort_value(sort, *item), item[0]))
    for name, row in rows:
        rate = row["success_rate"]
        error = row["last_error"]
        table.add_row(
            name,
            str(row["success"]),
            str(row["failure"]),
            str(row["retries"]),
            "-" if rate is None else f"{rate:.0%}",
            _ms(row["p50_latency_ms"]),
            _ms(row["p95_latency_ms"]),
            _ms(row["p99_latency_ms"]),
            "" if error is None else error["type"],
        )
    return table
