from __future__ import annotations

import pytest

from codex_tools._cli import main


@pytest.mark.parametrize("argv", [["nope"], ["metrics", "--bogus"], [], ["demo", "--calls", "x"]])
def test_usage_mistakes_end_in_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("codex-tools")
    assert "Traceback" not in err
