"""Whole (non-streamed) responses, both directions.

- `render_response`: Response -> the Messages body a client expects. Never an empty (or
  whitespace-only) text block; foreign reasoning and tool-call metadata ride in envelopes
  (carrier.py); usage has all four counters.
- `parse_response`: an Anthropic-compatible upstream's body -> Response, with tool names
  mapped back to the request's own and block types we cannot represent skipped.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import (
    NO_USAGE,
    Part,
    Reasoning,
    Request,
    Response,
    Text,
    ToolCall,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import parse_arguments

from ..answer_shape import answer_list
from .carrier import ANTHROPIC, client_call_id, reasoning_block
from .tool_names import custom_tool_names, name_map
from .wire import canonical_stop_reason, client_stop_reason, update_usage, usage_body

JSON = dict[str, Any]


# ---------------------------------------------------------------- client-facing


def render_response(response: Response, request: Request) -> JSON:
    content = [b for b in (client_block(p) for p in response.parts) if b is not None]
    # Claude Code reads the last block as the answer: a bare signature after it (Gemini signs
    # text parts; giving it back is optional) would leave it with none.
    while content and content[-1].get("type") == "thinking" and not content[-1]["thinking"]:
        content.pop()
    return {
        "id": response.id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": response.model or request.model,
        "content": content,
        "stop_reason": client_stop_reason(response.stop_reason),
        "stop_sequence": response.stop_sequence,
        "usage": usage_body(response.usage),
    }


def client_block(part: Part) -> JSON | None:
    """A finished response part -> a client content block (None: nothing to show)."""
    if isinstance(part, Text):
        # Whitespace-only text would come back in the client's next request, where
        # Anthropic rejects it.
        if not part.text or part.text.isspace():
            return None
        block: JSON = {"type": "text", "text": part.text}
        if part.citations:
            block["citations"] = list(part.citations)
        return block
    if isinstance(part, Reasoning):
        return reasoning_block(part)
    if isinstance(part, ToolCall):
        return tool_use_block(part)
    return None  # images, documents and tool results are not assistant output here


def tool_use_block(call: ToolCall, *, empty_input: bool = False) -> JSON:
    return {
        "type": "tool_use",
        "id": client_call_id(call),
        "name": call.name,
        "input": {} if empty_input else call.arguments,
    }


# ---------------------------------------------------------------- upstream-facing


def parse_response(body: JSON, request: Request) -> Response:
    names = name_map(request.tools)
    custom = custom_tool_names(request.tools)
    parts: list[Part] = []
    for block in answer_list(body, "content"):
        part = upstream_part(block, names, custom)
        if part is not None:
            parts.append(part)
    usage = update_usage(NO_USAGE, body.get("usage"))
    stop_sequence = body.get("stop_sequence")
    return Response(
        id=str(body.get("id") or new_id("msg_")),
        model=str(body.get("model") or request.model),
        parts=tuple(parts),
        stop_reason=canonical_stop_reason(body.get("stop_reason")) or "end_turn",
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=usage,
    )


def upstream_part(block: JSON, names: dict[str, str], custom: frozenset[str]) -> Part | None:
    """One upstream content block -> a Part; None for blocks with no canonical form
    (server_tool_use, web_search_tool_result...)."""
    kind = block.get("type")
    if kind == "text":
        citations = block.get("citations")
        return Text(
            text=str(block.get("text") or ""),
            citations=tuple(citations) if isinstance(citations, list) and citations else None,
        )
    if kind == "thinking":
        signature = block.get("signature")
        return Reasoning(
            text=str(block.get("thinking") or ""),
            signature=signature if isinstance(signature, str) and signature else None,
            origin=ANTHROPIC,
        )
    if kind == "redacted_thinking":
        return Reasoning(redacted=str(block.get("data") or ""), origin=ANTHROPIC)
    if kind == "tool_use":
        arguments = block.get("input")
        if not isinstance(arguments, dict):
            # Some compatible upstreams send the input as JSON text.
            arguments = parse_arguments(arguments if isinstance(arguments, str) else None)
        return upstream_call(block, arguments, names, custom)
    return None


def upstream_call(
    block: JSON, arguments: JSON, names: dict[str, str], custom: frozenset[str]
) -> ToolCall:
    name = str(block.get("name") or "")
    return ToolCall(
        id=str(block.get("id") or new_id("toolu_")),
        name=names.get(name, name),
        arguments=arguments,
        kind="custom" if name in custom else "function",
    )
