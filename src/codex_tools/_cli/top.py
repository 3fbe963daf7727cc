"""``codex-tools top URL [URL...]``: a live table of running processes' metrics, merged.

Each URL is a metrics endpoint (``serve_metrics``, ``codex-tools mcp --metrics-port``):
``http://HOST:PORT``, its ``/metrics`` or its ``/metrics.json`` all mean the JSON
snapshot, and a bare ``PORT`` or ``HOST:PORT`` means ``http://`` on it. Every refresh
fetches all of them at once, each in a thread of its own under a short timeout, so a
hung endpoint costs one timeout, not a stall; one that does not answer is marked down and
left out of the merge until it answers again. Without a terminal, one merged table is
printed and the command ends, for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from codex_tools import merge_metrics
from codex_tools._cli import CLIError
from codex_tools._cli._table import printable

__all__ = ["SORT_KEYS", "Watch", "add_parser", "endpoint_url", "fetch", "fetch_all"]

SortKey = Literal["name", "calls", "rate", "failure", "p95"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "calls", "rate", "failure", "p95")
MAX_TIMEOUT = 2.0  # per request, in seconds; shorter when the interval is
_MAX_BODY = 64 << 20
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # endpoints are direct

Snapshot = dict[str, dict[str, Any]]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "top",
        help="a live table of the metrics of running processes, merged",
        description="Watch one or more metrics endpoints (serve_metrics, codex-tools mcp "
        "--metrics-port) as one live table. URL: http://HOST:PORT (its /metrics or "
        "/metrics.json too), HOST:PORT or PORT (on 127.0.0.1). Keys: n c r f p sort by "
        "name, calls, rate, failure, p95; q or Ctrl-C quits.",
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="a metrics endpoint")
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )
    parser.add_argument(
        "--sort", choices=SORT_KEYS, default="calls", help="row order (default calls)"
    )
    parser.set_defaults(handler=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not an interval (0.1 to 3600 seconds)")
    return value


def endpoint_url(text: str) -> str:
    """The ``/metrics.json`` URL that ``text`` names (see the module's docstring)."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed "[" of an IPv6 address
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(f"{text!r} is not an http:// URL of a metrics endpoint")
    try:
        parts.port  # noqa: B018  (raises for a port out of range)
    except ValueError:
        raise CLIError(f"{text!r} has no valid port") from None
    path = parts.path.rstrip("/")
    if not path or path.endswith("/metrics"):
        path += "/metrics.json" if not path else ".json"
    return parts._replace(path=path).geturl()


def fetch(url: str, timeout: float) -> Snapshot:
    """One endpoint's snapshot, checked; any failure is an ``OSError`` or ``ValueError``
    whose text says why the endpoint counts as down."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            body = response.read(_MAX_BODY + 1)
            announced = response.headers.get("Content-Length", "")
    except urllib.error.HTTPError as error:
        raise OSError(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        raise OSError(getattr(reason, "strerror", None) or str(reason)) from None
    if len(body) > _MAX_BODY:
        raise ValueError("response too large")
    if announced.isdigit() and len(body) < int(announced):
        raise ValueError("response cut short")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    try:
        return merge_metrics([data])  # checks it, and gives every key a known type
    except (TypeError, ValueError) as error:
        raise ValueError(f"not a metrics snapshot ({error})") from None


def fetch_all(urls: Sequence[str], timeout: float) -> list[Snapshot | str]:
    """Each endpoint's snapshot, or why it is down, fetched concurrently: daemon threads,
    so one that hangs past the timeout is left behind, and never delays the exit."""
    results: list[Snapshot | str] = ["timed out"] * len(urls)

    def one(at: int, url: str) -> None:
        try:
            results[at] = fetch(url, timeout)
        except (OSError, ValueError) as error:
            results[at] = str(error) or type(error).__name__
        except Exception as error:  # noqa: BLE001  (http.client's own: a truncated body...)
            results[at] = type(error).__name__

    threads = [
        threading.Thread(target=one, args=(at, url), daemon=True) for at, url in enumerate(urls)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 0.5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return list(results)


class Watch:
    """What the table shows, refreshed from each round of fetches: no I/O here."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.status: list[str | None] = [None] * len(urls)  # None: up; else why down
        self.merged: Snapshot = {}
        self.rates: dict[str, float] | None = None  # calls/s over the last interval
        self._calls: list[dict[str, int] | None] = [None] * len(urls)
        self._at: float | None = None

    def refresh(self, results: Sequence[Snapshot | str], now: float) -> None:
        """Merge the endpoints that answered; rates come from those that answered both
        this time and the last, so one going away or coming back makes no jump."""
        rates: dict[str, float] = {}
        elapsed = None if self._at is None else now - self._at
        answered = []
        for at, result in enumerate(results):
            if isinstance(result, str):
                self.status[at], self._calls[at] = result, None
                continue
            self.status[at] = None
            answered.append(result)
            calls = {name: row["success"] + row["failure"] for name, row in result.items()}
            before = self._calls[at]
            if before is not None and elapsed:
                for name, count in calls.items():
                    delta = count - before.get(name, 0)
                    rate = (count if delta < 0 else delta) / elapsed  # < 0: it was reset
                    rates[name] = rates.get(name, 0.0) + rate
            self._calls[at] = calls
        self.merged = merge_metrics(answered)
        self.rates = rates if elapsed else None
        self._at = now

    def render(self, width: int, sort: SortKey, height: int | None = None) -> RenderableType:
        """The table and each endpoint's state; with a ``height`` (a live screen), only the
        rows that fit it, as top does: rows off the screen would cost a refresh for
        nothing."""
        up = self.status.count(None)
        title = Text(f"codex-tools top · {up}/{len(self.urls)} up · by {sort}", style="bold")
        rows = sorted(self.merged.items(), key=lambda item: (self._order(sort, *item), item[0]))
        shown = rows
        if height is not None:
            if width >= 80:  # else the title would take two lines
                title.append("  keys: n c r f p sort, q quits", style="dim")
            shown = rows[: max(1, height - _OVERHEAD - len(self.urls))]
        lines: list[RenderableType] = [title, self._table(width, shown)]
        if len(shown) < len(rows):
            more = len(rows) - len(shown)
            lines.append(Text(f"… and {more} more (a taller terminal shows them)", style="dim"))
        for url, down in zip(self.urls, self.status, strict=True):
            line = Text("● " if down is None else "✖ ", style="green" if down is None else "red")
            line.append(printable(url))
            if down is not None:
                reason = printable(down)
                reason.stylize("red")
                line.append(Text("  down: ", style="red") + reason)
            lines.append(line)
        return Group(*lines)

    def _table(self, width: int, rows: list[tuple[str, dict[str, Any]]]) -> Table:
        columns = _columns(width)
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), expand=False)
        table.add_column("tool", overflow="fold", min_width=8)
        for column in columns:
            right = column != "last error"
            table.add_column(
                column,
                justify="right" if right else "left",
                no_wrap=True,
                overflow="fold" if right else "ellipsis",
            )
        for name, row in rows:
            cells = self._cells(name, row)
            table.add_row(printable(name), *(cells[column] for column in columns))
        return table

    def _order(self, sort: SortKey, name: str, row: Mapping[str, Any]) -> Any:
        if sort == "name":
            return name
        if sort == "rate":
            return -(self.rates or {}).get(name, 0.0)
        if sort == "failure":
            return -row["failure"]
        if sort == "p95":
            return -(row["p95_latency_ms"] or 0.0)
        return -(row["success"] + row["failure"])

    def _cells(self, name: str, row: Mapping[str, Any]) -> dict[str, Text]:
        """Every cell a ``Text``, which rich never reads as markup."""
        calls = row["success"] + row["failure"]
        rate = None if self.rates is None else self.rates.get(name, 0.0)
        error = row["last_error"]
        failure = row["failure"]
        return {
            "calls": Text(f"{calls:,}"),
            "/s": Text("-" if rate is None else f"{rate:,.1f}"),
            "fail": Text(f"{failure:,}", style="red" if row["consecutive_failures"] else ""),
            "fail%": Text("-" if not calls else f"{failure / calls:.0%}"),
            "p50": Text(duration(row["p50_latency_ms"])),
            "p95": Text(duration(row["p95_latency_ms"])),
            "p99": Text(duration(row["p99_latency_ms"])),
            "run": Text(str(row["in_flight"])),
            "last error": printable("" if error is None else error["type"]),
        }


# Columns after ``tool`` by terminal width: what goes first when space runs short.
_WIDE = ("calls", "/s", "fail", "fail%", "p50", "p95", "p99", "run", "last error")
_NARROW = ("calls", "/s", "fail", "fail%", "p95", "p99", "run")


def _columns(width: int) -> tuple[str, ...]:
    if width >= 100:
        return _WIDE
    if width >= 80:
        return tuple(column for column in _WIDE if column != "p50")
    return _NARROW


def duration(ms: float | None) -> str:
    """At most six characters: 850ns, 12.3µs, 1.23ms, 152ms, 2.50s, 3.1m."""
    if ms is None:
        return "-"
    for limit, scale, unit in ((1e-3, 1e6, "ns"), (1.0, 1e3, "µs"), (1e3, 1.0, "ms")):
        if ms < limit:
            value = ms * scale
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
    seconds = ms / 1e3
    return f"{seconds:.3g}s" if seconds < 100 else f"{seconds / 60:.1f}m"


def run(namespace: argparse.Namespace) -> int:
    urls = [endpoint_url(text) for text in namespace.urls]
    timeout = min(MAX_TIMEOUT, namespace.interval)
    console = Console(highlight=False)
    watch = Watch(urls)
    if not console.is_terminal:
        watch.refresh(fetch_all(urls, timeout), time.monotonic())
        console.print(watch.render(console.width, namespace.sort))
        if None not in watch.status:
            raise CLIError("no endpoint answered")
        return 0
    sort: SortKey = namespace.sort
    with _keys() as read_key, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            started = time.monotonic()
            watch.refresh(fetch_all(urls, timeout), started)
            live.update(watch.render(console.width, sort, console.height), refresh=True)
            while (left := started + namespace.interval - time.monotonic()) > 0:
                key = read_key(left)
                if key == "q":
                    return 0
                if key in _SORT_BY_KEY:
                    sort = _SORT_BY_KEY[key]
                    live.update(watch.render(console.width, sort, console.height), refresh=True)


def _wait(seconds: float) -> str:
    time.sleep(seconds)
    return ""


_OVERHEAD = 6  # screen lines besides rows and endpoints: title, table edges, header, "more"
_SORT_BY_KEY: dict[str, SortKey] = {key[0]: key for key in SORT_KEYS}  # n, c, r, f, p


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """A reader of single key presses, waiting at most the given seconds ("" if none).
    The terminal is in cbreak mode meanwhile (Ctrl-C still interrupts) and restored on
    the way out, however that is; without a terminal on stdin it only waits."""
    if sys.platform == "win32" or not sys.stdin.isatty():
        yield _wait
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read_key(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 1).decode("ascii", "replace").lower() if ready else ""

    try:
        yield read_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
