"""Whatever a model or a careless caller sends, and whatever a tool raises or returns:
the caller gets the result or a clear error of the contract, each call is counted
exactly once, ``last_error`` stays bounded, and the snapshot stays JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from codex_tools import (
    ToolArgumentsError,
    ToolError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolRegistry,
    telemetry,
    tool,
)

MAX_ERROR = 1_000
MB = 1 << 20
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@tool
def echo(x: Any = None) -> Any:
    return x


@tool
def typed(a: int, b: str = "") -> str:
    return f"{a}{b}"


@tool
def json_only(x: JsonValue = None) -> str:
    return "ok"


@tool
def ints(x: list[int]) -> int:
    return len(x)


@pytest.fixture
def hostile(registry: ToolRegistry) -> ToolRegistry:
    for each in (echo, typed, json_only, ints):
        registry.register(each)
    return registry


class Opaque:
    """A value that refuses every question but its identity."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        return id(self)


class UnreadableMapping(Mapping[str, Any]):
    """Passes for a mapping until someone reads it."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("unreadable")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("unreadable")

    def __len__(self) -> int:
        raise RuntimeError("unreadable")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
not_json = st.one_of(
    st.builds(object),
    st.builds(Opaque),
    st.binary(max_size=20),
    st.complex_numbers(),
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.just(float("nan")),
    st.just(print),
)
any_value = st.recursive(
    json_values | not_json,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
arguments = st.one_of(
    st.dictionaries(st.sampled_from(["x", "a", "b", "extra"]), any_value, max_size=3),
    st.dictionaries(
        st.integers() | st.none() | st.tuples() | st.text(max_size=4), any_value, max_size=3
    ),
    json_values.map(json.dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
    any_value,
    st.builds(UnreadableMapping),
)


def _counts(registry: ToolRegistry, name: str) -> tuple[int, int, int]:
    row = registry.metrics().get(name)
    return (0, 0, 0) if row is None else (row["success"], row["failure"], row["in_flight"])


def _assert_snapshot_is_sound(registry: ToolRegistry) -> None:
    snapshot = registry.metrics()
    json.dumps(snapshot)
    for row in snapshot.values():
        if row["last_error"] is not None:
            assert len(row["last_error"]["type"]) <= MAX_ERROR
            assert len(row["last_error"]["message"]) <= MAX_ERROR
        assert row["in_flight"] == 0


@FUZZ
@given(name=st.sampled_from(["echo", "typed", "json_only", "ints"]), args=arguments)
def test_any_value_as_arguments_gets_a_result_or_an_arguments_error(
    hostile: ToolRegistry, name: str, args: Any
) -> None:
    success, failure, _ = _counts(hostile, name)
    refused: ToolArgumentsError | None = None
    try:
        hostile.invoke(name, args)
    except ToolArgumentsError as error:
        refused = error
    if refused is None:
        assert _counts(hostile, name) == (success + 1, failure, 0)
    else:
        assert refused.tool == name
        assert len(str(refused)) <= MAX_ERROR
        assert _counts(hostile, name) == (success, failure + 1, 0)
    _assert_snapshot_is_sound(hostile)


def test_arguments_that_cannot_be_read_are_an_arguments_error(hostile: ToolRegistry) -> None:
    """The tool never ran, so this is not the tool failing."""
    with pytest.raises(ToolArgumentsError, match="RuntimeError: unreadable") as caught:
        hostile.invoke("echo", UnreadableMapping())
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert _counts(hostile, "echo") == (0, 1, 0)


def _nested_list(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


def test_ten_thousand_levels_of_nesting_pass_through_or_get_a_clear_error(
    hostile: ToolRegistry,
) -> None:
    deep = _nested_list(10_000)
    with telemetry.capture() as events:
        assert hostile.invoke("echo", {"x": deep}) is deep  # Any: not walked
        with pytest.raises(ToolArgumentsError) as caught:
            hostile.invoke("json_only", {"x": deep})
        assert len(str(caught.value)) <= MAX_ERROR
        with pytest.raises(ToolArgumentsError, match="recursion limit"):
            hostile.invoke("echo", '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}")
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        with pytest.raises(ToolArgumentsError):
            hostile.invoke("json_only", {"x": cyclic})
    assert len(events) == 8
    assert _counts(hostile, "echo") == (1, 1, 0)
    assert _counts(hostile, "json_only") == (0, 2, 0)
    _assert_snapshot_is_sound(hostile)


@pytest.mark.slow
def test_ten_megabyte_arguments_are_validated_counted_and_reported_briefly(
    hostile: ToolRegistry,
) -> None:
    text = "a" * (10 * MB)
    assert hostile.invoke("echo", {"x": text}) is text
    assert hostile.invoke("echo", json.dumps({"x": text})) == text
    assert hostile.invoke("ints", {"x": list(range(MB))}) == MB
    for bad in (
        '{"x": "' + text,  # unterminated 10 MB JSON
        {text: 1},  # a 10 MB unknown key
        {"a": text},  # a 10 MB string where an int belongs
    ):
        with pytest.raises(ToolArgumentsError) as caught:
            hostile.invoke("typed", bad)
        assert len(str(caught.value)) <= MAX_ERROR
    assert _counts(hostile, "echo") == (2, 0, 0)
    assert _counts(hostile, "typed") == (0, 3, 0)
    _assert_snapshot_is_sound(hostile)


@pytest.mark.parametrize("context", [["not", "a", "mapping"], "thread-1", 42, object()])
def test_a_context_that_is_not_a_mapping_is_refused_before_the_call(
    hostile: ToolRegistry, context: Any
) -> None:
    with pytest.raises(TypeError, match="context must be a mapping"):
        hostile.invoke("echo", {"x": 1}, context)
    assert hostile.metrics() == {}


odd_names = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        [
            "\ud800",  # a lone surrogate: not encodable as UTF-8
            "tool\udfff",
            "\x00",
            "a\u202eb",  # right-to-left override
            "👩‍👩‍👧",  # joined emoji
            "e\u0301",  # combining accent
            " padded ",
            "名前",
            "x" * 10_000,
        ]
    ),
).filter(lambda name: name.strip() != "")


@FUZZ
@given(name=odd_names)
def test_tools_with_odd_unicode_names_are_called_counted_and_reported(
    registry: ToolRegistry, name: str
) -> None:
    registry.register(typed, name=name, replace=True)
    success, failure, _ = _counts(registry, name)
    assert registry.lookup(name).name == name
    assert registry.invoke(name, {"a": 1}) == "1"
    with pytest.raises(ToolArgumentsError):
        registry.invoke(name, {"a": "not a number"})
    assert _counts(registry, name) == (success + 1, failure + 1, 0)
    assert name in json.loads(json.dumps(registry.metrics()))
    _assert_snapshot_is_sound(registry)
    registry.deregister(name)
    with pytest.raises(ToolNotFoundError):
        registry.invoke(name)


@pytest.mark.parametrize("name", [None, 42, ["a"], {"a": 1}, b"bytes"])
def test_a_name_that_is_not_a_string_is_simply_not_found(hostile: ToolRegistry, name: Any) -> None:
    with pytest.raises(ToolNotFoundError):
        hostile.invoke(name)
    assert hostile.metrics() == {}


class RecursiveOutput(list[Any]):
    pass


def _self_referential() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "make",
    [
        object,
        Opaque,
        _self_referential,
        lambda: {1, 2},
        lambda: (i for i in range(3)),
        lambda: float("nan"),
        lambda: 10**5000,
        lambda: b"\xff",
        lambda: print,
    ],
)
def test_outputs_that_are_not_json_are_returned_untouched(
    registry: ToolRegistry, make: Any
) -> None:
    output = make()
    registry.register(lambda: output, name="returns")
    with telemetry.capture(telemetry.TOOL_SUCCESS) as events:
        assert registry.invoke("returns") is output
    assert events[0].metadata["output"] is output
    assert _counts(registry, "returns") == (1, 0, 0)
    _assert_snapshot_is_sound(registry)


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class StrAndReprRaise(StrRaises):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class StrIsHuge(Exception):
    def __str__(self) -> str:
        return "x" * MB


class StrIsNotAString(Exception):
    def __str__(self) -> Any:
        return 5  # noqa: PLE0307  (what this test is about)


class Interrupt(BaseException):
    pass


NamedAtLength = type("E" * 100_000, (Exception,), {})
NamedOddly = type("Ошибка💥\u202e", (Exception,), {})
ERRORS: list[BaseException] = [
    StrRaises(),
    StrAndReprRaise(),
    StrIsHuge(),
    StrIsNotAString(),
    ValueError("y" * (10 * MB)),
    ValueError(Opaque()),
    NamedAtLength("long class name"),
    NamedOddly("odd class name"),
]
INTERRUPTS: list[BaseException] = [KeyboardInterrupt(), Interrupt(StrIsHuge())]


def _raising(error: BaseException) -> Any:
    def fails() -> None:
        raise error

    return fails


@pytest.mark.parametrize("error", ERRORS, ids=[f"error-{n}" for n in range(len(ERRORS))])
def test_exceptions_that_resist_printing_leave_a_bounded_last_error(
    registry: ToolRegistry, error: BaseException
) -> None:
    registry.register(_raising(error), name="fails")
    with (
        telemetry.capture(telemetry.TOOL_FAILURE) as events,
        pytest.raises(ToolExecutionError) as caught,
    ):
        registry.invoke("fails")
    assert caught.value.__cause__ is error
    assert len(str(caught.value)) <= MAX_ERROR + 100
    assert events[0].metadata["error"] is error
    last = registry.metrics()["fails"]["last_error"]
    assert last["type"]
    assert _counts(registry, "fails") == (0, 1, 0)
    _assert_snapshot_is_sound(registry)


@pytest.mark.parametrize("error", INTERRUPTS, ids=lambda e: type(e).__name__)
async def test_interrupts_raised_by_a_tool_are_counted_and_re_raised_unchanged(
    registry: ToolRegistry, error: BaseException
) -> None:
    registry.register(_raising(error), name="fails")
    with pytest.raises(type(error)) as caught:
        registry.invoke("fails")
    assert caught.value is error
    with pytest.raises(type(error)) as caught:
        await registry.ainvoke("fails")
    assert caught.value is error
    assert _counts(registry, "fails") == (0, 2, 0)
    _assert_snapshot_is_sound(registry)


def test_every_failure_above_is_a_tool_error() -> None:
    """The hierarchy the tests above rely on: callers catch ``ToolError`` and nothing else."""
    assert issubclass(ToolArgumentsError, ToolError)
    assert issubclass(ToolExecutionError, ToolError)
    assert issubclass(ToolNotFoundError, ToolError)


def test_changing_a_snapshot_changes_nothing_else(registry: ToolRegistry) -> None:
    """Exporters redact and reshape snapshots in place: that must not reach the metrics."""
    registry.register(_raising(ValueError("secret token abc")), name="fails")
    with pytest.raises(ToolExecutionError):
        registry.invoke("fails")
    snapshot = registry.metrics()
    snapshot["fails"]["last_error"]["message"] = "[redacted]"
    snapshot["fails"]["failure"] = 0
    assert registry.metrics()["fails"]["last_error"]["message"] == "secret token abc"
    assert registry.metrics()["fails"]["failure"] == 1
