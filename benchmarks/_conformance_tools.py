"""The tools the MCP conformance suite (``@modelcontextprotocol/conformance``) calls by
name, as ordinary registry tools: content blocks, an error, progress, a 2020-12 schema."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types

from codex_tools import Tool, ToolContext, ToolRegistry, tool

__all__ = ["conformance"]

conformance = ToolRegistry()

# One red pixel.
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0g" + (
    "AAAABJRU5ErkJggg=="
)
_WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="


def _image() -> types.ImageContent:
    return types.ImageContent(type="image", data=_PNG, mime_type="image/png")


def _resource() -> types.EmbeddedResource:
    contents = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="An embedded resource."
    )
    return types.EmbeddedResource(type="resource", resource=contents)


@tool
def test_simple_text() -> str:
    """Return a simple text."""
    return "This is a simple text response for testing."


@tool
def test_image_content() -> types.ImageContent:
    """Return an image."""
    return _image()


@tool
def test_audio_content() -> types.AudioContent:
    """Return a sound."""
    return types.AudioContent(type="audio", data=_WAV, mime_type="audio/wav")


@tool
def test_embedded_resource() -> types.EmbeddedResource:
    """Return an embedded resource."""
    return _resource()


@tool
def test_multiple_content_types() -> list[Any]:
    """Return text, an image and a resource."""
    return [types.TextContent(type="text", text="Several kinds:"), _image(), _resource()]


@tool
def test_error_handling() -> None:
    """Always fail."""
    raise RuntimeError("This tool fails on purpose")


@tool
async def test_tool_with_progress(ctx: ToolContext) -> str:
    """Report progress three times."""
    for step in (0, 50, 100):
        await ctx["progress"](step, 100, f"step {step}")
        await asyncio.sleep(0.05)
    return "done"


def _accept(**arguments: Any) -> str:
    return "ok"


for each in (
    test_simple_text,
    test_image_content,
    test_audio_content,
    test_embedded_resource,
    test_multiple_content_types,
    test_error_handling,
    test_tool_with_progress,
):
    conformance.register(each)
conformance.register(
    Tool(
        name="json_schema_2020_12_tool",
        fn=_accept,
        description="A hand-written JSON Schema 2020-12 schema, listed as it is.",
        parameters={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    )
)
