"""A strict fake of the OpenAI Responses API (`POST /v1/responses`).

Enforces: Bearer auth; allow-listed top-level fields; flat function tools with valid names;
input items of known types; every function_call_output answering an earlier function_call
(by call_id); reasoning items sent back with `store:false` must carry the encrypted_content
this fake issued. Streams number their events (`sequence_number`) and end with
`response.completed` (or `response.incomplete`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from .core import (
    JSON,
    Conversation,
    FakeUpstream,
    Invalid,
    Resolved,
    new_id,
    now,
    opaque_ok,
    opaque_token,
    pieces,
    resolve,
)
from .openai_chat import ERROR_TYPES

RESPONSES_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "previous_response_id",
        "store",
        "stream",
        "stream_options",
        "include",
        "reasoning",
        "max_output_tokens",
        "max_tool_calls",
        "text",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "truncation",
        "temperature",
        "top_p",
        "top_logprobs",
        "metadata",
        "user",
        "safety_identifier",
        "service_tier",
        "background",
        "conversation",
        "context_management",
        # Codex sends it to api.openai.com on every turn (string map: session/turn ids).
        "client_metadata",
    }
)
ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "custom_tool_call",
        "custom_tool_call_output",
        "item_reference",
        "local_shell_call",
        "local_shell_call_output",
        "web_search_call",
        "compaction",
    }
)
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CALL_OUTPUTS = {
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
    "local_shell_call_output": "local_shell_call",
}


class FakeResponses(FakeUpstream):
    protocol = "openai-responses"
    base_path = "/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self.responses)

    def auth_error(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return "You didn't provide an API key."
        if header != f"Bearer {self.api_key}":
            return "Incorrect API key provided."
        return None

    def error_body(self, status: int, message: str, param: str | None) -> JSON:
        return {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status, "api_error"),
                "param": param,
                "code": "invalid_api_key" if status == 401 else None,
            }
        }

    def frame(self, event: JSON) -> bytes:
        return (
            b"event: "
            + str(event.get("type")).encode()
            + b"\ndata: "
            + orjson.dumps(event)
            + b"\n\n"
        )

    def view(self, body: JSON) -> Conversation:
        return view(body)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        rec, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body: JSON = rec.body
        try:
            validate(body)
        except Invalid as exc:
            return self.error(exc.status, exc.message, exc.param)
        reply = self.next_reply(self.view(body))
        res = resolve(reply, body, "call_", str(body["model"]))
        encrypted = "reasoning.encrypted_content" in (body.get("include") or [])
        return await self.answer(
            request,
            reply,
            bool(body.get("stream")),
            lambda: render_response(res, body, encrypted),
            lambda: render_events(res, body, encrypted),
        )


# -- validation


def validate(body: JSON) -> None:
    for key in body:
        if key not in RESPONSES_FIELDS:
            raise Invalid(f"Unknown parameter: '{key}'.", param=key)
    if "model" not in body:
        raise Invalid("Missing required parameter: 'model'.", param="model")
    validate_tools(body.get("tools"))
    items = body.get("input")
    if isinstance(items, str) or items is None:
        return
    if not isinstance(items, list):
        raise Invalid("Invalid type for 'input': expected a string or an array.", param="input")
    calls: set[str] = set()
    for i, item in enumerate(items):
        check_item(item, i, calls, body.get("store") is False)


def validate_tools(tools: Any) -> None:
    for i, tool in enumerate(tools or []):
        if tool.get("type") not in ("function", "custom"):
            continue  # built-in tools (web_search, local_shell, ...) need no name
        if "name" not in tool:
            raise Invalid(
                f"Missing required parameter: 'tools[{i}].name'.", param=f"tools[{i}].name"
            )
        if not TOOL_NAME.match(str(tool["name"])):
            raise Invalid(
                f"Invalid 'tools[{i}].name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                param=f"tools[{i}].name",
            )


def check_item(item: JSON, i: int, calls: set[str], store_off: bool) -> None:
    kind = item.get("type", "message" if "role" in item else None)
    if kind not in ITEM_TYPES:
        raise Invalid(
            f"Invalid value: '{kind}'. Supported values are: 'message', "
            "'function_call', 'function_call_output', 'reasoning', ...",
            param=f"input[{i}].type",
        )
    if kind == "message" and item.get("role") not in ("user", "assistant", "system", "developer"):
        raise Invalid(
            f"Invalid value: '{item.get('role')}'. Supported values are: 'assistant', "
            "'system', 'developer', and 'user'.",
            param=f"input[{i}].role",
        )
    if kind in ("function_call", "custom_tool_call", "local_shell_call"):
        if not item.get("call_id"):
            raise Invalid(
                f"Missing required parameter: 'input[{i}].call_id'.", param=f"input[{i}].call_id"
            )
        if kind == "function_call" and not isinstance(item.get("arguments"), str):
            raise Invalid(
                f"Invalid type for 'input[{i}].arguments': expected a string.",
                param=f"input[{i}].arguments",
            )
        calls.add(item["call_id"])
    elif kind in CALL_OUTPUTS and item.get("call_id") not in calls:
        raise Invalid(
            f"No tool call found for function call output with call_id {item.get('call_id')}.",
            param="input",
        )
    elif kind == "reasoning" and store_off and not opaque_ok(item.get("encrypted_content")):
        raise Invalid(
            f"Item with id '{item.get('id')}' not found. Items are not persisted when "
            "`store` is set to false. Try again with `store` set to true, or remove "
            "this item from your input.",
            status=404,
            param="input",
        )


# -- what the brain sees


def item_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def view(body: JSON) -> Conversation:
    conv = Conversation(wants_reasoning=bool(body.get("reasoning")))
    for tool in body.get("tools") or []:
        if tool.get("type") == "function":
            conv.tools[tool["name"]] = tool.get("parameters") or {}
    items = body.get("input")
    if isinstance(items, str):
        conv.last_user_text = items
        return conv
    items = items or []
    tail = []
    for item in reversed(items):
        if item.get("type") not in CALL_OUTPUTS:
            break
        tail.append(item_text(item.get("output")))
    conv.tool_results = list(reversed(tail))
    users = [
        item_text(it.get("content"))
        for it in items
        if it.get("type", "message") == "message" and it.get("role") == "user"
    ]
    conv.last_user_text = next(
        (t for t in reversed(users) if "RUN<<" in t), users[-1] if users else ""
    )
    return conv


# -- rendering


def usage_json(res: Resolved) -> JSON:
    return {
        "input_tokens": res.input_tokens,
        "input_tokens_details": {"cached_tokens": res.cached_tokens},
        "output_tokens": res.output_tokens,
        "output_tokens_details": {"reasoning_tokens": res.reasoning_tokens},
        "total_tokens": res.input_tokens + res.output_tokens,
    }


def output_items(res: Resolved, encrypted: bool) -> list[JSON]:
    items: list[JSON] = []
    if res.reasoning:
        reasoning: JSON = {
            "id": new_id("rs_"),
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": res.reasoning}],
        }
        if encrypted:
            reasoning["encrypted_content"] = opaque_token()
        items.append(reasoning)
    if res.text:
        items.append(
            {
                "id": new_id("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": res.text, "annotations": [], "logprobs": []}
                ],
            }
        )
    for cid, name, args in res.calls:
        items.append(
            {
                "id": new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "call_id": cid,
                "name": name,
                "arguments": args,
            }
        )
    return items


def render_response(
    res: Resolved,
    body: JSON,
    encrypted: bool,
    output: list[JSON] | None = None,
    status: str | None = None,
) -> JSON:
    final = status or ("incomplete" if res.stop == "max_tokens" else "completed")
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": final,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if final == "incomplete" else None,
        "instructions": body.get("instructions"),
        "model": res.model,
        "output": output_items(res, encrypted) if output is None else output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "tools": body.get("tools") or [],
        "usage": usage_json(res) if status is None else None,
    }


def item_events(index: int, item: JSON) -> list[JSON]:
    base = {"output_index": index, "item_id": item["id"]}
    if item["type"] == "reasoning":
        text = item["summary"][0]["text"]
        part = {"type": "summary_text", "text": ""}
        return [
            {
                "type": "response.reasoning_summary_part.added",
                **base,
                "summary_index": 0,
                "part": part,
            },
            *[
                {
                    "type": "response.reasoning_summary_text.delta",
                    **base,
                    "summary_index": 0,
                    "delta": p,
                }
                for p in pieces(text)
            ],
            {
                "type": "response.reasoning_summary_text.done",
                **base,
                "summary_index": 0,
                "text": text,
            },
            {
                "type": "response.reasoning_summary_part.done",
                **base,
                "summary_index": 0,
                "part": {"type": "summary_text", "text": text},
            },
        ]
    if item["type"] == "message":
        text = item["content"][0]["text"]
        empty = {"type": "output_text", "text": "", "annotations": []}
        return [
            {"type": "response.content_part.added", **base, "content_index": 0, "part": empty},
            *[
                {
                    "type": "response.output_text.delta",
                    **base,
                    "content_index": 0,
                    "delta": p,
                    "logprobs": [],
                }
                for p in pieces(text)
            ],
            {
                "type": "response.output_text.done",
                **base,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            },
            {
                "type": "response.content_part.done",
                **base,
                "content_index": 0,
                "part": item["content"][0],
            },
        ]
    args = item["arguments"]
    return [
        *[
            {"type": "response.function_call_arguments.delta", **base, "delta": p}
            for p in pieces(args, 10)
        ],
        {"type": "response.function_call_arguments.done", **base, "arguments": args},
    ]


def added_form(item: JSON) -> JSON:
    """How an item looks in `output_item.added`: empty content, in progress."""
    if item["type"] == "reasoning":
        return {**item, "summary": []}
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": "in_progress", "arguments": ""}


def render_events(res: Resolved, body: JSON, encrypted: bool) -> list[JSON]:
    final = render_response(res, body, encrypted)
    shell = {
        **final,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "incomplete_details": None,
    }
    events: list[JSON] = [
        {"type": "response.created", "response": shell},
        {"type": "response.in_progress", "response": shell},
    ]
    for index, item in enumerate(final["output"]):
        events.append(
            {"type": "response.output_item.added", "output_index": index, "item": added_form(item)}
        )
        events += item_events(index, item)
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    done = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    events.append({"type": done, "response": final})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events
