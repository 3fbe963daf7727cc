"""`codex-tools mcp` against tools that misbehave: one server process, the real `mcp`
client over stdio, many requests. Nothing may crash, every request is answered, and the
server's counts are exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from mcp_clients import Connected, connect

TOOLS = Path(__file__).parent / "mcp_server" / "hostile_tools.py"

#: What the tests below asked of each tool: tool -> Counter(success=..., failure=...).
asked: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connected]:
    errlog = tmp_path_factory.mktemp("hostile") / "stderr"
    with ExitStack() as stack:
        yield connect(stack, [sys.executable, "-m", "codex_tools", "mcp", str(TOOLS)], errlog)


def call(served: Connected, name: str, arguments: dict[str, Any], *, ok: bool | None = None) -> Any:
    """Call a tool; ``ok`` says whether it is expected to count as a success."""
    result = served("call_tool", name, arguments)
    if ok is not None:
        asked.setdefault(name, Counter())["success" if ok else "failure"] += 1
    return result


def text_of(result: Any) -> str:
    [content] = result.content
    text: str = content.text
    return text


def on_the_wire(text: str) -> str:
    """What UTF-8 can carry of ``text``: U+FFFD for each lone surrogate."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# Any code point, lone surrogates and control characters included, and rich markup.
hostile_text = st.lists(
    st.one_of(
        st.integers(min_value=0, max_value=0x10FFFF),
        st.sampled_from([0xD800, 0xDFFF, 0xDCE9, 0, 0x1B, 0x7F]),
        st.sampled_from([ord(c) for c in '[bold]{}"\\\n\r\t</script>']),
    ),
    max_size=40,
)


class TestHostileOutputs:
    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(codepoints=hostile_text, repeat=st.integers(min_value=1, max_value=3))
    @example(codepoints=[0xD800, 0x41], repeat=500_000)  # ~1 MB with a lone surrogate
    @example(codepoints=[ord("["), ord("b"), ord("]"), 0x1B], repeat=250_000)
    def test_any_output_or_error_text_is_answered_and_counted(
        self, served: Connected, codepoints: list[int], repeat: int
    ) -> None:
        arguments = {"codepoints": codepoints, "repeat": repeat}
        echoed = call(served, "echo", arguments, ok=True)
        failed = call(served, "fail", arguments, ok=False)
        text = "".join(map(chr, codepoints)) * repeat
        assert not echoed.is_error
        assert text_of(echoed) == on_the_wire(text)
        assert failed.is_error
        assert text_of(failed).startswith("tool 'fail' failed: RuntimeError: ")
        assert on_the_wire(text)[:100] in text_of(failed) or len(text) > 1000

    def test_a_file_name_that_is_not_utf8_arrives_with_a_replacement_character(
        self, served: Connected
    ) -> None:
        result = call(served, "file_names", {}, ok=True)
        assert not result.is_error
        assert text_of(result) == '["caf\ufffd.txt", "plain.txt"]'

    def test_a_value_json_cannot_hold_arrives_as_text(self, served: Connected) -> None:
        result = call(served, "not_json", {}, ok=True)
        assert not result.is_error
        assert "tuple key" in text_of(result)
        assert result.structured_content is None

    def test_an_output_that_breaks_everything_is_still_answered(self, served: Connected) -> None:
        result = call(served, "unprintable", {}, ok=True)  # the tool itself succeeded
        assert result.is_error
        assert text_of(result).startswith("the output could not be sent")

    def test_system_exit_from_a_tool_is_a_failure_and_the_server_lives_on(
        self, served: Connected
    ) -> None:
        result = call(served, "exits", {"code": 2}, ok=False)
        assert result.is_error
        assert "SystemExit" in text_of(result)
        assert not call(served, "echo", {"codepoints": [104, 105]}, ok=True).is_error

    def test_mcp_content_goes_out_as_it_is(self, served: Connected) -> None:
        result = call(served, "picture", {}, ok=True)
        [image] = result.content
        assert (image.type, image.mime_type, image.data) == ("image", "image/png", "iVBORw0KGgo=")

    def test_a_tool_can_fail_with_a_result_of_its_own(self, served: Connected) -> None:
        result = call(served, "refuse", {}, ok=False)
        assert result.is_error
        assert text_of(result) == "no access"
        assert result.structured_content == {"reason": "denied"}

    def test_an_unknown_tool_is_a_protocol_error(self, served: Connected) -> None:
        with pytest.raises(MCPError) as raised:
            call(served, "no_such_tool", {})
        assert raised.value.code == -32602

    def test_the_counts_are_exact(self, served: Connected) -> None:
        counted = call(served, "counts", {}).structured_content
        for name, expected in asked.items():
            assert counted[name] == [expected["success"], expected["failure"]], name


class TestListing:
    def test_a_bad_schema_hides_only_its_tool_and_is_reported_once(self, served: Connected) -> None:
        first = served("list_tools")
        second = served("list_tools")
        names = {each.name for each in first.tools}
        assert "bad_schema" not in names
        assert {"echo", "fail", "undocumented", "slow", "caf\ufffd"} <= names
        assert len(second.tools) == len(first.tools)
        warnings = [line for line in served.errlog.read_text().splitlines() if "bad_schema" in line]
        assert len(warnings) == 1

    def test_a_tool_without_a_docstring_has_a_description(self, served: Connected) -> None:
        listed = {each.name: each for each in served("list_tools").tools}
        assert listed["undocumented"].description

    def test_a_bad_cursor_is_a_protocol_error(self, served: Connected) -> None:
        import mcp_types as types

        with pytest.raises(MCPError) as raised:
            served.run(
                lambda: served.client.session.list_tools(
                    params=types.PaginatedRequestParams(cursor="nonsense")
                )
            )
        assert raised.value.code == -32602


class TestProgress:
    @pytest.mark.parametrize("name", ["slow", "slow_sync"])
    def test_a_tool_reports_progress_to_a_client_that_asked(
        self, served: Connected, name: str
    ) -> None:
        seen: list[tuple[float, float | None, str | None]] = []

        async def note(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        async def call() -> Any:
            return await served.client.call_tool(name, {"steps": 3}, progress_callback=note)

        result = served.run(call)
        assert text_of(result) == "done"
        assert [(p, t) for p, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]


def test_a_request_json_rpc_cannot_read_is_answered_and_the_server_goes_on() -> None:
    lines = [
        b"not json at all",  # JSON-RPC 2.0: a parse error, answered with id null
        b"\xff\xfe{",
        b'{"jsonrpc": "2.0", "id": 7, "method": 42}',  # an id: answered -32600 for it
        b'{"jsonrpc": "2.0", "id": [1], "method": "tools/list"}',  # ids it cannot echo
        b'{"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": null, "method": "tools/list"}',
        b'[{"jsonrpc": "2.0", "id": 3, "method": "ping"}]',  # MCP has no batches
        b'{"jsonrpc": "2.0", "id": 4, "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 9, "method": []}',  # the last line: still answered
    ]
    command = [sys.executable, "-m", "codex_tools", "mcp", str(TOOLS)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as server:
        out, _ = server.communicate(b"\n".join(lines) + b"\n", timeout=30)
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == len(lines)  # each line answered once
    by_id = {answer["id"]: answer for answer in answers if answer["id"] is not None}
    assert by_id[7]["error"]["code"] == -32600
    assert by_id[8]["result"] == {}
    assert by_id[9]["error"]["code"] == -32600
    unidentified = [answer["error"]["code"] for answer in answers if answer["id"] is None]
    assert sorted(unidentified) == [-32700] * 3 + [-32600] * 5  # nested too deep: -32700


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")), max_size=20))
def test_every_line_a_peer_sends_is_a_message_or_answered_once(lines: list[bytes]) -> None:
    """The server's reader over a real pipe: whatever bytes arrive, each line that is not
    blank reaches the server as a message or gets exactly one JSON-RPC error back."""
    from codex_tools.contrib.mcp._stdio import Inbox, parse_messages

    async def read_all() -> tuple[list[Any], list[Any]]:
        read_fd, write_fd = os.pipe()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(b"".join(line + b"\n" for line in lines))
        messages = Inbox()
        send, receive = anyio.create_memory_object_stream[Any](float("inf"))
        with send, receive:
            try:
                await parse_messages(read_fd, messages, send)
            finally:
                os.close(read_fd)
            send.close()
            return [item async for item in messages], [item async for item in receive]

    parsed, refused = anyio.run(read_all)
    assert not [each for each in parsed if isinstance(each, Exception)]  # nothing dropped
    assert len(parsed) + len(refused) == sum(1 for line in lines if line.strip())
    for refusal in refused:
        assert refusal.message.error.code in (-32700, -32600)


def test_a_client_that_pipelines_its_opening_gets_every_answer_in_order() -> None:
    # The handshake is served without Server.run's relay: what came before `initialize`
    # and what follows it in the same write must still be handled, initialize first.
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "pipelining", "version": "0"},
    }
    messages = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    command = [sys.executable, "-m", "codex_tools", "mcp", str(TOOLS)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as server:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write(b"".join(json.dumps(message).encode() + b"\n" for message in messages))
        server.stdin.flush()  # kept open: closing it ends the server before tools/list
        answers = [json.loads(server.stdout.readline()) for _ in range(3)]
        server.stdin.close()
    assert answers[0]["id"] == 1
    assert answers[0]["result"]["protocolVersion"] == "2025-11-25"
    by_id = {answer["id"]: answer for answer in answers}
    assert sorted(by_id) == [1, 2, 3]
    assert "echo" in {tool["name"] for tool in by_id[2]["result"]["tools"]}
    assert by_id[3]["result"] == {}


def test_nothing_but_the_protocol_reaches_stdout(served: Connected) -> None:
    call(served, "echo", {"codepoints": [111, 107]})
    served.run(lambda: anyio.sleep(0.2))  # the module's thread prints meanwhile
    assert served.faults == []  # no line the client could not read, from the start on
    stderr = served.errlog.read_text()
    assert "hostile_tools: importing" in stderr
    assert "written to fd 1 at import" in stderr
    assert "a thread printing" in stderr
