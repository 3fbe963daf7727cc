"""OpenAI Agents SDK adapter: our tools as ``FunctionTool``s, and the SDK's tool calls metered.

Both directions::

    from agents import Agent
    from codex_tools.contrib.openai_agents import function_tools, instrument

    agent = Agent(name="helper", tools=function_tools(registry))   # our tools, for the SDK
    handle = instrument(registry)     # every function and MCP tool call of every run, counted
    ...
    handle.uninstrument()

A registry tool offered through :func:`function_tools` runs through
``ToolRegistry.ainvoke`` with the SDK's tool-call id as ``call_id`` and
``originator="openai-agents"``. A failure of it (bad arguments, the tool raised or timed
out) reaches the model as the error's text, as the SDK's own tools' failures do; it is
never raised out of the run.
"""

from __future__ import annotations

import copy
from typing import Any

try:
    from agents import FunctionTool, RunContextWrapper
    from agents.strict_schema import ensure_strict_json_schema
    from agents.tool_context import ToolContext as AgentToolContext
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'codex-tools[openai-agents]'"
    ) from error

from codex_tools import Tool, ToolError, ToolNotFoundError, ToolRegistry, default_registry

__all__ = ["ORIGINATOR", "function_tools"]

#: The ``originator`` of every call this adapter reports.
ORIGINATOR = "openai-agents"


def function_tools(registry: ToolRegistry | None = None) -> list[FunctionTool]:
    """The tools of ``registry`` (default: the process-wide one) as Agents SDK function tools.

    Each keeps its name, description and JSON Schema. The schema is sent in strict mode
    only where the SDK's strict conversion leaves its meaning unchanged; strict mode
    would otherwise make every optional argument required, or reject open objects.
    A tool switched off or removed from the registry later is no longer offered.
    """
    tools = default_registry() if registry is None else registry
    return [_function_tool(tools, each) for each in tools.tools()]


class _RegistryInvoker:
    """``on_invoke_tool`` of a registry tool; metering recognises it by its type."""

    __slots__ = ("name", "registry")

    def __init__(self, registry: ToolRegistry, name: str) -> None:
        self.registry = registry
        self.name = name

    async def __call__(self, context: AgentToolContext[Any], arguments: str) -> Any:
        try:
            return await self.registry.ainvoke(
                self.name,
                arguments or None,  # the SDK sends "" for a call without arguments
                {"call_id": context.tool_call_id, "originator": ORIGINATOR},
            )
        except ToolError as error:
            return str(error)

    def offered(self, _context: RunContextWrapper[Any], _agent: Any) -> bool:
        try:
            return self.registry.lookup(self.name).enabled is not False
        except ToolNotFoundError:
            return False


def _function_tool(registry: ToolRegistry, tool: Tool) -> FunctionTool:
    invoker = _RegistryInvoker(registry, tool.name)
    schema = copy.deepcopy(tool.parameters)
    return FunctionTool(
        name=tool.name,
        description=tool.description or "",
        params_json_schema=schema,
        on_invoke_tool=invoker,
        strict_json_schema=_strict_keeps_meaning(schema),
        is_enabled=invoker.offered,
    )


def _strict_keeps_meaning(schema: dict[str, Any]) -> bool:
    """Whether the SDK's strict conversion of ``schema`` changes no more than an empty
    ``required`` list (strict mode requires every property, and forbids open objects)."""
    try:
        strict = ensure_strict_json_schema(copy.deepcopy(schema))
    except Exception:  # noqa: BLE001  (the SDK rejects a schema strict mode cannot express)
        return False
    return bool(_without_empty_required(strict) == _without_empty_required(schema))


def _without_empty_required(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: _without_empty_required(value)
            for key, value in schema.items()
            if not (key == "required" and value == [])
        }
    if isinstance(schema, list):
        return [_without_empty_required(each) for each in schema]
    return schema
