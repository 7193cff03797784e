"""Upstream tool calls -> canonical ToolCall, shared by the response parser and the stream
decoder: ids made safe for every client, names mapped back to the request's own tools,
arguments parsed and repaired."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from babelgate.canonical import Tool, ToolCall
from babelgate.canonical.ids import new_id, safe_call_id
from babelgate.canonical.tool_args import parse_arguments


def make_call(call_id: Any, name: Any, arguments: Any, tools: Mapping[str, Tool]) -> ToolCall:
    """`tools` maps wire names to the request's tools (names.tools_by_wire_name)."""
    wire = name if isinstance(name, str) else ""
    tool = tools.get(wire)
    return ToolCall(
        # Kimi sends ids such as `functions.Bash:0`; Anthropic clients reject those.
        id=safe_call_id(call_id) if isinstance(call_id, str) and call_id else new_id("call_"),
        name=tool.name if tool is not None else wire,
        arguments=parse_arguments(arguments_text(arguments)),
        kind="custom" if tool is not None and tool.kind == "custom" else "function",
    )


def arguments_text(arguments: Any) -> str | None:
    """Arguments as text; a few upstreams send an object instead of a JSON string."""
    if arguments is None or isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode()
