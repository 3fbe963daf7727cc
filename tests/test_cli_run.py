"""``codex-tools run``: the loop from the command line, against a loopback server."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import codex_tools
from chat_server import HANG, MALFORMED, Servers, completion
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


@pytest.mark.parametrize("mode", ["html", "null_message", "cut_off_with_nothing_said"])
def test_an_unreadable_answer_is_one_line_and_exit_2(
    serve: Servers, tools_file: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(MALFORMED[mode])
    assert run(server.base_url, f"{tools_file}:registry") == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("codex-tools: error: cannot read the model's answer: ")
    assert captured.err.count("\n") == 1
    assert captured.out == ""  # no call was made: no table either


def test_a_model_error_after_tool_calls_still_prints_the_calls_and_the_metrics(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(
        completion(1, ("c1", "word_count", '{"text": "a b"}')),
        (503, {"error": {"message": "the GPU\nfell over", "type": "server_error"}}),
        (503, {"error": {"message": "the GPU\nfell over", "type": "server_error"}}),
        (503, {"error": {"message": "the GPU\nfell over", "type": "server_error"}}),
    )
    assert run(server.base_url, f"{tools_file}:registry") == 2
    captured = capsys.readouterr()
    assert "✓ word_count" in captured.out
    assert "Tool metrics" in captured.out
    assert captured.err == (
        f"codex-tools: error: {server.base_url}/chat/completions answered 503: the GPU fell over\n"
    )


def test_a_404_asks_whether_the_base_url_lacks_v1(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve((404, {"error": {"message": "404 page not found"}}))
    root = server.base_url.removesuffix("/v1")
    assert run(root, f"{tools_file}:registry") == 2
    err = capsys.readouterr().err
    assert f"{root}/chat/completions answered 404" in err
    assert "does --base-url lack /v1" in err


def test_instructions_timeout_and_grammar(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(
        completion(1, ("c1", "word_count", '{"text": "a"}'), ("c2", "shout", '{"text": "a"}')),
        completion(2, content="[bold]One[/bold] word.\nDone."),
    )
    args = ["--instructions", "Count [carefully].", "--timeout", "30"]
    assert run(server.base_url, f"{tools_file}:registry", *args) == 0
    out = capsys.readouterr().out
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "Count [carefully]."}
    assert "2 turns, 1 tool output, 1 tool failure" in out
    assert "│ [bold]One[/bold] word." in out  # the answer is shown as written,
    assert "│ Done." in out  # on its lines


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_timeout_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["run", "--model", "m", "--tools", "x.py", "--timeout", bad, "hi"])
    assert raised.value.code == 2
    assert "expected a number of seconds > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_a_hung_server_ends_the_run_at_the_timeout(
    serve: Servers, tools_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve((200, HANG), (200, HANG), (200, HANG))  # the client retries twice
    assert run(server.base_url, f"{tools_file}:registry", "--timeout", "0.2") == 2
    err = capsys.readouterr().err
    assert (
        err == f"codex-tools: error: no answer from {server.base_url}/chat/completions "
        "within 0.2 s (see --timeout)\n"
    )


def test_a_tool_name_openai_refuses_is_named_before_any_request(
    serve: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(completion(1, content="never"))
    path = tmp_path / "named_tools.py"
    path.write_text(
        "from codex_tools import tool\n\n@tool(name='fetch[/api]')\ndef fetch() -> str:\n"
        "    return 'x'\n"
    )
    assert run(server.base_url, str(path)) == 2
    assert capsys.readouterr().err.startswith(
        "codex-tools: error: tool 'fetch[/api]' cannot be offered to an OpenAI model"
    )
    assert server.requests == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out == f"codex-tools {codex_tools.__version__}\n"


CALENDAR = '''
import sys, time
from codex_tools import tool

@tool
def next_meeting(day: str) -> str:
    """The next meeting on a day."""
    return f"standup on {day}"

@tool
def nap(seconds: float) -> str:
    """Sleep in a thread; Ctrl-C must not wait for it."""
    print("napping", file=sys.stderr, flush=True)
    time.sleep(seconds)
    return "rested"
'''


def command(base_url: str, tools: Path, *extra: str) -> list[str]:
    return [str(Path(sys.executable).parent / "codex-tools"), "run", "--base-url", base_url,
            "--model", "m", "--tools", str(tools), *extra, "plan"]  # fmt: skip


@pytest.mark.slow
def test_a_file_named_calendar_py_is_run_in_a_fresh_process(serve: Servers, tmp_path: Path) -> None:
    (tmp_path / "calendar.py").write_text(CALENDAR)
    server = serve(
        completion(1, ("c1", "next_meeting", '{"day": "Monday"}')),
        completion(2, content="Standup on Monday."),
    )
    done = subprocess.run(
        command(server.base_url, tmp_path / "calendar.py"),
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "✓ next_meeting" in done.stdout
    assert "Standup on Monday." in done.stdout


@pytest.mark.slow
def test_ctrl_c_during_a_long_sync_tool_exits_at_once_with_what_ran(
    serve: Servers, tmp_path: Path
) -> None:
    (tmp_path / "calendar.py").write_text(CALENDAR)
    server = serve(
        completion(1, ("c1", "next_meeting", '{"day": "Monday"}')),
        completion(2, ("c2", "nap", '{"seconds": 600}')),
    )
    child = subprocess.Popen(
        command(server.base_url, tmp_path / "calendar.py"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert child.stderr is not None
        assert child.stderr.readline() == "napping\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)  # not the nap's 600 s
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "✓ next_meeting" in out
    assert "interrupted" in out
    (row,) = [line for line in out.splitlines() if line.startswith("nap ")]
    assert row.split()[1:3] == ["0", "1"]  # the nap is counted as failed
    assert "Traceback" not in err
