"""Canonical Response -> a client's chat.completion body.

Reasoning text rides in the non-standard `reasoning_content` field (what DeepSeek-aware
clients read); a free-form (custom) tool call is rendered as Chat's `custom` tool call.
"""

from __future__ import annotations

import time

from babelgate.canonical import JSON, Reasoning, Request, Response, Text, ToolCall
from babelgate.canonical.tool_args import dump_arguments

from .stop_reasons import finish_reason
from .usage import render_usage


def render_response(response: Response, request: Request) -> JSON:
    calls = [p for p in response.parts if isinstance(p, ToolCall)]
    text = "".join(p.text for p in response.parts if isinstance(p, Text))
    reasoning = "".join(p.text for p in response.parts if isinstance(p, Reasoning))
    message: JSON = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [render_call(call) for call in calls]
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created or int(time.time()),
        "model": response.model or request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response.stop_reason, bool(calls)),
            }
        ],
        "usage": render_usage(response.usage),
    }


def render_call(call: ToolCall) -> JSON:
    if call.kind == "custom":
        raw = call.arguments.get("input")
        text = raw if isinstance(raw, str) else dump_arguments(call.arguments)
        return {"id": call.id, "type": "custom", "custom": {"name": call.name, "input": text}}
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": dump_arguments(call.arguments)},
    }
