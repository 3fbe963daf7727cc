"""Our registry's tools in pydantic-ai agents, and pydantic-ai's tool calls in our metrics.

Each direction is a plain pydantic-ai extension point::

    from pydantic_ai import Agent
    from codex_tools.contrib.pydantic_ai import Metered, RegistryToolset

    agent = Agent(model, toolsets=[RegistryToolset(registry)], capabilities=[Metered(registry)])

:class:`RegistryToolset` offers the registry's tools and calls them through
``ToolRegistry.ainvoke``; :class:`Metered` counts every other tool call of the agent
as ``ToolRegistry.measure`` does. Both tag a call as pydantic-ai sees it: its tool-call id
is the ``call_id``, ``originator`` is ``"pydantic-ai"``, the run's ``conversation_id`` and
``run_id`` are the ``thread_id`` and ``turn_id``, and pydantic-ai's count of the tool's
retries makes ``attempt`` (1 + retries so far) and ``retry``.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:
    from pydantic_ai import RunContext, ToolDefinition
    from pydantic_ai.capabilities import (
        AbstractCapability,
        CapabilityOrdering,
        RawToolArgs,
        ValidatedToolArgs,
        WrapToolExecuteHandler,
        WrapToolValidateHandler,
    )
    from pydantic_ai.exceptions import (
        ApprovalRequired,
        CallDeferred,
        ModelRetry,
        SkipToolExecution,
        ToolFailed,
        ToolFailedError,
        ToolRetryError,
        UnexpectedModelBehavior,
    )
    from pydantic_ai.messages import ToolCallPart
    from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.pydantic_ai needs pydantic-ai: pip install 'codex-tools[pydantic-ai]'"
    ) from error

from pydantic import ValidationError
from pydantic_core import from_json

from codex_tools import Tool, ToolArgumentsError, ToolError, ToolRegistry, default_registry
from codex_tools import telemetry as _telemetry
from codex_tools._call import failed, succeed

__all__ = ["Metered", "RegistryToolset"]

_perf_ns = time.perf_counter_ns

_ORIGINATOR = "pydantic-ai"

# Where a tool definition names the registry that runs it, so that metering the agent
# into the same registry does not count the call a second time.
_REGISTRY_KEY = "codex_tools_registry"

_tokens: weakref.WeakKeyDictionary[ToolRegistry, str] = weakref.WeakKeyDictionary()
_serial = itertools.count(1)


def _token(registry: ToolRegistry) -> str:
    """A JSON-able name of ``registry``, unique for as long as the process lives."""
    token = _tokens.get(registry)
    if token is None:
        token = _tokens[registry] = f"registry-{next(_serial)}"
    return token


class _Unparsed(dict[str, Any]):
    """Arguments that are not a JSON object, on their way to the registry, which turns
    them into a ToolArgumentsError that is counted (pydantic-ai wants a dict here)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw


class _PassThrough:
    """An argument "validator" that leaves validation to the registry.

    The registry checks arguments against the tool's own schema and counts a call that
    fails it, which it could not if pydantic-ai refused the arguments first.
    """

    def validate_python(self, input: Any, **_: Any) -> Any:
        return input if isinstance(input, dict) else _Unparsed(input)

    def validate_json(self, input: str | bytes | bytearray, **_: Any) -> Any:
        try:
            value = from_json(input)
        except ValueError:
            return _Unparsed(input)
        return value if isinstance(value, dict) else _Unparsed(input)


_PASS_THROUGH = _PassThrough()


def _context(ctx: RunContext[Any]) -> dict[str, Any]:
    """Our call context from pydantic-ai's run context of one tool call."""
    return {
        "originator": _ORIGINATOR,
        "call_id": ctx.tool_call_id,
        "thread_id": ctx.conversation_id,
        "turn_id": ctx.run_id,
        "attempt": ctx.retry + 1,
        "retry": ctx.retry > 0,
    }


class RegistryToolset(AbstractToolset[Any]):
    """The tools of ``registry`` (the default registry if ``None``) as a pydantic-ai toolset.

    Each tool is listed with its description and JSON Schema as they are, and its MCP
    annotations in ``ToolDefinition.metadata["annotations"]``, where pydantic-ai's own MCP
    toolset puts them. The registry validates the arguments, so every call the model makes
    is counted, one whose arguments are not even JSON included. A mistake in them reaches
    the model as ``ModelRetry`` (it may correct itself, within the tool's retry budget); a
    tool that fails, as ``ToolFailed`` (the model reads the error, the run goes on).

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
        args: Any = tool_args.raw if isinstance(tool_args, _Unparsed) else tool_args
        try:
            return await self.registry.ainvoke(name, args, _context(ctx))
        except ToolArgumentsError as error:
            raise ModelRetry(str(error)) from error
        except ToolError as error:
            cause = error.__cause__
            if isinstance(cause, ModelRetry | ToolFailed):  # a tool written for pydantic-ai
                raise cause from None
            raise ToolFailed(str(error)) from error


@dataclass(init=False)
class Metered(AbstractCapability[Any]):
    """Meters every tool call of an agent into ``registry`` (the default one if ``None``).

    ``Agent(model, capabilities=[Metered(registry)])``: each call of a function tool, an
    MCP tool or any other toolset's tool is counted under the name the model called it
    by, as ``ToolRegistry.measure`` counts, with the same context as :class:`RegistryToolset`
    gives. It sits innermost among the agent's capabilities, so each time an outer one
    runs the tool again is counted too.

    - A tool that raises ``ModelRetry`` or ``ToolFailed`` (an MCP ``isError`` result, by
      default) has failed, with that error's type and its text as the message; so has one
      that raised anything else (which ends the run, as pydantic-ai does).
    - Arguments that fail validation never reach the tool: they count as a failure with
      the validation error's type (``ValidationError``, or the validator's ``ModelRetry``).
    - A call a capability answered in the tool's place (``SkipToolExecution``) succeeded;
      a deferred one (``CallDeferred``, ``ApprovalRequired``) is not a failure either and
      ends as a success with no output: the approved call, when it runs, is counted anew.
    - A tool that :class:`RegistryToolset` serves from the same registry is left to the
      registry, which counts it already.
    """

    registry: ToolRegistry

    def __init__(self, registry: ToolRegistry | None = None, *, id: str | None = None) -> None:
        self.registry = default_registry() if registry is None else registry
        self.id = id
        self._token = _token(self.registry)

    def get_ordering(self) -> CapabilityOrdering:
        return CapabilityOrdering(position="innermost")

    async def wrap_tool_validate(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: RawToolArgs,
        handler: WrapToolValidateHandler,
    ) -> ValidatedToolArgs:
        try:
            return await handler(args)
        except (ValidationError, ModelRetry, ToolFailed) as error:
            # The tool never runs, so wrap_tool_execute never sees this call.
            self.registry.measure(call.tool_name, args, _context(ctx)).fail(error)
            raise

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        metadata = tool_def.metadata
        if metadata is not None and metadata.get(_REGISTRY_KEY) == self._token:
            return await handler(args)
        # The whole context only when a handler watches tool events; else only what
        # counting reads, the try's number (none on a first try): a dict per call less,
        # on the path of every tool call of the agent. For the same reason the call is
        # begun and ended on the call core, without a MeasuredCall: it ends right here,
        # in this task.
        if _telemetry._tool_events_watched:
            context: dict[str, Any] | None = _context(ctx)
        else:
            context = {"attempt": ctx.retry + 1} if ctx.retry else None
        shard, meta = self.registry._begin(call.tool_name, args, context)
        start = _perf_ns()
        try:
            result = await handler(args)
        except SkipToolExecution as skipped:
            succeed(shard, meta, skipped.result, _perf_ns() - start)
            raise
        except (CallDeferred, ApprovalRequired):
            succeed(shard, meta, None, _perf_ns() - start)
            raise
        except BaseException as error:
            failed(shard, meta, _what_the_tool_raised(error), _perf_ns() - start)
            raise
        succeed(shard, meta, result, _perf_ns() - start)
        return result


def _what_the_tool_raised(error: BaseException) -> BaseException:
    """The error under pydantic-ai's wrapping: wrap hooks see a retry or failure signal
    wrapped, and the retry that exceeded the tool's budget as ``UnexpectedModelBehavior``."""
    cause = error.__cause__
    if isinstance(error, _WRAPPERS) and isinstance(cause, _SIGNALS):
        return cause
    return error


_WRAPPERS = (ToolRetryError, ToolFailedError, UnexpectedModelBehavior)
_SIGNALS = (ModelRetry, ToolFailed, ValidationError)
