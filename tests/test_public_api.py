import codex_tools
from codex_tools import telemetry


def test_public_names_are_pinned() -> None:
    assert codex_tools.__all__ == [
        "MeasuredCall",
        "RetryPolicy",
        "Tool",
        "ToolAlreadyRegisteredError",
        "ToolArgumentsError",
        "ToolContext",
        "ToolDefinitionError",
        "ToolDisabledError",
        "ToolError",
        "ToolExecutionError",
        "ToolHandle",
        "ToolNotFoundError",
        "ToolRegistry",
        "ToolTimeoutError",
        "ainvoke",
        "default_registry",
        "deregister",
        "exponential_backoff",
        "invoke",
        "lookup",
        "measure",
        "merge_metrics",
        "metrics",
        "register",
        "reset_metrics",
        "telemetry",
        "tool",
        "tools",
    ]
    assert sorted(codex_tools.__all__) == codex_tools.__all__
    for name in codex_tools.__all__:
        assert hasattr(codex_tools, name), name


def test_telemetry_verbs_of_the_contract_exist() -> None:
    for verb in ("attach", "attach_many", "detach", "execute", "list_handlers", "span"):
        assert callable(getattr(telemetry, verb))


def test_every_error_is_a_tool_error() -> None:
    for name in codex_tools.__all__:
        value = getattr(codex_tools, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, codex_tools.ToolError), name
    assert issubclass(codex_tools.ToolTimeoutError, codex_tools.ToolExecutionError)
    assert issubclass(codex_tools.ToolTimeoutError, TimeoutError)
