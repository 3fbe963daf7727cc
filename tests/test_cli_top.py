"""``codex-tools top``: live endpoints merged into one table, in a script and in a real
terminal (tmux)."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from codex_tools import ToolExecutionError, ToolRegistry
from codex_tools._cli import main
from codex_tools._cli.top import Watch, duration, endpoint_url
from codex_tools.contrib.prometheus import serve_metrics

WORKER = Path(__file__).with_name("metrics_worker.py")
HOSTILE = "list[bold]\udc80 \x1b[31mred\n[/]"


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("9464", "http://127.0.0.1:9464/metrics.json"),
        ("localhost:9464", "http://localhost:9464/metrics.json"),
        ("http://10.0.0.2:9464", "http://10.0.0.2:9464/metrics.json"),
        ("http://h:1/", "http://h:1/metrics.json"),
        ("http://h:1/metrics", "http://h:1/metrics.json"),
        ("http://h:1/metrics.json", "http://h:1/metrics.json"),
        ("https://h/app/metrics/", "https://h/app/metrics.json"),
        ("http://[::1]:80/other.json", "http://[::1]:80/other.json"),
    ],
)
def test_a_url_with_or_without_its_path_names_the_json_snapshot(given: str, url: str) -> None:
    assert endpoint_url(given) == url


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ftp://h:1"], "is not an http:// URL"),
        (["http://h:99999"], "has no valid port"),
        (["http://"], "is not an http:// URL"),
        (["http://[::1"], "is not an http:// URL"),
        (["[::1:9464"], "is not an http:// URL"),
        (["1", "--interval", "0"], "is not an interval"),
        (["1", "--interval", "nan"], "is not an interval"),
        (["1", "--sort", "size"], "invalid choice"),
    ],
)
def test_a_wrong_argument_is_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _exit_code(lambda: main(["top", *argv]))
    err = capsys.readouterr().err
    assert code == 2
    assert words in err
    assert len(err.strip().splitlines()) == 1


def _exit_code(run: Callable[[], int]) -> int:
    try:
        return run()
    except SystemExit as exit_:
        return int(exit_.code or 0)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0.000_85, "850ns"),
        (0.012_34, "12.3µs"),
        (1.234, "1.23ms"),
        (152.0, "152ms"),
        (2_500.0, "2.5s"),
        (186_000.0, "3.1m"),
    ],
)
def test_durations_fit_six_characters(ms: float | None, text: str) -> None:
    assert duration(ms) == text
    assert len(duration(ms)) <= 6


def snapshot(calls: int, failures: int = 0) -> dict[str, dict[str, Any]]:
    registry = ToolRegistry()
    registry.register(lambda fail: 1 / (not fail), name="t")
    for n in range(calls):
        with contextlib.suppress(ToolExecutionError):
            registry.invoke("t", {"fail": n < failures})
    return registry.metrics(buckets=True)


class TestRates:
    def test_rates_are_calls_per_second_over_the_last_interval_summed(self) -> None:
        watch = Watch(["a", "b"])
        watch.refresh([snapshot(10), snapshot(4)], now=100.0)
        assert watch.rates is None  # one refresh: no interval yet
        watch.refresh([snapshot(30), snapshot(8)], now=102.0)
        assert watch.rates == {"t": (20 + 4) / 2}
        assert watch.merged["t"]["success"] == 38

    def test_an_endpoint_going_down_or_coming_back_makes_no_jump(self) -> None:
        watch = Watch(["a", "b"])
        watch.refresh([snapshot(10), snapshot(50)], now=0.0)
        watch.refresh([snapshot(12), "Connection refused"], now=1.0)
        assert (watch.rates, watch.status) == ({"t": 2.0}, [None, "Connection refused"])
        assert watch.merged["t"]["success"] == 12  # the merge is of those up
        watch.refresh([snapshot(14), snapshot(70)], now=2.0)
        assert watch.rates == {"t": 2.0}  # b has no interval yet
        watch.refresh([snapshot(3), snapshot(71)], now=3.0)  # a restarted: 3 new calls
        assert watch.rates == {"t": 3.0 + 1.0}


@contextmanager
def endpoint(body: bytes | None, length: int | None = None) -> Iterator[str]:
    """A server answering every GET with ``body`` (announcing ``length`` bytes, if given),
    or (None) accepting and never answering."""
    if body is None:
        with socket.create_server(("127.0.0.1", 0)) as hung:
            yield f"127.0.0.1:{hung.getsockname()[1]}"
        return

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def raw_endpoint(data: bytes) -> Iterator[str]:
    """A server that answers the first connection with ``data``, not HTTP."""
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(data)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        yield f"127.0.0.1:{server.getsockname()[1]}"
        thread.join(10)


class TestWithoutATerminal:
    def test_prints_one_merged_table_with_names_shown_literally(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("COLUMNS", "120")  # the name on one line
        registries = [ToolRegistry(), ToolRegistry()]
        for count, registry in zip((3, 4), registries, strict=True):
            registry.register(lambda: None, name=HOSTILE)
            registry.register(lambda: None, name="plain")
            for _ in range(count):
                registry.invoke(HOSTILE)
                registry.invoke("plain")
        with serve_metrics(registries[0]) as one, serve_metrics(registries[1]) as two:
            code = main(["top", one.url, f"{two.url}/metrics"])
        out = capsys.readouterr().out
        assert code == 0
        assert re.search(r"^ plain +7 +- +0 +0% ", out, re.MULTILINE)
        assert " list[bold]\\udc80 \\x1b[31mred [/] " in out  # on one line, no markup
        assert "\x1b" not in out
        assert "2/2 up" in out

    def test_endpoints_down_hung_or_wrong_are_marked_and_the_rest_shown(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        registry = ToolRegistry()
        registry.register(lambda: None, name="alive")
        registry.invoke("alive")
        closed = serve_metrics(registry)
        closed.close()
        with (
            serve_metrics(registry) as up,
            endpoint(None) as hung,
            endpoint(b"[1, 2]") as wrong,
            endpoint(b"\xff") as binary,
            endpoint(b"{}", length=100) as cut,
            raw_endpoint(b"SSH-2.0-OpenSSH\r\n") as ssh,
        ):
            started = time.monotonic()
            urls = [up.url, closed.url, hung, wrong, binary, cut, ssh]
            code = main(["top", *urls, "--interval", "0.2"])
            took = time.monotonic() - started
        out = capsys.readouterr().out
        assert code == 0
        assert re.search(r"^ alive +1 ", out, re.MULTILINE)
        assert "1/7 up" in out
        assert f"{closed.url}/metrics.json  down: Connection refused" in out
        assert f"{hung}/metrics.json  down: timed out" in out
        assert f"{wrong}/metrics.json  down: not a metrics snapshot" in out
        assert f"{binary}/metrics.json  down: not JSON" in out
        assert f"{cut}/metrics.json  down: response cut short" in out
        assert f"{ssh}/metrics.json  down: BadStatusLine" in out
        assert took < 30  # bounded by the timeout, not by the hung endpoint

    def test_no_endpoint_answering_is_an_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        closed = serve_metrics(ToolRegistry())
        closed.close()
        assert main(["top", closed.url]) == 2
        assert capsys.readouterr().err == "codex-tools: error: no endpoint answered\n"


# -- in a real terminal -----------------------------------------------------------------


class Terminal:
    """A tmux session of its own server (socket), 100 columns by 30 rows."""

    def __init__(self, name: str) -> None:
        self.socket = name
        shell = "env PS1='$ ' bash --norc --noprofile"
        self.tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", shell)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, check: Callable[[str], Any], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the terminal never showed what was expected:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False)


def fast_calls(screen: str) -> int | None:
    found = re.search(r"^ fast +([\d,]+) ", screen, re.MULTILINE)
    return None if found is None else int(found[1].replace(",", ""))


@contextmanager
def worker(seed: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(seed), "forever"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process
    finally:
        process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_live_view_marks_a_stopped_endpoint_down_keeps_updating_and_quits_cleanly() -> None:
    terminal = Terminal(f"codex-tools-top-{os.getpid()}")
    try:
        with worker(0) as (first, _), worker(1) as (second, stopping):
            terminal.type(
                f"{sys.executable} -m codex_tools top {first} {second} --interval 0.3", "Enter"
            )
            terminal.wait_for(lambda s: "2/2 up" in s and fast_calls(s))
            terminal.type("f")  # sort by failures: the failing tool comes first
            terminal.wait_for(lambda s: "by failure" in s and re.search(r"─\n fail ", s))
            stopping.kill()
            stopping.wait()
            screen = terminal.wait_for(lambda s: "1/2 up" in s)
            assert f"{second}/metrics.json  down: Connection refused" in screen
            before = fast_calls(screen)
            assert before is not None
            terminal.wait_for(lambda s: (fast_calls(s) or 0) > before)  # the other goes on
            terminal.type("C-c")
            terminal.wait_for(lambda s: s.rstrip().endswith("$"))
            terminal.type("echo exit=$?", "Enter")
            screen = terminal.wait_for(lambda s: "exit=" in s.replace("echo exit=", ""))
        assert re.search(r"^exit=(0|130)$", screen, re.MULTILINE)
        assert "Traceback" not in screen
        terminal.type("stty -a | grep -o -- '-*icanon' | sed s/^/mode:/", "Enter")
        screen = terminal.wait_for(lambda s: re.search(r"^mode:", s, re.MULTILINE))
        assert re.search(r"^mode:icanon$", screen, re.MULTILINE)  # keys read line by line again
        terminal.type("clear", "Enter")
        terminal.type(f"{sys.executable} -m codex_tools top 1 --interval 0.3", "Enter")
        terminal.wait_for(lambda s: "0/1 up" in s)
        terminal.type("q")
        terminal.wait_for(lambda s: s.rstrip().endswith("$"))
        terminal.type("echo exit=$?", "Enter")
        screen = terminal.wait_for(lambda s: "exit=" in s.replace("echo exit=", ""))
        assert re.search(r"^exit=0$", screen, re.MULTILINE)
        assert "fast" not in screen  # the live table went with the alternate screen
        state = terminal.tmux("display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}")
        assert state.split() == ["0", "1"]  # back on the main screen, cursor shown
    finally:
        terminal.close()


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_the_table_fits_the_terminal_from_60_columns(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    registry = ToolRegistry()
    registry.register(lambda: None, name="a_rather_long_tool_name_from_some_mcp_server")
    for _ in range(1234):
        registry.invoke("a_rather_long_tool_name_from_some_mcp_server")
    with serve_metrics(registry) as server:
        assert main(["top", server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    [header] = [line for line in lines if line.startswith(" tool ")]
    assert all(word in header for word in ("tool", "calls", "/s", "fail%", "p95", "p99"))
    assert ("last error" in header) == (columns >= 80)
    assert any("1,234" in line for line in lines)


def test_a_live_screen_shows_the_rows_that_fit_and_says_how_many_more() -> None:
    registry = ToolRegistry()
    for n in range(40):
        registry.register(lambda: None, name=f"tool_{n:02}")
        for _ in range(n):
            registry.invoke(f"tool_{n:02}")
    watch = Watch(["one", "two"])
    watch.refresh([registry.metrics(buckets=True), registry.metrics(buckets=True)], now=0.0)
    console = Console(file=io.StringIO(), width=100, height=30)
    console.print(watch.render(100, "calls", height=30))
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    rows = re.findall(r"^ (tool_\d\d) ", screen, re.MULTILINE)
    assert rows == [f"tool_{n:02}" for n in range(39, 39 - 22, -1)]  # the most called first
    assert "… and 17 more" in screen  # tool_00, never called, has no row
    assert len(screen.splitlines()) <= 30
