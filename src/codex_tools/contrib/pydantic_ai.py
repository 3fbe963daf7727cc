"""Our registry's tools in pydantic-ai agents, and pydantic-ai's tool calls in our metrics.

Both directions, each a plain pydantic-ai extension point::

    from pydantic_ai import Agent
    from codex_tools.contrib.pydantic_ai import RegistryToolset

    agent = Agent(model, toolsets=[RegistryToolset(registry)])

:class:`RegistryToolset` lists the registry's tools (name, description, JSON Schema,
MCP annotations in ``ToolDefinition.metadata["annotations"]``, where pydantic-ai's own
MCP toolset puts them) and calls them through ``ToolRegistry.ainvoke`` with pydantic-ai's
tool-call id as ``call_id`` and ``originator="pydantic-ai"``. The registry validates the
arguments, so every call the model makes is counted, one whose arguments are not even
JSON included; a mistake in them reaches the model as ``ModelRetry`` (it may correct
itself, within the tool's retry budget), a tool that fails as ``ToolFailed`` (the model
sees the error; the run goes on).

pydantic-ai's count of a tool's retries becomes ``attempt`` (1 + retries so far) and
``retry``; the run's ``conversation_id`` and ``run_id`` become ``thread_id`` and
``turn_id``.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping
from typing import Any

try:
    from pydantic_ai import RunContext, ToolDefinition
    from pydantic_ai.exceptions import ModelRetry, ToolFailed
    from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.pydantic_ai needs pydantic-ai: pip install 'codex-tools[pydantic-ai]'"
    ) from error

from pydantic_core import from_json

from codex_tools import Tool, ToolArgumentsError, ToolError, ToolRegistry, default_registry

__all__ = ["RegistryToolset"]

ORIGINATOR = "pydantic-ai"

# Where a tool definition names the registry that runs it, so that metering the agent
# into the same registry does not count the call a second time.
_REGISTRY_KEY = "codex_tools_registry"
# Arguments that are not a JSON object travel under this key (never a parameter name)
# to the registry, which turns them into a ToolArgumentsError that is counted.
_RAW = "\x00raw"

_tokens: weakref.WeakKeyDictionary[ToolRegistry, str] = weakref.WeakKeyDictionary()
_serial = itertools.count(1)


def _token(registry: ToolRegistry) -> str:
    """A JSON-able name of ``registry``, unique for as long as the process lives."""
    token = _tokens.get(registry)
    if token is None:
        token = _tokens[registry] = f"registry-{next(_serial)}"
    return token


class _PassThrough:
    """An argument "validator" that leaves validation to the registry.

    The registry checks arguments against the tool's own schema and counts a call that
    fails it, which it could not if pydantic-ai refused the arguments first.
    """

    def validate_python(self, input: Any, **_: Any) -> Any:
        return input if isinstance(input, dict) else {_RAW: input}

    def validate_json(self, input: str | bytes | bytearray, **_: Any) -> Any:
        try:
            value = from_json(input)
        except ValueError:
            return {_RAW: input}
        return value if isinstance(value, dict) else {_RAW: input}


_PASS_THROUGH = _PassThrough()


def _context(ctx: RunContext[Any]) -> dict[str, Any]:
    """Our call context from pydantic-ai's run context of one tool call."""
    return {
        "originator": ORIGINATOR,
        "call_id": ctx.tool_call_id,
        "thread_id": ctx.conversation_id,
        "turn_id": ctx.run_id,
        "attempt": ctx.retry + 1,
        "retry": ctx.retry > 0,
    }


class RegistryToolset(AbstractToolset[Any]):
    """The tools of ``registry`` (the default registry if ``None``) as a pydantic-ai toolset.

    The tool list is read at every run step, so tools registered later are offered too;
    a tool whose ``enabled`` is ``False`` is not, and one with a predicate is listed and
    decided per call. ``max_retries`` is each tool's budget of ``ModelRetry`` (the agent's
    default if ``None``); ``id`` names the toolset where pydantic-ai needs one (durable
    execution).
    """

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        *,
        id: str | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.registry = default_registry() if registry is None else registry
        self.max_retries = max_retries
        self._id = id
        self._token = _token(self.registry)
        # Built once per tool object: the definitions are asked for at every run step.
        self._built: dict[str, tuple[Tool, ToolDefinition]] = {}

    @property
    def id(self) -> str | None:
        return self._id

    def __repr__(self) -> str:
        return f"RegistryToolset({self.registry!r})"

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        max_retries = ctx.max_retries if self.max_retries is None else self.max_retries
        built: dict[str, tuple[Tool, ToolDefinition]] = {}
        for tool in self.registry.tools():
            if tool.enabled is False:
                continue
            entry = self._built.get(tool.name)
            if entry is None or entry[0] is not tool:
                entry = (tool, self._definition(tool))
            built[tool.name] = entry
        self._built = built
        return {
            name: ToolsetTool(
                toolset=self,
                tool_def=definition,
                max_retries=max_retries,
                args_validator=_PASS_THROUGH,
            )
            for name, (_, definition) in built.items()
        }

    def _definition(self, tool: Tool) -> ToolDefinition:
        annotations: Mapping[str, Any] | None = getattr(tool, "annotations", None)
        return ToolDefinition(
            name=tool.name,
            description=tool.description or None,
            parameters_json_schema=dict(tool.parameters),
            metadata={
                "annotations": None if annotations is None else dict(annotations),
                _REGISTRY_KEY: self._token,
            },
        )

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[Any],
        tool: ToolsetTool[Any],
    ) -> Any:
        args: Any = tool_args.get(_RAW, tool_args)
        try:
            return await self.registry.ainvoke(name, args, _context(ctx))
        except ToolArgumentsError as error:
            raise ModelRetry(str(error)) from error
        except ToolError as error:
            cause = error.__cause__
            if isinstance(cause, ModelRetry | ToolFailed):  # a tool written for pydantic-ai
                raise cause from None
            raise ToolFailed(str(error)) from error
