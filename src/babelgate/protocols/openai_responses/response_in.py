"""An OpenAI Responses upstream's response -> canonical Response; also the item readers the
stream decoder shares.

- `reasoning` items become Reasoning(origin="openai-responses") with the summaries as text
  (raw `reasoning_text` content when there is no summary, as open-weight models behind a
  Responses API send) and `encrypted_content` kept in `redacted` for the next turn.
- Each `message` item becomes one Text (its output_text and refusal parts joined).
- `function_call` / `custom_tool_call` become ToolCalls, names mapped back to the client's.
- Built-in tool activity (web_search_call, ...) has no canonical form and is skipped.
- Usage: Responses counts cached tokens inside `input_tokens`; canonical keeps them apart.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import (
    JSON,
    Part,
    Reasoning,
    Request,
    Response,
    StopReason,
    Text,
    ToolCall,
    Usage,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import parse_arguments

from ..answer_shape import answer_list
from .envelope import ORIGIN
from .errors import error_from_event
from .names import name_map


def parse_response(body: JSON, request: Request) -> Response:
    if body.get("status") == "failed" or body.get("error"):
        raise error_from_event(body.get("error"))
    names = name_map(request)
    parts: list[Part] = []
    for item in answer_list(body, "output"):
        part = part_from_item(item, names)
        if part is not None:
            parts.append(part)
    created = body.get("created_at")
    return Response(
        id=str(body.get("id") or new_id("resp_")),
        model=str(body.get("model") or request.model),
        parts=tuple(parts),
        stop_reason=stop_reason(
            body.get("status"),
            body.get("incomplete_details"),
            any(isinstance(p, ToolCall) for p in parts),
        ),
        usage=parse_usage(body.get("usage")),
        created=int(created) if isinstance(created, int | float) else None,
    )


def part_from_item(item: JSON, names: dict[str, str]) -> Part | None:
    kind = item.get("type")
    if kind == "message":
        return Text(message_text(item))
    if kind == "reasoning":
        return reasoning_from_item(item)
    if kind in ("function_call", "custom_tool_call"):
        return call_from_item(item, names)
    return None


def message_text(item: JSON) -> str:
    pieces: list[str] = []
    for content in item.get("content") or []:
        if not isinstance(content, dict):
            continue
        value = content.get("text") if content.get("type") != "refusal" else content.get("refusal")
        if isinstance(value, str):
            pieces.append(value)
    return "".join(pieces)


def summaries_of(item: JSON) -> list[str]:
    return [
        s["text"]
        for s in item.get("summary") or []
        if isinstance(s, dict) and isinstance(s.get("text"), str)
    ]


def reasoning_from_item(item: JSON) -> Reasoning:
    summaries = summaries_of(item)
    raw = [
        c["text"]
        for c in item.get("content") or []
        if isinstance(c, dict) and isinstance(c.get("text"), str)
    ]
    encrypted = item.get("encrypted_content")
    return Reasoning(
        text="\n\n".join(summaries) if summaries else "".join(raw),
        origin=ORIGIN,
        redacted=encrypted if isinstance(encrypted, str) and encrypted else None,
        summary=tuple(summaries) or None,
    )


def call_from_item(item: JSON, names: dict[str, str], arguments: str | None = None) -> ToolCall:
    """A call item -> ToolCall; `arguments` is the streamed text when the item lacks it."""
    name = str(item.get("name") or "")
    name = names.get(name, name)
    call_id = str(item.get("call_id") or item.get("id") or new_id("call_"))
    if item.get("type") == "custom_tool_call":
        raw = item.get("input")
        text = raw if isinstance(raw, str) and raw else (arguments or "")
        return ToolCall(id=call_id, name=name, arguments={"input": text}, kind="custom")
    raw = item.get("arguments")
    json_text = raw if isinstance(raw, str) and raw else arguments
    return ToolCall(id=call_id, name=name, arguments=parse_arguments(json_text))


def stop_reason(status: Any, details: Any, has_calls: bool) -> StopReason:
    if status == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return "refusal" if reason == "content_filter" else "max_tokens"
    return "tool_use" if has_calls else "end_turn"


def parse_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    total_in = _int(raw.get("input_tokens"))
    details = raw.get("input_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    written = _int(details.get("cache_write_tokens")) if isinstance(details, dict) else 0
    out_details = raw.get("output_tokens_details") or {}
    reasoning = _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return Usage(
        input_tokens=max(total_in - cached - written, 0),
        output_tokens=_int(raw.get("output_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
