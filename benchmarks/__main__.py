"""``python -m benchmarks [--quick] [--only NAMES] [--json PATH]``: run every scenario (or
the named ones), print one table."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import (
    _adapter_langchain,
    _adapter_openai_agents,
    _adapter_pydantic_ai,
    _async,
    _merge,
    _scale,
    _sync,
    _timeouts,
)
from benchmarks._harness import Check, Row, Sizes

#: Every scenario, in the order a run takes them, by the name ``--only`` picks it by.
SCENARIOS = {
    "sync": _sync.run,
    "async": _async.run,
    "scale": _scale.run,
    "merge": _merge.run,
    "timeouts": _timeouts.run,
    "pydantic-ai": _adapter_pydantic_ai.run,
    "langchain": _adapter_langchain.run,
    "openai-agents": _adapter_openai_agents.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        type=_scenarios,
        default=list(SCENARIOS),
        help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every row and sample here")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    options = parser.parse_args(argv)
    sizes = Sizes.make(options.quick)
    check = Check()
    started = time.perf_counter()
    rows: list[Row] = []
    for name in options.only:
        rows += SCENARIOS[name](sizes, check)
    machine = _machine()
    machine["seconds"] = round(time.perf_counter() - started, 1)
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # a pipe or a file: do not squeeze the table to 80
    console.print(_table(rows, machine))
    if options.json:
        with open(options.json, "w", encoding="utf-8") as out:
            json.dump({"machine": machine, "rows": [dataclasses.asdict(r) for r in rows]}, out)
    if options.markdown:
        with open(options.markdown, "w", encoding="utf-8") as out:
            out.write(_markdown(rows, machine))
    for failure in check.failures:
        print(f"check failed: {failure}", file=sys.stderr)
    return 1 if check.failures else 0


def _scenarios(names: str) -> list[str]:
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(names)} (of {', '.join(SCENARIOS)})"
        )
    return chosen


def _machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def _table(rows: list[Row], machine: dict[str, Any]) -> Table:
    table = Table(
        title="codex-tools benchmarks (medians; ratios against same-run baselines)",
        caption=(
            f"{machine['date']} · Python {machine['python']} · {machine['cpus']} CPUs · "
            f"load {machine['load']} · {machine['seconds']} s"
        ),
    )
    for column, justify in (
        ("scenario", "left"),
        ("case", "left"),
        ("median", "right"),
        ("x baseline", "right"),
        ("baseline", "left"),
        ("target", "left"),
        ("check", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "case")  # type: ignore[arg-type]
    for row in rows:
        target = row.target
        if row.met is not None:
            target = f"{target} {'[green]met[/]' if row.met else '[red]missed[/]'}"
        table.add_row(
            row.scenario,
            row.case,
            format_value(row.value, row.unit),
            "" if row.ratio is None else f"{row.ratio:.2f}",
            row.baseline,
            target,
            row.check if row.check == "ok" else f"[red]{row.check}[/]",
        )
    return table


def _markdown(rows: list[Row], machine: dict[str, Any]) -> str:
    """The same table for BENCHMARKS.md."""
    lines = [
        f"{machine['date']} · Python {machine['python']} · {machine['cpus']} CPUs · "
        f"load {machine['load']} · {machine['seconds']} s",
        "",
        "| scenario | case | median | x baseline | baseline | target | check |",
        "|---|---|--:|--:|---|---|---|",
    ]
    for row in rows:
        target = row.target
        if row.met is not None:
            target = f"{target} **{'met' if row.met else 'missed'}**"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        cells = (row.scenario, row.case, format_value(row.value, row.unit), ratio, row.baseline)
        lines.append("| " + " | ".join((*cells, target, row.check)) + " |")
    return "\n".join(lines) + "\n"


def format_value(value: float | None, unit: str) -> str:
    """Durations scaled to ns, µs or ms; bytes and rates with thousands separators."""
    if value is None:
        return "n/a"
    if unit == "ns":
        if value < 10_000:
            return f"{value:,.0f} ns" if value < 1000 else f"{value / 1e3:.2f} µs"
        return f"{value / 1e3:,.1f} µs" if value < 1e6 else f"{value / 1e6:,.2f} ms"
    return f"{value:,.0f} {unit}"


if __name__ == "__main__":
    sys.exit(main())
