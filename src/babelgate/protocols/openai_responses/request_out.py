"""Canonical Request -> a body for an OpenAI Responses upstream (`POST /v1/responses`).

Rules:
- The gateway keeps no server-side state: `store:false` unless the client continues a stored
  response (`previous_response_id` with `store` it chose), and with reasoning on,
  `include:["reasoning.encrypted_content"]` so reasoning can be sent back next turn.
- Reasoning parts go back only when they came from a Responses upstream (origin
  `openai-responses`, with their `encrypted_content`); anything else cannot be verified by
  OpenAI and is dropped.
- Tool names are sanitized (names.py); `parse_response` maps them back.
- Nothing OpenAI does not define is sent (top_k, stop sequences, end-user ids).
"""

from __future__ import annotations

from babelgate.canonical import (
    JSON,
    Document,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from babelgate.canonical.model import Effort
from babelgate.canonical.tool_args import dump_arguments
from babelgate.protocols.base import Quirks

from ..reuse import Reuse
from .content import render_input_part
from .envelope import ORIGIN
from .names import upstream_name
from .tools import render_text_format, render_tool_choice, render_tools

# Canonical efforts OpenAI does not name map to the nearest it does.
_EFFORT: dict[Effort, str] = {
    "none": "none",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "xhigh",
}




def _upstream_tools(tools: tuple[Tool, ...]) -> list[JSON]:
    return render_tools(tools, upstream=True)


def render_request(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    body: JSON = {"model": request.model}
    if request.system:
        body["instructions"] = "\n\n".join(t.text for t in request.system)
    body["input"] = render_input(request.messages)
    if request.tools:
        # Rendered once per distinct tool list (protocols/reuse.py): agents resend it every
        # turn.
        body["tools"] = reuse.derive(_upstream_tools, request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = render_tool_choice(
                request.tool_choice, request.tools, upstream=True
            )
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    reasoning = render_reasoning(request.reasoning)
    if reasoning is not None:
        body["reasoning"] = reasoning
    max_tokens = _clamp(request.max_tokens, quirks.max_tokens)
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    for key, value in (("temperature", request.temperature), ("top_p", request.top_p)):
        if value is not None:
            body[key] = value
    text_format = render_text_format(request.response_format)
    if text_format is not None:
        body["text"] = {"format": text_format}
    _render_state(body, request, reasoning is not None)
    body["stream"] = request.stream
    return body


def _render_state(body: JSON, request: Request, reasoning_on: bool) -> None:
    if request.previous_response_id:
        body["previous_response_id"] = request.previous_response_id
        if request.store is not None:
            body["store"] = request.store
        return
    body["store"] = False
    if reasoning_on:
        body["include"] = ["reasoning.encrypted_content"]


def _clamp(wanted: int | None, limit: int | None) -> int | None:
    if wanted is None or limit is None:
        return wanted
    return min(wanted, limit)


def render_reasoning(config: ReasoningConfig | None) -> JSON | None:
    """`reasoning:{effort, summary}`, or None to leave the model's default. Turning
    reasoning off is left to the default too: the effort that means "off" differs between
    models (`minimal` on gpt-5, `none` on later ones)."""
    if config is None or config.enabled is False:
        return None
    effort = _EFFORT[config.effort] if config.effort else _effort_for_budget(config)
    if effort is None and config.summary is None and not config.enabled:
        return None
    out: JSON = {}
    if effort is not None:
        out["effort"] = effort
    # Ask for summaries so the client has reasoning to show.
    out["summary"] = config.summary or "auto"
    return out


def _effort_for_budget(config: ReasoningConfig) -> str | None:
    """An Anthropic-style thinking budget as the nearest effort."""
    budget = config.budget_tokens
    if budget is None:
        return None
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


# ---------------------------------------------------------------- input items


def render_input(messages: tuple[Message, ...]) -> list[JSON]:
    items: list[JSON] = []
    for message in messages:
        if message.role == "assistant":
            _assistant_items(message, items)
        else:
            _user_items(message, items)
    return items


def _user_items(message: Message, items: list[JSON]) -> None:
    """User and system parts, with tool results as their own output items, in order."""
    role = "developer" if message.role == "system" else "user"
    content: list[JSON] = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            _flush_message(role, content, items)
            items.append(_result_item(part))
        elif isinstance(part, Text | Image | Document):
            content.append(render_input_part(part))
    _flush_message(role, content, items)


def _flush_message(role: str, content: list[JSON], items: list[JSON]) -> None:
    if content:
        items.append({"type": "message", "role": role, "content": list(content)})
        content.clear()


def _result_item(result: ToolResult) -> JSON:
    if all(isinstance(p, Text) for p in result.content):
        output: object = "".join(p.text for p in result.content if isinstance(p, Text))
    else:
        output = [render_input_part(p) for p in result.content]
    kind = "custom_tool_call_output" if result.kind == "custom" else "function_call_output"
    return {"type": kind, "call_id": result.call_id, "output": output}


def _assistant_items(message: Message, items: list[JSON]) -> None:
    for part in message.parts:
        if isinstance(part, Text):
            if part.text:
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": part.text}],
                    }
                )
        elif isinstance(part, ToolCall):
            items.append(_call_item(part))
        elif isinstance(part, Reasoning):
            item = _reasoning_item(part)
            if item is not None:
                items.append(item)


def _call_item(call: ToolCall) -> JSON:
    name = upstream_name(call.name)
    if call.kind == "custom":
        raw = call.arguments.get("input", "")
        return {
            "type": "custom_tool_call",
            "call_id": call.id,
            "name": name,
            "input": raw if isinstance(raw, str) else dump_arguments(call.arguments),
        }
    return {
        "type": "function_call",
        "call_id": call.id,
        "name": name,
        "arguments": dump_arguments(call.arguments),
    }


def _reasoning_item(part: Reasoning) -> JSON | None:
    # Only OpenAI's own encrypted reasoning can be replayed; item ids are left out, since
    # with store:false OpenAI has no stored item to look them up against.
    if part.origin != ORIGIN or not part.redacted:
        return None
    # OpenAI's summaries are authoritative; the text may be raw reasoning, not a summary.
    summary = part.summary or ()
    return {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": t} for t in summary],
        "encrypted_content": part.redacted,
    }
