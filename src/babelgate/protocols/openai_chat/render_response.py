"""Canonical Response -> a client's chat.completion body.

Reasoning text rides in the non-standard `reasoning_content` field (what DeepSeek-aware
clients read); signatures and call metadata ride in the tool call ids (carrier.py); a
free-form (custom) tool call is rendered as Chat's `custom` tool call.
"""

from __future__ import annotations

import time

from babelgate.canonical import JSON, Reasoning, Request, Response, Text, ToolCall
from babelgate.canonical.tool_args import dump_arguments

from .carrier import client_call_ids
from .stop_reasons import finish_reason
from .usage import render_usage


def render_response(response: Response, request: Request) -> JSON:
    calls = [p for p in response.parts if isinstance(p, ToolCall)]
    text = "".join(p.text for p in response.parts if isinstance(p, Text))
    thoughts = [p for p in response.parts if isinstance(p, Reasoning)]
    reasoning = "".join(p.text for p in thoughts)
    message: JSON = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        ids = client_call_ids(calls, thoughts)
        message["tool_calls"] = [render_call(c, i) for c, i in zip(calls, ids, strict=True)]
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


def render_call(call: ToolCall, call_id: str) -> JSON:
    """`call_id` is the id the client sees (carrier.client_call_ids)."""
    if call.kind == "custom":
        raw = call.arguments.get("input")
        text = raw if isinstance(raw, str) else dump_arguments(call.arguments)
        return {"id": call_id, "type": "custom", "custom": {"name": call.name, "input": text}}
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": dump_arguments(call.arguments)},
    }
