"""A strict fake of OpenAI Chat Completions (`POST /v1/chat/completions`).

Enforces what api.openai.com enforces: Bearer auth, an allow-list of top-level fields (plus the
extras a preset's provider accepts), message roles and shapes, tool messages directly after the
assistant message whose calls they answer (each call answered exactly once), tool names.
Mode `deepseek_thinking`: with thinking enabled, assistant tool-call turns must carry
`reasoning_content`, as DeepSeek requires. Streams end with an optional usage chunk and
`data: [DONE]`. Mode `no_usage`: like llama-cpp-python's server, no `usage` anywhere (no usage
chunk even when `stream_options.include_usage` asks for one, no `usage` in a whole answer).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .core import (
    JSON,
    Conversation,
    FakeUpstream,
    Invalid,
    Resolved,
    new_id,
    now,
    pieces,
    resolve,
)

CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)

# Extras that OpenAI-compatible providers accept on top of OpenAI's own fields.
PRESET_EXTRAS: dict[str, frozenset[str]] = {
    # DeepSeek ignores sampling fields it does not support (its docs; providers/presets.py),
    # such as the top_k Gemini CLI sends on every request.
    "deepseek": frozenset({"thinking", "top_k"}),
    "openrouter": frozenset(
        {
            "reasoning",
            "provider",
            "transforms",
            "models",
            "route",
            "usage",
            "plugins",
            "include_reasoning",
        }
    ),
    "qwen": frozenset({"enable_thinking", "thinking_budget", "top_k"}),
    "vllm": frozenset({"top_k", "min_p", "repetition_penalty", "chat_template_kwargs"}),
}

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = ("system", "developer", "user", "assistant", "tool")
USER_PARTS = ("text", "image_url", "input_audio", "file")
STOP_REASONS = {
    "end": "stop",
    "tool": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}


class FakeOpenAI(FakeUpstream):
    protocol = "openai"
    base_path = "/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)

    def auth_error(self, request: web.Request) -> str | None:
        if not self.api_key:  # api_key="": a local server (llama.cpp, Ollama) that asks none
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        if header != f"Bearer {self.api_key}":
            return "Incorrect API key provided."
        return None

    def error_body(self, status: int, message: str, param: str | None) -> JSON:
        code = "invalid_api_key" if status == 401 else None
        return {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status, "api_error"),
                "param": param,
                "code": code,
            }
        }

    def trailer(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": "test-model", "object": "model", "created": now(), "owned_by": "fake"}
                ],
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        rec, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        body: JSON = rec.body
        try:
            self.validate(body)
        except Invalid as exc:
            return self.error(exc.status, exc.message, exc.param)
        reply = self.next_reply(self.view(body))
        res = resolve(reply, body, "call_", str(body["model"]))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        silent = "no_usage" in self.modes
        return await self.answer(
            request,
            reply,
            bool(body.get("stream")),
            lambda: render_json(res, usage=not silent),
            lambda: render_chunks(res, include_usage and not silent),
        )

    # -- validation

    def thinking_on(self, body: JSON) -> bool:
        thinking = body.get("thinking")
        if isinstance(thinking, dict):
            return thinking.get("type") == "enabled"
        return "reasoner" in str(body.get("model"))

    def validate(self, body: JSON) -> None:
        allowed = CHAT_FIELDS | PRESET_EXTRAS.get(self.preset or "", frozenset())
        for key in body:
            if key not in allowed:
                raise Invalid(f"Unrecognized request argument supplied: {key}", param=key)
        for key in ("model", "messages"):
            if key not in body:
                raise Invalid(f"Missing required parameter: '{key}'.", param=key)
        if body.get("stream_options") is not None and not body.get("stream"):
            raise Invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        stop = body.get("stop")
        if isinstance(stop, list) and len(stop) > 4:
            raise Invalid("'stop' may contain at most 4 sequences.", param="stop")
        names = validate_tools(body.get("tools"))
        validate_tool_choice(body.get("tool_choice"), names)
        validate_messages(
            body["messages"], self.thinking_on(body) and "deepseek_thinking" in self.modes
        )

    # -- what the brain sees

    def view(self, body: JSON) -> Conversation:
        conv = Conversation(wants_reasoning=self.thinking_on(body))
        for tool in body.get("tools") or []:
            fn = tool.get("function") or {}
            conv.tools[fn.get("name", "")] = fn.get("parameters") or {}
        messages = body["messages"]
        tail = []
        for msg in reversed(messages):
            if msg.get("role") != "tool":
                break
            tail.append(content_text(msg.get("content")))
        conv.tool_results = list(reversed(tail))
        users = [m for m in messages if m.get("role") == "user"]
        if users:
            conv.last_user_text = content_text(users[-1].get("content"))
        return conv


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def validate_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise Invalid("Invalid type for 'tools': expected an array.", param="tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise Invalid(
                f"Invalid value for 'tools[{i}].type': expected 'function'.",
                param=f"tools[{i}].type",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict) or "name" not in fn:
            raise Invalid(
                f"Missing required parameter: 'tools[{i}].function'.", param=f"tools[{i}].function"
            )
        if not TOOL_NAME.match(str(fn["name"])):
            raise Invalid(
                f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                param=f"tools[{i}].function.name",
            )
        params = fn.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type") != "object"):
            raise Invalid(
                f"Invalid schema for function '{fn['name']}': schema must be a JSON "
                "Schema of 'type: \"object\"'.",
                param=f"tools[{i}].function.parameters",
            )
        names.add(fn["name"])
    return names


def validate_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise Invalid(
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                param="tool_choice",
            )
        if choice == "required" and not names:
            raise Invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                "'tools' are specified.",
                param="tool_choice",
            )
        return
    name = ((choice or {}).get("function") or {}).get("name")
    if not isinstance(choice, dict) or choice.get("type") != "function" or name not in names:
        raise Invalid(
            f"Invalid value for 'tool_choice': no function named '{name}' was "
            "specified in the 'tools' parameter.",
            param="tool_choice",
        )


def validate_messages(messages: Any, need_reasoning: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    pending: dict[str, int] = {}  # unanswered call ids of the last assistant tool-call turn
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ROLES:
            raise Invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
            )
        if role == "tool":
            answer_tool(msg, i, pending)
            continue
        if pending:
            raise_unanswered(pending)
        if role == "assistant":
            pending = check_assistant(msg, i, need_reasoning)
        elif role == "user":
            check_user(msg, i)
        elif not isinstance(msg.get("content"), str | list):
            raise Invalid(
                f"Invalid type for 'messages[{i}].content': expected a string or array.",
                param=f"messages[{i}].content",
            )
    if pending:
        raise_unanswered(pending)


def raise_unanswered(pending: dict[str, int]) -> None:
    ids = ", ".join(pending)
    raise Invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages "
        "responding to each 'tool_call_id'. The following tool_call_ids did not have "
        f"response messages: {ids}",
        param="messages",
    )


def answer_tool(msg: JSON, i: int, pending: dict[str, int]) -> None:
    call_id = msg.get("tool_call_id")
    if call_id not in pending:
        raise Invalid(
            "Invalid parameter: messages with role 'tool' must be a response to a "
            "preceeding message with 'tool_calls'.",
            param=f"messages[{i}].role",
        )
    del pending[call_id]
    content = msg.get("content")
    if not isinstance(content, str | list):
        raise Invalid(
            f"Invalid type for 'messages[{i}].content': expected a string or array.",
            param=f"messages[{i}].content",
        )


def check_assistant(msg: JSON, i: int, need_reasoning: bool) -> dict[str, int]:
    calls = msg.get("tool_calls")
    content = msg.get("content")
    if not calls:
        if content is None or content == []:
            raise Invalid(
                f"Invalid value for 'messages[{i}].content': expected a string, got null.",
                param=f"messages[{i}].content",
            )
        return {}
    if content == "":
        raise Invalid(
            f"Invalid 'messages[{i}].content': string too short. Expected a string "
            "with minimum length 1, or null when 'tool_calls' is set.",
            param=f"messages[{i}].content",
        )
    if need_reasoning and not msg.get("reasoning_content"):
        raise Invalid(
            f"Missing reasoning_content field in the assistant message at message index {i}.",
            param=f"messages[{i}].reasoning_content",
        )
    pending: dict[str, int] = {}
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type") != "function" or not call.get("id"):
            raise Invalid(f"Missing required parameter: '{where}.function'.", param=where)
        if not isinstance(fn.get("arguments"), str):
            raise Invalid(
                f"Invalid type for '{where}.function.arguments': expected a string.",
                param=f"{where}.function.arguments",
            )
        if not TOOL_NAME.match(str(fn.get("name"))):
            raise Invalid(
                f"Invalid '{where}.function.name': string does not match pattern.",
                param=f"{where}.function.name",
            )
        pending[call["id"]] = j
    return pending


def check_user(msg: JSON, i: int) -> None:
    content = msg.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise Invalid(
            f"Invalid 'messages[{i}].content': expected a string or a non-empty array.",
            param=f"messages[{i}].content",
        )
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in USER_PARTS:
            raise Invalid(
                f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                "'input_audio', 'refusal', 'audio', and 'file'.",
                param=f"messages[{i}].content[{j}].type",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise Invalid(f"Missing required parameter: 'messages[{i}].content[{j}].text'.")
        if kind == "image_url" and not str((part.get("image_url") or {}).get("url", "")):
            raise Invalid(
                f"Missing required parameter: 'messages[{i}].content[{j}].image_url.url'."
            )


# -- rendering


def usage_json(res: Resolved) -> JSON:
    return {
        "prompt_tokens": res.input_tokens,
        "completion_tokens": res.output_tokens,
        "total_tokens": res.input_tokens + res.output_tokens,
        "prompt_tokens_details": {"cached_tokens": res.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": res.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def render_json(res: Resolved, usage: bool = True) -> JSON:
    message: JSON = {"role": "assistant", "content": res.text, "refusal": None, "annotations": []}
    if res.reasoning:
        message["reasoning_content"] = res.reasoning
    if res.calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in res.calls
        ]
    out: JSON = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": now(),
        "model": res.model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": STOP_REASONS.get(res.stop, "stop"),
            }
        ],
    }
    if usage:
        out["usage"] = usage_json(res)
    return out


def render_chunks(res: Resolved, include_usage: bool) -> list[JSON]:
    cid, created = new_id("chatcmpl-"), now()

    def chunk(delta: JSON, finish: str | None = None) -> JSON:
        out: JSON = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": res.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"reasoning_content": p}) for p in pieces(res.reasoning or "") if p]
    chunks += [chunk({"content": p}) for p in pieces(res.text or "") if p]
    for index, (call_id, name, args) in enumerate(res.calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
            for p in pieces(args, 10)
            if p
        ]
    chunks.append(chunk({}, STOP_REASONS.get(res.stop, "stop")))
    if include_usage:
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": res.model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": usage_json(res),
            }
        )
    return chunks
