from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from codex_tools import (
    RetryPolicy,
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolExecutionError,
    ToolRegistry,
    tool,
)


class TestDefiningTools:
    def test_decorator_takes_name_and_description_from_the_function(self) -> None:
        @tool
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        assert isinstance(add, Tool)
        assert add.name == "add"
        assert add.description == "Add two integers."
        assert add(2, 3) == 5  # still callable as plain Python

    def test_schema_comes_from_type_hints_defaults_and_docstring(self) -> None:
        @tool(name="web_search", timeout=5.0, retry=RetryPolicy(max_attempts=3))
        async def search(query: str, ctx: ToolContext, limit: int = 10) -> dict[str, Any]:
            """Search the web.

            Args:
                query: what to look for
                limit: how many results, at most
            """
            return {}

        assert search.name == "web_search"
        assert search.description == "Search the web."
        assert search.timeout == 5.0
        assert search.retry == RetryPolicy(max_attempts=3)
        assert search.is_async
        schema = search.parameters
        assert schema["type"] == "object"
        assert schema["required"] == ["query"]
        assert set(schema["properties"]) == {"query", "limit"}  # the context is not an argument
        assert schema["properties"]["query"]["type"] == "string"
        assert schema["properties"]["query"]["description"] == "what to look for"
        assert schema["properties"]["limit"]["default"] == 10
        assert schema["additionalProperties"] is False

    def test_tool_built_by_hand_keeps_every_field(self) -> None:
        def check(ctx: ToolContext) -> bool:
            return True

        built = Tool(
            name="echo",
            fn=lambda text: text,
            description="Echo the text.",
            parameters={"type": "object", "properties": {"text": {"type": "string"}}},
            metadata={"owner": "search-team"},
            enabled=check,
            timeout=1.5,
        )
        assert built.name == "echo"
        assert built.description == "Echo the text."
        assert built.parameters["properties"] == {"text": {"type": "string"}}
        assert built.metadata == {"owner": "search-team"}
        assert built.enabled is check
        assert built.timeout == 1.5

    def test_async_detection_sees_through_partials_and_callable_objects(self) -> None:
        async def fetch(url: str) -> str:
            return url

        class Fetcher:
            async def __call__(self, url: str) -> str:
                return url

        assert Tool(name="p", fn=functools.partial(fetch)).is_async
        assert Tool(name="o", fn=Fetcher()).is_async
        assert not Tool(name="s", fn=lambda: 1).is_async

    @pytest.mark.parametrize("name", ["", "   ", None, 3, b"add"])
    def test_empty_or_non_string_names_are_rejected(self, name: Any) -> None:
        with pytest.raises(ToolDefinitionError, match="non-empty string"):
            Tool(name=name, fn=lambda: None)

    def test_a_lambda_needs_a_name(self, registry: ToolRegistry) -> None:
        with pytest.raises(ToolDefinitionError):
            registry.register(lambda: None, name="")

    def test_positional_only_and_star_args_are_rejected(self) -> None:
        def positional(a: int, /) -> int:
            return a

        def star(*values: int) -> int:
            return sum(values)

        for fn in (positional, star):
            with pytest.raises(ToolDefinitionError, match="cannot be passed by name"):
                tool(fn)

    def test_keyword_catch_all_allows_extra_arguments(self, registry: ToolRegistry) -> None:
        @tool
        def collect(first: int, **rest: Any) -> dict[str, Any]:
            return {"first": first, **rest}

        registry.register(collect)
        assert collect.parameters.get("additionalProperties") is not False
        assert registry.invoke("collect", {"first": 1, "extra": "x"}) == {"first": 1, "extra": "x"}

    def test_bad_timeout_and_retry_are_rejected(self) -> None:
        with pytest.raises(ToolDefinitionError, match="timeout"):
            Tool(name="t", fn=lambda: None, timeout=0)
        with pytest.raises(ToolDefinitionError, match="RetryPolicy"):
            Tool(name="t", fn=lambda: None, retry=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=0)


class TestToolContext:
    def test_context_is_the_callers_plus_tool_attempt_and_retry(
        self, registry: ToolRegistry
    ) -> None:
        seen: list[ToolContext] = []

        @registry.register
        def whoami(ctx: ToolContext) -> str:
            seen.append(ctx)
            return ctx.tool

        registry.invoke("whoami", {}, {"thread_id": "t1", "attempt": 3})
        (ctx,) = seen
        assert dict(ctx) == {"thread_id": "t1", "attempt": 3, "tool": "whoami", "retry": True}
        assert (ctx.tool, ctx.attempt, ctx.retry) == ("whoami", 3, True)

    def test_the_caller_may_say_whether_a_call_is_a_retry(self, registry: ToolRegistry) -> None:
        seen: list[bool] = []

        def probe(ctx: ToolContext) -> None:
            seen.append(ctx.retry)

        registry.register(probe)
        registry.invoke("probe", {}, {"attempt": 2, "retry": False})
        registry.invoke("probe", {}, {"attempt": 1, "retry": True})
        registry.invoke("probe", {}, {"attempt": 2})
        registry.invoke("probe")
        assert seen == [False, True, True, False]

    def test_context_is_read_only(self, registry: ToolRegistry) -> None:
        def mutate(ctx: ToolContext) -> None:
            ctx["tool"] = "other"  # type: ignore[index]

        registry.register(mutate)
        with pytest.raises(ToolExecutionError) as raised:
            registry.invoke("mutate")
        assert isinstance(raised.value.__cause__, TypeError)

    async def test_async_tools_receive_the_context_too(self, registry: ToolRegistry) -> None:
        async def turn(ctx: ToolContext) -> Any:
            await asyncio.sleep(0)
            return ctx["turn_id"]

        registry.register(turn)
        assert await registry.ainvoke("turn", None, {"turn_id": "u7"}) == "u7"


class TestAnnotations:
    def test_decorator_hints_become_the_mcp_annotations(self) -> None:
        @tool(read_only=True, destructive=False, idempotent=True, open_world=False, title="Read")
        def read(path: str) -> str:
            """Read a file."""
            return path

        assert dict(read.annotations or {}) == {
            "title": "Read",
            "readOnlyHint": True,
            "destructiveHint": False,
            "idempotentHint": True,
            "openWorldHint": False,
        }

    def test_only_the_hints_given_are_kept_and_none_means_none_given(self) -> None:
        assert tool(read_only=True)(lambda: 1).annotations == {"readOnlyHint": True}
        assert tool(lambda: 1).annotations is None
        assert Tool(name="t", fn=lambda: 1, annotations={}).annotations is None

    def test_annotations_are_read_only(self) -> None:
        made = Tool(name="t", fn=lambda: 1, annotations={"readOnlyHint": True})
        with pytest.raises(TypeError):
            made.annotations["readOnlyHint"] = False  # type: ignore[index]

    @pytest.mark.parametrize(
        "annotations",
        [
            {"readonly": True},
            {"readOnlyHint": "yes"},
            {"title": 3},
            {1: True},
            ["readOnlyHint"],
            "readOnlyHint",
        ],
    )
    def test_bad_annotations_are_a_definition_error(self, annotations: Any) -> None:
        with pytest.raises(ToolDefinitionError):
            Tool(name="t", fn=lambda: 1, annotations=annotations)

    def test_hints_given_twice_differently_are_a_definition_error(self) -> None:
        with pytest.raises(ToolDefinitionError):
            tool(read_only=True, annotations={"readOnlyHint": False})(lambda: 1)
        both = tool(read_only=True, annotations={"title": "T"})(lambda: 1)
        assert dict(both.annotations or {}) == {"title": "T", "readOnlyHint": True}

    def test_mcp_tool_annotations_are_accepted(self) -> None:
        mcp_types = pytest.importorskip("mcp.types")
        given = mcp_types.ToolAnnotations(title="T", readOnlyHint=True)
        made = Tool(name="t", fn=lambda: 1, annotations=given)
        assert dict(made.annotations or {}) == {"title": "T", "readOnlyHint": True}


class TestDescriptions:
    def test_a_tool_without_a_docstring_is_described_by_its_name(self) -> None:
        def get_weather(city: str) -> str:
            return city

        assert tool(get_weather).description == "Get weather"
        assert Tool(name="fetch[/api]", fn=get_weather).description == "Fetch api"
        assert Tool(name="t", fn=get_weather, description="").description == ""


class TestRegisterCarriesEveryField:
    def test_renaming_keeps_every_other_field(self) -> None:
        original = Tool(
            name="orig",
            fn=lambda x: x,
            metadata={"team": "a"},
            enabled=lambda _: True,
            on_error=lambda e, _: None,
            timeout=3.0,
            retry=RetryPolicy(max_attempts=2),
            quick=True,
            annotations={"readOnlyHint": True},
            parameters={"type": "object", "properties": {"x": {}}},
        )
        handle = ToolRegistry().register(original, name="renamed", description="New.")
        copy = handle.tool
        assert (copy.name, copy.description) == ("renamed", "New.")
        for field in Tool.__slots__:
            if field not in ("name", "description"):
                assert getattr(copy, field) == getattr(original, field), field
        assert (original.name, original.description) == ("orig", "Orig")
        assert ToolRegistry().register(original, name="other").tool.description == "Other"

    def test_a_bad_new_name_is_a_definition_error(self) -> None:
        with pytest.raises(ToolDefinitionError):
            ToolRegistry().register(Tool(name="t", fn=lambda: 1), name="")


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e300, True, "5", [1]])
def test_a_timeout_that_is_not_a_usable_number_of_seconds_is_a_definition_error(
    timeout: Any,
) -> None:
    with pytest.raises(ToolDefinitionError, match="timeout"):
        Tool(name="t", fn=lambda: 1, timeout=timeout)
