"""OpenTelemetry bridge: tool events become GenAI ``execute_tool`` spans and a duration histogram.

Follows the OpenTelemetry GenAI semantic conventions for tool execution::

    from codex_tools.contrib.opentelemetry import instrument

    handle = instrument(tracer_provider=provider, meter_provider=meter_provider)
    ...
    handle.uninstrument()

The span is started on the ``("codex", "tool", "start")`` event and made current
(``context.attach``) so that it is the child of whatever span is current where the
tool was invoked and the parent of every span the tool body opens; the end event,
emitted in the same thread or task, detaches it and ends it. Tool arguments,
results and exception messages are content: they are recorded only when asked
for (``capture_content=True`` or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:
    raise ImportError(
        "codex_tools.contrib.opentelemetry needs OpenTelemetry: pip install 'codex-tools[otel]'"
    ) from exc

from codex_tools import (
    ToolNotFoundError,
    ToolRegistry,
    __version__,
    default_registry,
    telemetry,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["CAPTURE_CONTENT_ENV", "DURATION_BUCKETS", "Instrumentation", "instrument"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

#: Bucket boundaries (seconds) the GenAI conventions advise for ``gen_ai.*.duration``.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

_logger = logging.getLogger(__name__)
_ids = itertools.count(1)


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool = False,
    registry: ToolRegistry | None = None,
) -> Instrumentation:
    """Start producing spans and duration measurements for every tool invocation.

    Providers default to the global ones; ``registry`` (default: the process-wide
    one) is only where tool descriptions are looked up. Each call attaches its own
    handlers, so two instrumentations (say, two providers) work side by side.
    """
    capture = capture_content or os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"
    tracer = trace.get_tracer(__name__, __version__, tracer_provider=tracer_provider)
    meter = otel_metrics.get_meter(__name__, __version__, meter_provider=meter_provider)
    histogram = meter.create_histogram(
        "gen_ai.execute_tool.duration",
        unit="s",
        description="Duration of tool executions.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    instrumentation = Instrumentation(
        tracer=tracer,
        histogram=histogram,
        capture_content=capture,
        registry=registry if registry is not None else default_registry(),
    )
    instrumentation._attach()
    return instrumentation


@dataclass(eq=False)
class _InFlight:
    span: Span
    token: contextvars.Token[otel_context.Context]


class Instrumentation:
    """Handle returned by :func:`instrument`; ``uninstrument()`` stops it."""

    def __init__(
        self, tracer: Tracer, histogram: Histogram, capture_content: bool, registry: ToolRegistry
    ) -> None:
        self.tracer = tracer
        self.histogram = histogram
        self.capture_content = capture_content
        self.registry = registry
        self.handler_id = f"codex_tools.contrib.opentelemetry-{next(_ids)}"
        self._in_flight: dict[Any, _InFlight] = {}  # by the events' span_token
        self._lock = threading.Lock()
        self._closing = False
        self._end_attached = False

    def __repr__(self) -> str:
        state = "active" if self.active else "uninstrumented"
        return f"<Instrumentation {self.handler_id} {state} capture_content={self.capture_content}>"

    @property
    def active(self) -> bool:
        """True until ``uninstrument()`` is called."""
        return not self._closing

    def uninstrument(self) -> None:
        """Stop creating spans; idempotent.

        Invocations already under way still get their span ended and their context
        detached (leaving it attached would make a finished span the parent of
        everything the caller does next), so the end handler stays until they drain.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            telemetry.detach(self._start_id)
            if not self._in_flight:
                self._detach_end()

    @property
    def _start_id(self) -> str:
        return f"{self.handler_id}:start"

    @property
    def _end_id(self) -> str:
        return f"{self.handler_id}:end"

    def _attach(self) -> None:
        # The end handler first: every span started must have an end handler to close it.
        telemetry.attach_many(
            self._end_id, [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], self._on_end
        )
        self._end_attached = True
        telemetry.attach(self._start_id, telemetry.TOOL_START, self._on_start)

    def _detach_end(self) -> None:
        telemetry.detach(self._end_id)
        self._end_attached = False

    def _on_start(
        self,
        event: tuple[str, ...],
        measurements: Mapping[str, Any],
        metadata: Mapping[str, Any],
        config: Any,
    ) -> None:
        try:
            name = str(metadata["tool"])
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.type": "function",
                "codex_tools.retry": bool(metadata.get("retry")),
            }
            if metadata.get("call_id") is not None:
                attributes["gen_ai.tool.call.id"] = str(metadata["call_id"])
            if metadata.get("attempt") is not None:
                attributes["codex_tools.attempt"] = int(metadata["attempt"])
            description = self._description(name)
            if description:
                attributes["gen_ai.tool.description"] = description
            if self.capture_content and "arguments" in metadata:
                attributes["gen_ai.tool.call.arguments"] = _to_json(metadata["arguments"])
            span = self.tracer.start_span(
                f"execute_tool {name}",
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=measurements.get("system_time"),
            )
            state = _InFlight(span, otel_context.attach(trace.set_span_in_context(span)))
            with self._lock:
                if self._end_attached:
                    self._in_flight[metadata["span_token"]] = state
                    return
            # uninstrument() ran meanwhile and no end event will reach us: undo now.
            self._end_span(state, metadata, None, None)
        except Exception:
            _logger.exception("could not start the span of a tool invocation")

    def _on_end(
        self,
        event: tuple[str, ...],
        measurements: Mapping[str, Any],
        metadata: Mapping[str, Any],
        config: Any,
    ) -> None:
        try:
            with self._lock:
                state = self._in_flight.pop(metadata.get("span_token"), None)
                if self._closing and not self._in_flight:
                    self._detach_end()
            error = metadata.get("error") if event == telemetry.TOOL_FAILURE else None
            error_type = type(error).__name__ if error is not None else None
            if state is not None:
                self._end_span(state, metadata, error, error_type)
            if not self._closing or state is not None:
                self._record_duration(measurements, metadata, error_type)
        except Exception:
            _logger.exception("could not end the span of a tool invocation")

    def _end_span(
        self,
        state: _InFlight,
        metadata: Mapping[str, Any],
        error: BaseException | None,
        error_type: str | None,
    ) -> None:
        span = state.span
        # Never raises: a token from another context is logged by OpenTelemetry itself.
        otel_context.detach(state.token)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            if self.capture_content and error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            else:
                span.set_status(Status(StatusCode.ERROR))
        elif self.capture_content and "output" in metadata:
            span.set_attribute("gen_ai.tool.call.result", _to_json(metadata["output"]))
        span.end()

    def _record_duration(
        self,
        measurements: Mapping[str, Any],
        metadata: Mapping[str, Any],
        error_type: str | None,
    ) -> None:
        duration = measurements.get("duration")
        if duration is None:
            return
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": str(metadata.get("tool")),
        }
        if error_type is not None:
            attributes["error.type"] = error_type
        self.histogram.record(duration / 1e9, attributes)

    def _description(self, name: str) -> str | None:
        try:
            return self.registry.lookup(name).description
        except ToolNotFoundError:
            return None


def _to_json(value: Any) -> str:
    """JSON for a span attribute; ``str()`` for what JSON cannot hold (cycles, odd keys)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
