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

Why :func:`instrument` wraps SDK internals: no public hook of the SDK sees both a tool
call's id and how it ended. ``RunHooks``/``AgentHooks`` must be passed to each run or
agent, and ``on_tool_end`` gets only the text the model sees; tracing's function spans
carry no call id, redact the error by default and do not exist with tracing off;
``RunConfig.tool_error_formatter`` is per run and sees only the SDK's default error
handling; and an MCP ``isError`` result becomes ordinary content. So three narrow points
are wrapped, all of them process-wide, while any registry is instrumented:

- ``_invoke_function_tool_with_metadata`` (its two bindings: the run loop's, and
  ``agents.tool``'s for ``invoke_function_tool``): every function tool call, MCP tools
  included, with the ``ToolContext`` that carries ``tool_call_id``; what it raises, and
  the SDK's timeout answer, end the call as failures.
- ``agents.tool.maybe_invoke_function_tool_failure_error_function``: where a tool's
  exception is turned into the text the model sees (the SDK's default hides it).
- ``MCPUtil._extract_custom_data``: the one step of every MCP call that sees the raw
  ``CallToolResult``, ``isError`` included.

The extra pins the SDK to the minor version these are tested against.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Awaitable, Callable
from types import ModuleType, TracebackType
from typing import Any

try:
    import agents.run_internal.tool_execution as _run_tools
    import agents.tool as _sdk_tool
    from agents import FunctionTool, RunContextWrapper
    from agents.exceptions import ToolTimeoutError
    from agents.mcp.util import MCPUtil
    from agents.strict_schema import ensure_strict_json_schema
    from agents.tool_context import ToolContext as AgentToolContext
    from agents.version import __version__ as _sdk_version
    from mcp.types import ToolAnnotations
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'codex-tools[openai-agents]'"
    ) from error

from codex_tools import (
    Tool,
    ToolError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolRegistry,
    default_registry,
)
from codex_tools import telemetry as _telemetry
from codex_tools._call import failed, succeed
from codex_tools._metrics import Shard
from codex_tools.autorun._openai import check_name

__all__ = ["ORIGINATOR", "Instrumentation", "function_tools", "instrument"]

#: The ``originator`` of every call this adapter reports.
ORIGINATOR = "openai-agents"

_perf_ns = time.perf_counter_ns


def function_tools(registry: ToolRegistry | None = None) -> list[FunctionTool]:
    """The tools of ``registry`` (default: the process-wide one) as Agents SDK function tools.

    Each keeps its name, description, JSON Schema and MCP annotations (as
    ``FunctionTool.mcp_annotations``, where the SDK keeps an MCP tool's). The schema is
    sent in strict mode only where the SDK's strict conversion leaves its meaning
    unchanged; strict mode would otherwise make every optional argument required, or
    reject open objects.
    A tool switched off or removed from the registry later is no longer offered. A name
    the OpenAI API would refuse is a :class:`~codex_tools.ToolDefinitionError` (a
    ``ValueError``) here, not a failed request in the middle of a run.
    """
    tools = default_registry() if registry is None else registry
    offered = tools.tools()
    for each in offered:
        check_name(each.name)
    return [_function_tool(tools, each) for each in offered]


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
    annotations = tool.annotations
    return FunctionTool(
        name=tool.name,
        description=tool.description or "",
        params_json_schema=schema,
        on_invoke_tool=invoker,
        strict_json_schema=_strict_keeps_meaning(schema),
        is_enabled=invoker.offered,
        # Where the SDK keeps an MCP tool's annotations, read through the public
        # ``FunctionTool.mcp_annotations`` (by approval policies, say).
        _mcp_annotations=(
            None if annotations is None else ToolAnnotations.model_validate(dict(annotations))
        ),
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


# -- metering the SDK's own tool calls ------------------------------------------------------


#: Where a failure the SDK hides from the caller (it shows the model text instead) is
#: noted while a metered call runs: on the call's ``ToolContext``, which the SDK hands on to
#: its failure formatter and its MCP result handling, as it notes there itself that its
#: default formatter handled a failure. (A ContextVar and a holder object per call cost
#: twice as much.)
_NOTE = "_codex_tools_failure"
_UNMETERED = object()

_lock = threading.Lock()
_counts: dict[ToolRegistry, int] = {}  # instrumented registries, with their handle counts
_metered: tuple[ToolRegistry, ...] = ()  # read on every call, without the lock
_installed: list[tuple[Any, str, Any]] = []  # (owner, attribute, what it held before)


class Instrumentation:
    """Handle returned by :func:`instrument`; ``uninstrument()`` stops it (idempotent).

    Also a context manager that uninstruments on exit.
    """

    __slots__ = ("_active", "registry")

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self._active = True

    def __repr__(self) -> str:
        return f"<Instrumentation {'active' if self._active else 'uninstrumented'}>"

    @property
    def active(self) -> bool:
        """True until ``uninstrument()`` is called."""
        return self._active

    def uninstrument(self) -> None:
        """Stop metering into this handle's registry, unless another handle still does."""
        global _metered
        with _lock:
            if not self._active:
                return
            self._active = False
            _counts[self.registry] -= 1
            if not _counts[self.registry]:
                del _counts[self.registry]
            _metered = tuple(_counts)
            if not _metered:
                _remove()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstrument()


def instrument(registry: ToolRegistry | None = None) -> Instrumentation:
    """Meter every function and MCP tool call of every Agents SDK run into ``registry``
    (default: the process-wide one), with tracing on or off.

    Calls are counted under the tool's name, with the SDK's tool-call id as ``call_id``
    and ``originator="openai-agents"``. A failure the SDK shows the model as text (its
    error message, a timeout notice, an MCP ``isError`` result) counts as a failure, with
    the exception's type; an ``isError`` result counts as ``ToolExecutionError`` with its
    text as the message. Instrumenting a registry twice meters each call once; each
    handle is uninstrumented on its own, and the SDK is restored exactly when the last
    one is. A registry tool offered through :func:`function_tools` is counted once in
    its own registry.
    """
    global _metered
    tools = default_registry() if registry is None else registry
    with _lock:
        if not _installed:
            _install()
        _counts[tools] = _counts.get(tools, 0) + 1
        _metered = tuple(_counts)
    return Instrumentation(tools)


def _install() -> None:
    patches: list[tuple[Any, str, Callable[[Any], Any]]] = [
        (_run_tools, "_invoke_function_tool_with_metadata", _metering),
        (_sdk_tool, "_invoke_function_tool_with_metadata", _metering),
        (_sdk_tool, "maybe_invoke_function_tool_failure_error_function", _noting_handled_errors),
        (MCPUtil, "_extract_custom_data", _noting_mcp_errors),
    ]
    missing = [
        f"{_owner_name(owner)}.{name}" for owner, name, _ in patches if name not in vars(owner)
    ]
    if missing:
        raise RuntimeError(
            f"codex_tools.contrib.openai_agents supports openai-agents 0.24; "
            f"the installed {_sdk_version} lacks {', '.join(missing)}"
        )
    for owner, name, wrap in patches:
        saved = vars(owner)[name]
        setattr(owner, name, wrap(saved))
        _installed.append((owner, name, saved))


def _remove() -> None:
    while _installed:
        owner, name, saved = _installed.pop()
        setattr(owner, name, saved)


def _owner_name(owner: Any) -> str:
    return owner.__name__ if isinstance(owner, ModuleType) else owner.__qualname__


Invoke = Callable[..., Awaitable[Any]]


def _metering(invoke: Invoke) -> Invoke:
    async def invoke_metered(
        *, function_tool: FunctionTool, context: AgentToolContext[Any], arguments: str
    ) -> Any:
        registries = _metered
        invoker = function_tool.on_invoke_tool
        if type(invoker) is _RegistryInvoker:  # ainvoke counts it in its own registry
            registries = tuple(each for each in registries if each is not invoker.registry)
        if not registries:
            return await invoke(function_tool=function_tool, context=context, arguments=arguments)
        # The call's context only when a handler watches tool events: counting reads none.
        where = (
            {"call_id": context.tool_call_id, "originator": ORIGINATOR}
            if _telemetry._tool_events_watched
            else None
        )
        name = function_tool.name
        # Begun and ended on the call core, without a MeasuredCall per registry: the call
        # ends right here, in this task, and this is on the path of every tool call.
        begun = []  # a loop, not a comprehension: no function object per call on 3.11
        for each in registries:
            begun.append(each._begin(name, arguments, where))  # noqa: PERF401
        notes = context.__dict__
        notes[_NOTE] = None
        start = _perf_ns()
        try:
            result = await invoke(function_tool=function_tool, context=context, arguments=arguments)
        except BaseException as raised:  # every end is counted, then re-raised
            notes.pop(_NOTE, None)
            _failed_all(begun, _perf_ns() - start, raised)
            raise
        duration = _perf_ns() - start
        failure = notes.pop(_NOTE, None)
        limit = function_tool.timeout_seconds
        if failure is None and limit is not None:
            failure = _timed_out(function_tool, limit, result, duration / 1e9)
        if failure is None:
            for shard, meta in begun:
                succeed(shard, meta, result.output, duration)
        else:
            _failed_all(begun, duration, failure)
        return result

    return invoke_metered


def _failed_all(
    begun: list[tuple[Shard, dict[str, Any] | None]], duration: int, error: BaseException
) -> None:
    for shard, meta in begun:
        failed(shard, meta, error, duration)


def _timed_out(
    function_tool: FunctionTool, limit: float, result: Any, elapsed: float
) -> BaseException | None:
    """The SDK's own timeout, which it answers with a notice (or the tool's
    ``timeout_error_function``) instead of an exception."""
    if result.is_sdk_generated_error or elapsed >= limit:
        return ToolTimeoutError(tool_name=function_tool.name, timeout_seconds=limit)
    return None


def _noting_handled_errors(handle: Invoke) -> Invoke:
    async def handle_noted(
        *, function_tool: FunctionTool, context: RunContextWrapper[Any], error: BaseException
    ) -> Any:
        _note(context, error)
        return await handle(function_tool=function_tool, context=context, error=error)

    return handle_noted


def _noting_mcp_errors(extract: classmethod[Any, ..., Any]) -> classmethod[Any, ..., Any]:
    function = extract.__func__

    async def extract_noted(cls: type[MCPUtil], **kwargs: Any) -> Any:
        result = kwargs["result"]
        if _is_error(result):
            _note(
                kwargs["context"],
                ToolExecutionError(_text(result), tool=kwargs["tool_display_name"]),
            )
        return await function(cls, **kwargs)

    return classmethod(extract_noted)


def _note(context: Any, error: BaseException) -> None:
    """Note how the metered call running on ``context`` failed, if it is one and no
    failure was noted yet (the first is the tool's own)."""
    notes = getattr(context, "__dict__", None)
    if notes is not None and notes.get(_NOTE, _UNMETERED) is None:
        notes[_NOTE] = error


def _is_error(result: Any) -> bool:
    # mcp 2.x names it is_error; isError is the 1.x name, a deprecated alias once fastmcp
    # is imported (whose warning must not turn a success into a failure).
    if hasattr(result, "is_error"):
        return bool(result.is_error)
    return bool(getattr(result, "isError", None))


def _text(result: Any) -> str:
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    return "\n".join(texts) or "the MCP tool returned an error"
