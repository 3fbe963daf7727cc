"""The auto-run loop: a model asks for tools turn after turn, the registry runs them.

```python
from codex_tools.autorun import ScriptedModel, run_auto

result = run_auto(model, "What is 2 + 3?", registry=registry, max_attempts=3)
result.final_response, result.tool_failures, result.usage
```

Every tool call runs through the registry with ``thread_id``, ``turn_id``, ``turn``,
``call_id``, ``attempt`` and ``retry`` in its context, so its metrics and telemetry say
which turn it belongs to and whether it retries a call of the tool that failed. Failures
go back to the model; they never end the run. A model is anything with
``async next_turn(conversation) -> Turn``: :class:`ScriptedModel` replays Codex events,
:class:`OpenAIChatModel` asks a Chat Completions server.
"""

from __future__ import annotations

from codex_tools.autorun._loop import arun_auto, run_auto
from codex_tools.autorun._model import (
    Conversation,
    Model,
    ToolCall,
    ToolFailure,
    ToolOutput,
    ToolResult,
    Turn,
    TurnRecord,
    Usage,
)
from codex_tools.autorun._openai import OpenAIChatModel
from codex_tools.autorun._result import AutoRunResult, MaxAttemptsReached
from codex_tools.autorun._scripted import ScriptedModel

__all__ = [
    "AutoRunResult",
    "Conversation",
    "MaxAttemptsReached",
    "Model",
    "OpenAIChatModel",
    "ScriptedModel",
    "ToolCall",
    "ToolFailure",
    "ToolOutput",
    "ToolResult",
    "Turn",
    "TurnRecord",
    "Usage",
    "arun_auto",
    "run_auto",
]
