from __future__ import annotations

from collections.abc import Iterator

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
