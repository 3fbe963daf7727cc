from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from codex_tools import ToolRegistry, telemetry


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry()


@pytest.fixture(autouse=True)
def _no_leftover_handlers() -> Iterator[None]:
    """Each test starts and ends with no telemetry handler attached."""
    before = {info.id for info in telemetry.list_handlers()}
    yield
    for info in telemetry.list_handlers():
        if info.id not in before:
            telemetry.detach(info.id)


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, as OpenTelemetry's tests do."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture
def uninstalled(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``uninstalled(PACKAGE, MODULE)``: PACKAGE looks never installed and MODULE (the
    contrib module that needs it) is imported afresh; both are put back after the test."""

    def hide(package: str, module: str) -> None:
        monkeypatch.delitem(sys.modules, module)
        monkeypatch.setitem(sys.modules, package, None)
        for name in [n for n in sys.modules if n.startswith(f"{package}.")]:
            monkeypatch.setitem(sys.modules, name, None)

    return hide
