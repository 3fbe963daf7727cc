"""A model-based test: random register/invoke/fail/reset sequences against a simple model."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from codex_tools import (
    Tool,
    ToolArgumentsError,
    ToolError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolRegistry,
)

NAMES = st.sampled_from(["alpha", "beta", "gamma"])


def maybe_fail(fail: bool) -> str:
    if fail:
        raise RuntimeError("asked to fail")
    return "ok"


class RegistryMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.registry = ToolRegistry()
        self.registered: set[str] = set()
        self.model: dict[str, dict[str, Any]] = {}
        self.started = 0

    def _count(self, name: str, ok: bool, error: str | None = None) -> None:
        row = self.model.setdefault(
            name, {"success": 0, "failure": 0, "consecutive_failures": 0, "last_error": None}
        )
        self.started += 1
        if ok:
            row["success"] += 1
            row["consecutive_failures"] = 0
        else:
            row["failure"] += 1
            row["consecutive_failures"] += 1
            row["last_error"] = error

    @rule(name=NAMES)
    def register(self, name: str) -> None:
        try:
            self.registry.register(Tool(name=name, fn=maybe_fail))
        except ToolError:
            assert name in self.registered
        else:
            assert name not in self.registered
            self.registered.add(name)

    @precondition(lambda self: self.registered)
    @rule(data=st.data())
    def deregister(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.registered)))
        self.registry.deregister(name)
        self.registered.discard(name)

    @rule(name=NAMES, fail=st.booleans())
    def invoke(self, name: str, fail: bool) -> None:
        try:
            self.registry.invoke(name, {"fail": fail})
        except ToolNotFoundError:
            assert name not in self.registered
            return
        except ToolExecutionError:
            assert fail
            self._count(name, ok=False, error="RuntimeError")
            return
        assert not fail
        self._count(name, ok=True)

    @rule(name=NAMES)
    def invoke_with_bad_arguments(self, name: str) -> None:
        try:
            self.registry.invoke(name, {"fail": "not a bool"})
        except ToolNotFoundError:
            assert name not in self.registered
        except ToolArgumentsError:
            self._count(name, ok=False, error="ToolArgumentsError")

    @rule()
    def reset(self) -> None:
        self.registry.reset_metrics()
        self.model.clear()
        self.started = 0

    @invariant()
    def snapshot_matches_the_model(self) -> None:
        snapshot = self.registry.metrics()
        assert set(snapshot) == set(self.model)
        total = 0
        for name, row in snapshot.items():
            expected = self.model[name]
            assert row["success"] == expected["success"]
            assert row["failure"] == expected["failure"]
            assert row["consecutive_failures"] == expected["consecutive_failures"]
            error = row["last_error"]
            assert (error and error["type"]) == expected["last_error"]
            assert row["in_flight"] == 0
            total += row["success"] + row["failure"] + row["in_flight"]
        assert total == self.started


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
