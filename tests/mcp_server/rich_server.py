"""An upstream MCP server with everything a proxy must pass on unchanged: titles, output
schemas, structured content, image and embedded-resource content, resources, prompts,
and a tool list that changes (``grow`` adds a tool and says so). Run as a script."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(
        name="weather",
        title="Weather",
        description="The weather in a city.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        output_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
            "required": ["city", "celsius"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=True),
        meta={"vendor/tag": "kept"},
    ),
    types.Tool(
        name="snapshot",
        description="A picture and the file it came from.",
        input_schema={"type": "object"},
    ),
    types.Tool(name="grow", description="Add a tool.", input_schema={"type": "object"}),
]


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name == "weather":
        city = (params.arguments or {}).get("city", "?")
        data = {"city": city, "celsius": 21.5}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{city}: 21.5 °C")],
            structured_content=data,
        )
    if params.name == "snapshot":
        return types.CallToolResult(
            content=[
                types.ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="file:///notes.txt", mime_type="text/plain", text="hello"
                    ),
                ),
            ]
        )
    if params.name == "grow" and not any(tool.name == "grown" for tool in TOOLS):
        TOOLS.append(
            types.Tool(name="grown", description="Added later.", input_schema={"type": "object"})
        )
        await ctx.session.send_tool_list_changed()
        return types.CallToolResult(content=[types.TextContent(type="text", text="grown")])
    if params.name == "grown":
        return types.CallToolResult(content=[types.TextContent(type="text", text="I am new")])
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"no tool {params.name}")], is_error=True
    )


async def list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    return types.ListResourcesResult(
        resources=[types.Resource(uri="file:///notes.txt", name="notes", mime_type="text/plain")]
    )


async def read_resource(
    ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=params.uri, mime_type="text/plain", text="hello")]
    )


async def list_prompts(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    return types.ListPromptsResult(
        prompts=[types.Prompt(name="review", description="Review a change.")]
    )


async def get_prompt(
    ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
) -> types.GetPromptResult:
    return types.GetPromptResult(
        description="Review a change.",
        messages=[
            types.PromptMessage(
                role="user", content=types.TextContent(type="text", text="Review this.")
            )
        ],
    )


server: Server[Any] = Server(
    "rich-upstream",
    version="1.2.3",
    instructions="Use weather for the weather.",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_list_resources=list_resources,
    on_read_resource=read_resource,
    on_list_prompts=list_prompts,
    on_get_prompt=get_prompt,
)


async def main() -> None:
    options = server.create_initialization_options(NotificationOptions(tools_changed=True))
    async with stdio_server() as (read, write):
        await server.run(read, write, options)


anyio.run(main)
