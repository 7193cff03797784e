"""An upstream's chat.completion body -> canonical Response.

Parts come out in the order a reader would see them: reasoning (`reasoning_content`,
OpenRouter's `reasoning` or the text of its `reasoning_details`), then text, then tool calls.
"""

from __future__ import annotations

from babelgate.canonical import JSON, Part, Reasoning, Request, Response, Text, ToolCall, Usage
from babelgate.canonical.ids import new_id

from ..answer_shape import answer_list, answer_object
from ..reuse import Reuse
from .calls import make_call
from .errors import error_from_json
from .names import tools_by_wire_name
from .stop_reasons import stop_reason
from .usage import parse_usage


def parse_response(body: JSON, request: Request, reuse: Reuse) -> Response:
    if not body.get("choices") and body.get("error"):
        # Some routers answer HTTP 200 with an error body instead of a completion.
        raise error_from_json(body)
    choices = answer_list(body, "choices")
    choice = choices[0] if choices else {}
    message = answer_object(choice, "message")
    parts = _parts(message, request, reuse)
    has_calls = any(isinstance(p, ToolCall) for p in parts)
    usage = body.get("usage")
    created = body.get("created")
    reason = stop_reason(choice.get("finish_reason"), has_calls)
    sequence = _stop_sequence(choice, request)
    if sequence is not None and reason == "end_turn":
        reason = "stop_sequence"
    return Response(
        id=body.get("id") or new_id("chatcmpl-"),
        model=body.get("model") or request.model,
        parts=tuple(parts),
        stop_reason=reason,
        stop_sequence=sequence,
        usage=parse_usage(usage) if isinstance(usage, dict) else Usage(),
        created=created if isinstance(created, int) else None,
    )


def _parts(message: JSON, request: Request, reuse: Reuse) -> list[Part]:
    parts: list[Part] = []
    reasoning = reasoning_text(message)
    if reasoning:
        parts.append(Reasoning(text=reasoning, origin="openai"))
    content = message.get("content")
    if isinstance(content, list):  # a few upstreams answer with content parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    elif content is not None and not isinstance(content, str):
        raise ValueError("`message.content` is neither text nor a list of parts")
    if content:
        parts.append(Text(text=content))
    elif message.get("refusal"):
        parts.append(Text(text=message["refusal"]))
    calls = message.get("tool_calls")
    legacy = message.get("function_call")
    if not calls and not isinstance(legacy, dict):
        return parts  # no call to name: the request's tool map is not needed
    tools = tools_by_wire_name(request, reuse)
    for call in calls or ():
        function = call.get("function") or {}
        parts.append(
            make_call(call.get("id"), function.get("name"), function.get("arguments"), tools)
        )
    if isinstance(legacy, dict):
        parts.append(make_call(None, legacy.get("name"), legacy.get("arguments"), tools))
    return parts


def reasoning_text(message: JSON) -> str:
    """Reasoning text from a message or a delta, whichever field the upstream uses."""
    text = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(text, str):
        return text
    details = message.get("reasoning_details")
    if isinstance(details, list):
        return "".join(_detail_text(d) for d in details if isinstance(d, dict))
    return ""


def _detail_text(detail: JSON) -> str:
    text = detail.get("text") or detail.get("summary")
    return text if isinstance(text, str) else ""


def _stop_sequence(choice: JSON, request: Request) -> str | None:
    """vLLM names the stop string that ended the text in `stop_reason`."""
    matched = choice.get("stop_reason")
    return matched if isinstance(matched, str) and matched in request.stop else None
