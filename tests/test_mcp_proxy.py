"""`codex-tools proxy` in front of real MCP servers, driven by the real `mcp` client.

The third-party upstream is `mcp-server-git` (PyPI) on a temporary repository, compared
with a direct session to the same server; our own `codex-tools mcp` with slow and
crashing tools is the upstream where progress, cancellation and crashes are needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcp_clients import TIMEOUT, Connected, connect

TOOLS = Path(__file__).parent / "mcp_server" / "hostile_tools.py"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}
PROXY = [sys.executable, "-m", "codex_tools", "proxy"]
RICH_SERVER = [sys.executable, str(Path(__file__).parent / "mcp_server" / "rich_server.py")]
GIT_SERVER = [sys.executable, "-m", "mcp_server_git"]
OUR_SERVER = [sys.executable, "-m", "codex_tools", "mcp", str(TOOLS)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repo")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "notes.txt"], ["commit", "-qm", "first"]):
        if args[0] == "add":
            (path / "notes.txt").write_text("hello\n")
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


@pytest.fixture(scope="module")
def git(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Connected, Connected]]:
    """(direct, proxied) sessions to mcp-server-git on the same repository."""
    logs = tmp_path_factory.mktemp("git")
    upstream = [*GIT_SERVER, "--repository", str(repo)]
    with ExitStack() as stack:
        direct = connect(stack, upstream, logs / "direct", GIT_ENV)
        proxied = connect(
            stack,
            [*PROXY, "--metrics-port", "0", "--verbose", "--", *upstream],
            logs / "proxy",
            GIT_ENV,
        )
        yield direct, proxied


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connected]:
    """A session through the proxy to our own server of slow and hostile tools."""
    with ExitStack() as stack:
        yield connect(stack, [*PROXY, "--", *OUR_SERVER], tmp_path_factory.mktemp("ours") / "log")


def dumped(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


class TestTransparency:
    def test_the_tool_list_is_the_upstreams_field_by_field(
        self, git: tuple[Connected, Connected]
    ) -> None:
        direct, proxied = git
        expected = [dumped(each) for each in direct("list_tools").tools]
        listed = [dumped(each) for each in proxied("list_tools").tools]
        assert len(listed) == len(expected) >= 10
        for mine, theirs in zip(listed, expected, strict=True):
            assert mine == theirs

    def test_annotations_are_listed(self, git: tuple[Connected, Connected]) -> None:
        _, proxied = git
        listed = {each.name: each for each in proxied("list_tools").tools}
        assert listed["git_status"].annotations.read_only_hint is True
        assert listed["git_reset"].annotations.destructive_hint is True

    @pytest.mark.parametrize(
        ("tool", "arguments"),
        [
            ("git_status", {}),
            ("git_log", {"max_count": 5}),
            ("git_show", {"revision": "HEAD"}),
            ("git_show", {"revision": "no-such-revision"}),  # an isError result
            ("git_status", {"repo_path": 42}),  # the upstream's own validation
        ],
    )
    def test_results_are_the_upstreams_field_by_field(
        self, git: tuple[Connected, Connected], repo: Path, tool: str, arguments: dict[str, Any]
    ) -> None:
        direct, proxied = git
        arguments = {"repo_path": str(repo), **arguments}
        theirs = dumped(direct("call_tool", tool, arguments))
        mine = dumped(proxied("call_tool", tool, arguments))
        assert mine == theirs

    def test_an_unknown_tool_is_a_protocol_error(self, git: tuple[Connected, Connected]) -> None:
        _, proxied = git
        with pytest.raises(MCPError) as raised:
            proxied("call_tool", "no_such_tool", {})
        assert raised.value.code == -32602


class Rich:
    def __init__(self, direct: Connected, proxied: Connected) -> None:
        self.direct = direct
        self.proxied = proxied

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return dumped(self.direct(method, *args, **kwargs)), dumped(
            self.proxied(method, *args, **kwargs)
        )


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rich]:
    """Direct and proxied sessions to an upstream with titles, output schemas, content
    blocks, resources, prompts and a changing tool list."""
    logs = tmp_path_factory.mktemp("rich")
    with ExitStack() as stack:
        direct = connect(stack, RICH_SERVER, logs / "direct")
        proxied = connect(stack, [*PROXY, "--", *RICH_SERVER], logs / "proxy")
        yield Rich(direct, proxied)


class TestEverythingPassesThrough:
    def test_the_server_describes_itself_as_the_upstream_does(self, rich: Rich) -> None:
        assert rich.proxied.client.server_info.name == "rich-upstream"
        assert rich.proxied.client.server_info.version == "1.2.3"
        assert rich.proxied.client.instructions == "Use weather for the weather."
        capabilities = rich.proxied.client.server_capabilities
        assert capabilities.resources is not None
        assert capabilities.prompts is not None
        assert capabilities.tools is not None
        assert capabilities.tools.list_changed is True

    def test_titles_output_schemas_annotations_and_meta_are_listed(self, rich: Rich) -> None:
        theirs, mine = rich.both("list_tools")
        assert mine["tools"][:2] == theirs["tools"][:2]
        assert mine["tools"][0]["title"] == "Weather"
        assert mine["tools"][0]["outputSchema"]["required"] == ["city", "celsius"]
        assert mine["tools"][0]["_meta"] == {"vendor/tag": "kept"}

    @pytest.mark.parametrize(
        ("tool", "arguments"), [("weather", {"city": "Zürich"}), ("snapshot", {}), ("nope", {})]
    )
    def test_content_blocks_and_structured_content_are_the_upstreams(
        self, rich: Rich, tool: str, arguments: dict[str, Any]
    ) -> None:
        if tool == "nope":  # unknown here: a protocol error, where the upstream said isError
            with pytest.raises(MCPError):
                rich.proxied("call_tool", tool, arguments)
            return
        theirs, mine = rich.both("call_tool", tool, arguments)
        assert mine == theirs

    def test_resources_and_prompts_are_the_upstreams(self, rich: Rich) -> None:
        for method, args in (
            ("list_resources", ()),
            ("read_resource", ("file:///notes.txt",)),
            ("list_prompts", ()),
            ("get_prompt", ("review",)),
        ):
            theirs, mine = rich.both(method, *args)
            assert mine == theirs, method

    def test_a_changed_tool_list_is_imported_and_announced(self, rich: Rich) -> None:
        assert not rich.proxied("call_tool", "grow", {}).is_error

        def announced() -> bool:
            return any(
                getattr(message, "method", "") == "notifications/tools/list_changed"
                for message in rich.proxied.heard
            )

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not announced():
            time.sleep(0.02)
        assert announced()
        listed = {each.name for each in rich.proxied("list_tools", cache_mode="refresh").tools}
        assert "grown" in listed
        assert rich.proxied("call_tool", "grown", {}).content[0].text == "I am new"


async def test_a_2026_client_hears_of_a_changed_tool_list_on_its_listen_stream(
    tmp_path: Path,
) -> None:
    params = StdioServerParameters(command=PROXY[0], args=[*PROXY[1:], "--", *RICH_SERVER])
    with anyio.fail_after(TIMEOUT), (tmp_path / "stderr").open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:  # discovers 2026-07-28
            assert client.protocol_version == "2026-07-28"
            async with client.listen(tools_list_changed=True) as changes:
                await client.call_tool("grow", {})
                async for event in changes:
                    assert type(event).__name__ == "ToolsListChanged"
                    break
            listed = {each.name for each in (await client.list_tools()).tools}
    assert "grown" in listed


async def test_an_upstream_answer_json_rpc_cannot_read_is_answered_never_dropped(
    tmp_path: Path,
) -> None:
    raw = [sys.executable, str(Path(__file__).parent / "mcp_server" / "raw_server.py")]
    params = StdioServerParameters(command=PROXY[0], args=[*PROXY[1:], "--", *raw])
    with anyio.fail_after(TIMEOUT), (tmp_path / "stderr").open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr), mode="legacy") as client:
            escaped = await client.call_tool("name_of_file", {})  # a lone surrogate, escaped
            malformed = await client.call_tool("bad_answer", {})  # "result": "not an object"
    assert escaped.content[0].text == "caf\ufffd.txt"
    assert malformed.is_error
    assert "not a JSON-RPC message" in malformed.content[0].text


@pytest.mark.slow
async def test_messages_bigger_than_a_pipe_arrive_whole_among_small_ones(tmp_path: Path) -> None:
    """A message the pipe cannot take at once is written in parts, each way; the ones
    sent meanwhile wait their turn instead of cutting into it."""
    params = StdioServerParameters(command=PROXY[0], args=[*PROXY[1:], "--", *OUR_SERVER])
    answers: dict[int, str] = {}
    with anyio.fail_after(TIMEOUT), (tmp_path / "stderr").open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr), mode="legacy") as client:

            async def call(n: int) -> None:
                big = n % 3 == 0  # ~200 KB of arguments out, 300 KB of text back
                arguments = {"codepoints": [65 + n] * (50_000 if big else 1), "repeat": 6}
                result = await client.call_tool("echo", arguments)
                answers[n] = result.content[0].text

            async with anyio.create_task_group() as tasks:
                for n in range(12):
                    tasks.start_soon(call, n)
    assert answers == {n: chr(65 + n) * (300_000 if n % 3 == 0 else 6) for n in range(12)}


class TestMetering:
    def test_every_call_is_counted_and_an_error_result_is_a_failure(
        self, git: tuple[Connected, Connected], repo: Path
    ) -> None:
        _, proxied = git
        for _ in range(2):
            assert not proxied(
                "call_tool", "git_branch", {"repo_path": str(repo), "branch_type": "local"}
            ).is_error
        failed = proxied(
            "call_tool", "git_checkout", {"repo_path": str(repo), "branch_name": "nope"}
        )
        assert failed.is_error
        [port] = re.findall(r"http://127\.0\.0\.1:(\d+)/metrics", proxied.errlog.read_text())
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT
        ) as response:
            exposition = response.read().decode()
        calls = {
            (sample.labels["tool"], sample.labels["outcome"]): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "codex_tools_tool_calls_total"
        }
        assert calls[("git_branch", "success")] == 2
        assert calls[("git_branch", "failure")] == 0
        assert calls[("git_checkout", "failure")] == 1


class TestProgressAndCancellation:
    def test_progress_comes_back_from_the_upstream(self, ours: Connected) -> None:
        seen: list[tuple[float, float | None]] = []

        async def note(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total))

        result = ours("call_tool", "slow", {"steps": 3}, progress_callback=note)
        assert result.content[0].text == "done"
        assert seen == [(1, 3), (2, 3), (3, 3)]

    def test_the_upstream_is_asked_for_progress_only_when_the_client_asked(
        self, ours: Connected
    ) -> None:
        async def ignore(progress: float, total: float | None, message: str | None) -> None:
            pass

        asked = ours("call_tool", "progress_asked", {}, progress_callback=ignore)
        not_asked = ours("call_tool", "progress_asked", {})
        assert (asked.content[0].text, not_asked.content[0].text) == ("true", "false")

    def test_a_cancelled_call_is_cancelled_upstream(self, ours: Connected) -> None:
        async def cancel_after_first_progress() -> None:
            started = anyio.Event()

            async def note(progress: float, total: float | None, message: str | None) -> None:
                started.set()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    lambda: ours.client.call_tool("slow", {"steps": 100}, progress_callback=note)
                )
                with anyio.fail_after(TIMEOUT):
                    await started.wait()
                tasks.cancel_scope.cancel()

        ours.run(cancel_after_first_progress)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # the cancellation travels two hops
            counted = ours("call_tool", "counts", {}).structured_content
            if counted.get("slow", [0, 0])[1] >= 1:
                break
            time.sleep(0.05)
        assert counted["slow"][1] == 1  # the upstream's own count: a cancelled call


class TestUpstreamFailures:
    @pytest.mark.slow
    async def test_a_call_the_upstream_does_not_answer_in_time_fails_and_is_cancelled_there(
        self, tmp_path: Path
    ) -> None:
        args = [*PROXY[1:], "--call-timeout", "1", "--", *OUR_SERVER]
        params = StdioServerParameters(command=PROXY[0], args=args)
        with anyio.fail_after(TIMEOUT), (tmp_path / "stderr").open("w") as stderr:
            async with Client(stdio_client(params, errlog=stderr), mode="legacy") as client:
                stuck = await client.call_tool("slow", {"steps": 600})  # a minute
                counted: dict[str, list[int]] = {}
                while counted.get("slow", [0, 0])[1] < 1:  # the upstream's own count
                    counted = (await client.call_tool("counts", {})).structured_content
        assert stuck.is_error
        assert stuck.content[0].text == "tool 'slow' timed out after 1.0 s"
        assert counted["slow"] == [0, 1]

    async def test_an_upstream_crashing_mid_call_gives_an_error_result_and_the_proxy_exits(
        self, tmp_path: Path
    ) -> None:
        errlog = tmp_path / "stderr"
        params = StdioServerParameters(command=PROXY[0], args=[*PROXY[1:], "--", *OUR_SERVER])
        with anyio.fail_after(TIMEOUT), errlog.open("w") as stderr:
            async with Client(stdio_client(params, errlog=stderr), mode="legacy") as client:
                result = await client.call_tool("crash", {})
                assert result.is_error
                assert "Connection closed" in result.content[0].text
        assert "the upstream MCP server exited (exit status 3); stopping" in errlog.read_text()

    @pytest.mark.parametrize(
        ("upstream", "reason"),
        [
            (["/no/such/server"], "cannot start the upstream MCP server '/no/such/server'"),
            (
                [sys.executable, "-c", "import sys; sys.exit(3)"],
                "the upstream MCP server ended before it was ready (exit status 3)",
            ),
            (
                [sys.executable, "-c", "import time; time.sleep(60)"],
                "the upstream MCP server did not start within 1 s",
            ),
            (  # a proxy of nothing refuses every request, initialize first
                [*PROXY, "--", "/no/such/server"],
                "the upstream MCP server refused to start: codex-tools proxy: cannot start",
            ),
        ],
        ids=["missing", "exits", "hangs", "refuses"],
    )
    async def test_an_upstream_that_does_not_start_is_a_clear_error(
        self, tmp_path: Path, upstream: list[str], reason: str
    ) -> None:
        errlog = tmp_path / "stderr"
        args = [*PROXY[1:], "--startup-timeout", "1", "--", *upstream]
        params = StdioServerParameters(command=PROXY[0], args=args)
        with (
            anyio.fail_after(TIMEOUT),
            errlog.open("w") as stderr,
            pytest.raises(BaseException) as raised,  # noqa: PT011  (the client groups it)
        ):
            async with Client(stdio_client(params, errlog=stderr), mode="legacy"):
                pass
        error = raised.value
        while isinstance(error, BaseExceptionGroup):
            [error] = error.exceptions
        assert isinstance(error, MCPError)
        assert reason in error.message
        assert f"codex-tools: error: {reason}" in errlog.read_text()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def initialized(server: subprocess.Popen[bytes]) -> None:
    """Shake hands by hand, and start a call that blocks a worker thread for a minute."""
    assert server.stdin is not None
    assert server.stdout is not None
    params = types.InitializeRequestParams(
        protocol_version="2025-11-25",
        capabilities=types.ClientCapabilities(),
        client_info=types.Implementation(name="test", version="0"),
    )
    call = types.CallToolRequestParams(name="nap", arguments={"seconds": 60})
    for message in (
        types.JSONRPCRequest(jsonrpc="2.0", id=1, method="initialize", params=dumped(params)),
        types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"),
        types.JSONRPCRequest(jsonrpc="2.0", id=2, method="tools/call", params=dumped(call)),
    ):
        server.stdin.write(message.model_dump_json(by_alias=True).encode() + b"\n")
        server.stdin.flush()
        if isinstance(message, types.JSONRPCRequest) and message.id == 1:
            assert json.loads(server.stdout.readline())["id"] == 1  # serving, upstream up too
    time.sleep(0.5)  # the call reaches the tool


def ended(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


#: How clients stop a stdio server: Claude Code signals the server's process (SIGINT, then
#: SIGTERM 100 ms later); Codex CLI its process group (SIGTERM, then SIGKILL milliseconds
#: later).
STOPS = ["SIGINT", "SIGTERM", "SIGINT, SIGTERM", "group SIGTERM, SIGKILL", "stdin closed"]


def stopped(server: subprocess.Popen[bytes], stop: str) -> set[int]:
    """Stop ``server`` the way ``stop`` says; the exit statuses it may end with."""
    assert server.stdin is not None
    if stop == "stdin closed":
        server.stdin.close()
        return {0}
    if stop == "group SIGTERM, SIGKILL":
        os.killpg(server.pid, signal.SIGTERM)
        time.sleep(0.005)
        os.killpg(server.pid, signal.SIGKILL)
        return {128 + signal.SIGTERM, -signal.SIGKILL}  # whichever ended it
    first, *then = (signal.Signals[name] for name in stop.split(", "))
    server.send_signal(first)
    for signum in then:
        time.sleep(0.1)
        if server.poll() is None:
            server.send_signal(signum)
    return {128 + first}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "stop"),
    [("proxy", stop) for stop in STOPS] + [("mcp", stop) for stop in STOPS if "group" not in stop],
)
def test_the_server_and_its_upstream_end_at_once_while_a_tool_is_stuck(
    command: str, stop: str, tmp_path: Path
) -> None:
    """Also what the upstream started: a wrapper's helper process (as npx or a shell
    script leaves one) ends with it when the client ends the server's process group."""
    wrapper = tmp_path / "upstream.sh"
    wrapper.write_text(f"sleep 60 &\nexec {' '.join(OUR_SERVER)} --metrics-port 0\n")
    argv = (
        [*OUR_SERVER, "--metrics-port", "0"]
        if command == "mcp"
        else [*PROXY, "--", "sh", str(wrapper)]
    )
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a process group of its own, as clients start servers
    ) as server:
        try:
            initialized(server)
            upstream = children(server.pid) if command == "proxy" else []
            assert len(upstream) == (1 if command == "proxy" else 0)
            helpers = [pid for each in upstream for pid in children(each)]
            expected = stopped(server, stop)
            assert server.wait(timeout=5) in expected
            assert ended(upstream)
            if command == "proxy" and stop == "group SIGTERM, SIGKILL":
                assert helpers
                assert ended(helpers)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)


class TestTracing:
    """The proxy process makes the SDK's span per request free only where nobody traces."""

    @staticmethod
    def _python(code: str) -> None:  # in a process of its own: a provider is set once
        subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)

    def test_a_provider_someone_set_is_kept(self) -> None:
        self._python(
            "from opentelemetry import trace\n"
            "from opentelemetry.sdk.trace import TracerProvider\n"
            "from codex_tools.contrib.mcp._proxy import trace_nothing\n"
            "provider = TracerProvider()\n"
            "trace.set_tracer_provider(provider)\n"
            "trace_nothing()\n"
            "assert trace.get_tracer_provider() is provider\n"
            "with trace.get_tracer('mcp-python-sdk').start_as_current_span('s') as span:\n"
            "    assert span.is_recording()\n"
        )

    def test_without_one_the_sdk_span_records_nothing_and_changes_no_context(self) -> None:
        self._python(
            "from opentelemetry import trace\n"
            "from mcp.shared._otel import inject_trace_context, otel_span\n"
            "from codex_tools.contrib.mcp._proxy import trace_nothing\n"
            "trace_nothing()\n"
            "with otel_span('MCP send', kind=trace.SpanKind.CLIENT) as span:\n"
            "    assert not span.is_recording()\n"
            "    assert trace.get_current_span() is trace.INVALID_SPAN\n"
            "    meta = {}\n"
            "    inject_trace_context(meta)\n"
            "    assert meta == {}\n"
        )
