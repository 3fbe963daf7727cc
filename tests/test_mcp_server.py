"""The MCP server: `codex-tools mcp` as a subprocess driven by the `mcp` package's client,
and `build_server` in process where the registry's side is what is being checked."""

from __future__ import annotations

import dataclasses
import re
import runpy
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

import codex_tools
from codex_tools import Tool, ToolRegistry, telemetry, tool
from codex_tools.contrib.mcp import build_server, tool_result
from mcp_clients import Connected, connect

TOOLS_MODULE = Path(__file__).parent / "mcp_server" / "tools_module.py"
REGISTRIES_MODULE = TOOLS_MODULE.with_name("registries_module.py")
TIMEOUT = 30  # seconds for a whole scenario; spawning the server takes about one


COMMAND = [sys.executable, "-m", "codex_tools", "mcp"]


@asynccontextmanager
async def mcp_server(errlog: Path, *args: str) -> AsyncIterator[Client]:
    """A client connected to ``python -m codex_tools mcp ARGS``, its stderr in ``errlog``."""
    params = StdioServerParameters(command=sys.executable, args=[*COMMAND[1:], *args])
    with errlog.open("w") as stderr:
        transport = stdio_client(params, errlog=stderr)
        async with Client(transport, read_timeout_seconds=TIMEOUT) as client:
            yield client


@pytest.fixture
def served_tools() -> Iterator[dict[str, Tool]]:
    """The tools the module registers, registered here too (and removed after) to compare."""
    before = {each.name for each in codex_tools.tools()}
    runpy.run_path(str(TOOLS_MODULE))
    added = {each.name: each for each in codex_tools.tools() if each.name not in before}
    yield added
    for name in added:
        codex_tools.deregister(name)


def text_of(result: Any) -> str:
    [content] = result.content
    assert content.type == "text"
    text: str = content.text
    return text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connected]:
    """One `codex-tools mcp tools_module.py` for the tests that only call it."""
    errlog = tmp_path_factory.mktemp("served") / "stderr"
    with ExitStack() as stack:
        yield connect(stack, [*COMMAND, str(TOOLS_MODULE)], errlog)


class TestServingAModuleOverStdio:
    def test_every_tool_is_listed_with_its_registry_description_and_schema(
        self, served: Connected, served_tools: dict[str, Tool]
    ) -> None:
        listed = served("list_tools").tools
        assert {each.name for each in listed} == set(served_tools)
        for each in listed:
            assert each.description == served_tools[each.name].description
            assert each.input_schema == served_tools[each.name].parameters

    def test_a_good_call_returns_its_output_and_sees_the_mcp_context(
        self, served: Connected
    ) -> None:
        added = served("call_tool", "add", {"a": 2, "b": 40})
        described = served("call_tool", "describe_call", {"topic": "weather"})
        assert not added.is_error
        assert text_of(added) == "42"
        assert not described.is_error
        assert described.structured_content == {
            "topic": "weather",
            "originator": "mcp",
            "call_id": described.structured_content["call_id"],
        }
        assert described.structured_content["call_id"]  # the JSON-RPC request id

    def test_failures_are_error_results_and_the_server_keeps_serving(
        self, served: Connected
    ) -> None:
        raised = served("call_tool", "divide", {"a": 1, "b": 0})
        bad_arguments = served("call_tool", "add", {"a": "one"})
        with pytest.raises(MCPError) as unknown:  # spec 2025-11-25: a protocol error
            served("call_tool", "no_such_tool", {})
        still_fine = served("call_tool", "divide", {"a": 1, "b": 4})
        assert raised.is_error
        assert "ZeroDivisionError" in text_of(raised)
        assert "division by zero" in text_of(raised)
        assert bad_arguments.is_error
        assert "invalid arguments for tool 'add'" in text_of(bad_arguments)
        assert unknown.value.code == -32602
        assert "no_such_tool" in unknown.value.message
        assert not still_fine.is_error
        assert text_of(still_fine) == "0.25"

    def test_nothing_but_the_protocol_reaches_stdout(self, served: Connected) -> None:
        served("call_tool", "add", {"a": 1, "b": 2})  # prints
        assert served.faults == []  # no stdout line the client could not read
        stderr = served.errlog.read_text()
        assert "tools_module: registering tools" in stderr  # printed on import
        assert "adding 1 and 2" in stderr  # printed by the tool
        assert "serving" not in stderr  # quiet without --verbose

    async def test_attr_serves_the_registry_it_names(self, tmp_path: Path) -> None:
        with anyio.fail_after(TIMEOUT):
            async with mcp_server(tmp_path / "stderr", f"{REGISTRIES_MODULE}:other") as client:
                listed = (await client.list_tools()).tools
                shouted = await client.call_tool("shout", {"text": "hi"})
        assert [each.name for each in listed] == ["shout"]
        assert text_of(shouted) == "HI"


class TestMetricsPort:
    async def test_prometheus_scrapes_the_counts_of_the_calls_served(self, tmp_path: Path) -> None:
        errlog = tmp_path / "stderr"
        with anyio.fail_after(TIMEOUT):
            async with mcp_server(
                errlog, str(TOOLS_MODULE), "--metrics-port", "0", "--verbose"
            ) as client:
                for a in (1, 2):
                    await client.call_tool("add", {"a": a, "b": 1})
                await client.call_tool("divide", {"a": 1, "b": 0})
                await client.call_tool("add", {"a": "bad"})
                # The address is printed before the server reads its first request.
                [port] = re.findall(r"http://127\.0\.0\.1:(\d+)/metrics", errlog.read_text())
                url = f"http://127.0.0.1:{port}/metrics"
                exposition = await anyio.to_thread.run_sync(scrape, url)
        calls = {
            (sample.labels["tool"], sample.labels["outcome"]): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "codex_tools_tool_calls_total"
        }
        assert calls == {
            ("add", "success"): 2,
            ("add", "failure"): 1,
            ("divide", "success"): 0,
            ("divide", "failure"): 1,
        }


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
    return body.decode()


def run_mcp_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codex_tools", "mcp", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


class TestCommandLineMistakes:
    def test_an_unimportable_module_exits_2_with_one_line(self) -> None:
        done = run_mcp_command("no_such_module_here")
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            "codex-tools: error: cannot import 'no_such_module_here': "
            "No module named 'no_such_module_here'"
        ]

    def test_a_metrics_port_in_use_exits_2_with_one_line(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run_mcp_command(str(TOOLS_MODULE), f"--metrics-port={port}")
        assert done.returncode == 2
        assert done.stdout == ""
        [line] = [each for each in done.stderr.splitlines() if "codex-tools" in each]
        assert line.startswith(f"codex-tools: error: cannot serve metrics on 127.0.0.1:{port}: ")
        assert "Traceback" not in done.stderr


class TestBuildServer:
    """In process: what the registry sees of calls made through MCP."""

    @pytest.fixture
    def registry(self) -> ToolRegistry:
        registry = ToolRegistry()

        @tool
        def echo(text: str) -> str:
            """Say it back."""
            return text

        @tool
        def broken() -> None:
            """Always fails."""
            raise RuntimeError("out of order")

        registry.register(echo)
        registry.register(broken)
        registry.register(Tool(name="off", fn=lambda: None, description="", enabled=False))
        return registry

    async def test_annotations_are_listed_for_the_client_to_decide_on_approval(
        self, registry: ToolRegistry
    ) -> None:
        @tool(title="Look up", read_only=True, destructive=False, open_world=False)
        def look_up(key: str) -> str:
            """Read a value."""
            return key

        registry.register(look_up)
        with anyio.fail_after(TIMEOUT):
            async with Client(build_server(registry)) as client:
                listed = {each.name: each for each in (await client.list_tools()).tools}
        hints = listed["look_up"].annotations
        assert hints is not None
        assert hints.model_dump(by_alias=True, exclude_none=True) == {
            "title": "Look up",
            "readOnlyHint": True,
            "destructiveHint": False,
            "openWorldHint": False,
        }
        assert listed["echo"].annotations is None

    async def test_calls_are_recorded_in_the_registry_metrics_and_telemetry(
        self, registry: ToolRegistry
    ) -> None:
        events = [("codex", "tool", "success"), ("codex", "tool", "failure")]
        with anyio.fail_after(TIMEOUT), telemetry.capture(*events) as captured:
            async with Client(build_server(registry)) as client:
                await client.call_tool("echo", {"text": "hi"})
                await client.call_tool("broken", {})
                with pytest.raises(MCPError):
                    await client.call_tool("missing", {})
        snapshot = registry.metrics()
        assert (snapshot["echo"]["success"], snapshot["echo"]["failure"]) == (1, 0)
        assert (snapshot["broken"]["success"], snapshot["broken"]["failure"]) == (0, 1)
        assert snapshot["broken"]["last_error"]["type"] == "RuntimeError"
        assert "missing" not in snapshot
        assert [event.metadata["tool"] for event in captured] == ["echo", "broken"]
        call_ids = [event.metadata["call_id"] for event in captured]
        assert all(isinstance(call_id, str) and call_id for call_id in call_ids)
        assert len(set(call_ids)) == 2

    async def test_a_disabled_tool_is_not_offered(self, registry: ToolRegistry) -> None:
        with anyio.fail_after(TIMEOUT):
            async with Client(build_server(registry)) as client:
                listed = (await client.list_tools()).tools
                called = await client.call_tool("off", {})
        assert sorted(each.name for each in listed) == ["broken", "echo"]
        assert called.is_error
        assert "disabled" in text_of(called)

    async def test_tools_registered_after_start_are_listed(self, registry: ToolRegistry) -> None:
        with anyio.fail_after(TIMEOUT):
            async with Client(build_server(registry)) as client:
                first = (await client.list_tools(cache_mode="refresh")).tools
                registry.register(lambda: "late", name="late", description="Added late.")
                second = (await client.list_tools(cache_mode="refresh")).tools
        assert "late" not in {each.name for each in first}
        assert "late" in {each.name for each in second}


class Point(pydantic.BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Pair:
    left: str
    right: str


class TestToolResult:
    def test_a_string_is_sent_as_it_is(self) -> None:
        result = tool_result('already "text"')
        assert text_of(result) == 'already "text"'
        assert result.structured_content is None

    def test_an_object_is_json_text_and_structured_content(self) -> None:
        result = tool_result({"city": "Zürich", "temp": 21.5})
        assert text_of(result) == '{"city": "Zürich", "temp": 21.5}'
        assert result.structured_content == {"city": "Zürich", "temp": 21.5}

    def test_other_json_values_are_text_only(self) -> None:
        for output, text in (([1, "two"], '[1, "two"]'), (None, "null"), (3, "3")):
            result = tool_result(output)
            assert text_of(result) == text
            assert result.structured_content is None

    def test_models_and_dataclasses_are_serialised_as_json(self) -> None:
        assert tool_result(Point(x=1, y=2)).structured_content == {"x": 1, "y": 2}
        assert text_of(tool_result(Pair("a", "b"))) == '{"left": "a", "right": "b"}'

    def test_anything_else_is_its_str(self) -> None:
        class Opaque:
            def __str__(self) -> str:
                return "<opaque thing>"

        assert text_of(tool_result(Opaque())) == "<opaque thing>"
        assert text_of(tool_result(float("nan"))) == "nan"


def test_a_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp_types", None)  # as if mcp were not installed
    monkeypatch.delitem(sys.modules, "codex_tools.contrib.mcp")
    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[mcp\]'"):
        import codex_tools.contrib.mcp  # noqa: F401
