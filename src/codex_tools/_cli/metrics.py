"""``codex-tools metrics [FILE]``: print a saved metrics snapshot as a table.

The snapshot is ``codex_tools.metrics()`` dumped as JSON, e.g. by
``json.dump(codex_tools.metrics(), file)`` at the end of a run, read from FILE or stdin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from codex_tools._cli import CLIError
from codex_tools._cli._table import SORT_KEYS, metrics_table

__all__ = ["add_parser", "read_snapshot"]

# What the table reads from each tool's entry; other keys are kept as they are.
_COUNTS = ("success", "failure", "retries")
_MEASURES = ("success_rate", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "metrics",
        help="print a metrics snapshot (JSON) as a table",
        description="Print a metrics snapshot, codex_tools.metrics() dumped as JSON, as a table.",
    )
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="the snapshot (default: stdin)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the checked snapshot as JSON instead"
    )
    parser.add_argument(
        "--sort", choices=SORT_KEYS, default="name", help="row order of the table (default name)"
    )
    parser.set_defaults(handler=run)


def run(namespace: argparse.Namespace) -> int:
    snapshot = read_snapshot(namespace.file)
    if namespace.json:
        json.dump(snapshot, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console = Console()
        console.print(metrics_table(snapshot, console.width, sort=namespace.sort))
    return 0


def read_snapshot(source: str) -> dict[str, dict[str, Any]]:
    """The snapshot in ``source`` (a path, or ``-`` for stdin), checked to be one."""
    if source == "-":
        if sys.stdin.isatty():
            raise CLIError("no snapshot: give a FILE or pipe JSON into stdin")
        name, text = "stdin", sys.stdin.read()
    else:
        name = source
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as error:
            raise CLIError(f"cannot read {source!r}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise CLIError(f"{source}: not a text file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CLIError(
            f"{name}: not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    problem = _shape_problem(data)
    if problem:
        raise CLIError(f"{name}: not a metrics snapshot: {problem}")
    return dict(data)


def _shape_problem(data: Any) -> str | None:
    """What makes ``data`` not a snapshot, or None if it is one."""
    if not isinstance(data, dict):
        return f"expected an object of tools, got {_kind(data)}"
    for tool, entry in data.items():
        if not isinstance(entry, dict):
            return f"tool {tool!r} is {_kind(entry)}, not an object"
        for key in (*_COUNTS, *_MEASURES, "last_error"):
            if key not in entry:
                return f"tool {tool!r} has no {key!r}"
        for key in _COUNTS:
            if not _is_number(entry[key], integer=True) or entry[key] < 0:
                return f"tool {tool!r}: {key!r} is {entry[key]!r}, not a count"
        for key in _MEASURES:
            if entry[key] is not None and not _is_number(entry[key]):
                return f"tool {tool!r}: {key!r} is {entry[key]!r}, not a number"
        error = entry["last_error"]
        named = isinstance(error, dict) and isinstance(error.get("type"), str)
        if error is not None and not named:
            return f"tool {tool!r}: 'last_error' is neither null nor an error with a 'type'"
    return None


def _is_number(value: Any, *, integer: bool = False) -> bool:
    # JSON true/false load as bool, a subclass of int.
    return not isinstance(value, bool) and isinstance(value, int if integer else int | float)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")
