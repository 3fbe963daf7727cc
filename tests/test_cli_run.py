"""``codex-tools run``: the loop from the command line, against a loopback server."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_server import Servers, completion
from codex_tools._cli import main

TOOLS = textwrap.dedent(
    '''
    from codex_tools import ToolRegistry, tool

    registry = ToolRegistry()

    @registry.register
    @tool
    def word_count(text: str) -> int:
        """Count the words of a text."""
        return len(text.split())

    @registry.register
    @tool
    def shout(text: str) -> str:
        """Upper-case a text, or refuse."""
        raise PermissionError("too loud")
    '''
)


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_tools.py"
    path.write_text(TOOLS, encoding="utf-8")
    return path


def run(base_url: str, tools: str, *extra: str) -> int:
    return main(["run", "--base-url", base_url, "--model", "m", "--tools", tools, *extra, "count"])


def test_run_prints_each_call_then_the_answer_and_the_metrics(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(
        completion(1, ("c1", "word_count", '{"text": "a b c"}'), ("c2", "shout", '{"text": "x"}')),
        completion(2, content="There are 3 words."),
    )
    assert run(server.base_url, f"{tools_file}:registry") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    (counted,) = [line for line in lines if "word_count" in line and "attempt 1" in line]
    assert "✓" in counted
    (refused,) = [line for line in lines if "shout" in line and "attempt 1" in line]
    assert "✗" in refused
    assert "PermissionError: too loud" in refused
    assert "There are 3 words." in out
    assert "2 turns, 1 tool output, 1 tool failure; tokens: cached_input_tokens 2" in out
    assert "Tool metrics" in out
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["word_count", "shout"]


def test_no_final_response_exits_1_after_the_metrics(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(completion(1, ("c1", "word_count", '{"text": "a"}')))
    assert run(server.base_url, f"{tools_file}:registry", "--max-attempts", "1") == 1
    out = capsys.readouterr().out
    assert "no final response within 1 turn" in out
    assert "Tool metrics" in out


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("no_such_module_for_codex_tools", "cannot import 'no_such_module_for_codex_tools'"),
        ("missing_file.py", "no such file"),
    ],
)
def test_an_unimportable_module_is_a_one_line_error(
    tools: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("http://127.0.0.1:9/v1", tools) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_an_unreachable_server_is_a_one_line_error(
    tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = Servers()
    server = servers()
    url = server.base_url
    servers.close()  # nothing listens there any more
    assert run(url, f"{tools_file}:registry") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codex-tools: error: cannot connect to {url}/chat/completions")
    assert err.count("\n") == 1
