"""A strict fake of the Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`).

Enforces: `x-api-key` (or Bearer) and `anthropic-version` (a key that is a subscription's
OAuth token, `sk-ant-oat...`, only as Bearer with the `oauth-2025-04-20` beta, as Anthropic
does); required and allow-listed top-level fields; non-empty text; thinking blocks only with
a signature this fake issued (bound to the thinking text) and without cache_control; tool_use
ids `^[a-zA-Z0-9_-]+$`, unique, each answered by a tool_result in the next user message;
thinking budget rules; at most 4 cache breakpoints.
Streams follow the real event order: message_start (with input usage), ping, one closed
content block at a time, message_delta (cumulative usage), message_stop.
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
    estimate_tokens,
    new_id,
    pieces,
    resolve,
    sign,
    verify,
)

COMMON_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "thinking",
        "tools",
        "tool_choice",
        "cache_control",
        "output_config",
        "context_management",
        "mcp_servers",
        "speed",
        "betas",
    }
)
MESSAGE_FIELDS = COMMON_FIELDS | {
    "max_tokens",
    "stop_sequences",
    "metadata",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "service_tier",
    "container",
    "inference_geo",
    "output_format",
}
COUNT_FIELDS = COMMON_FIELDS

TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
USER_BLOCKS = frozenset({"text", "image", "document", "tool_result", "search_result"})
ASSISTANT_BLOCKS = frozenset(
    {
        "text",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "server_tool_use",
        "web_search_tool_result",
    }
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# Claude Code 2.1 sends `role: "system"` messages inside `messages` only with this beta, and
# retries without them (and without the beta) when the API refuses; see tests/agents/README.md.
SYSTEM_MESSAGES_BETA = "per-turn-control-2026-07-01"
# A Claude subscription's OAuth access token, and the beta a request made with it must carry.
OAUTH_TOKEN_PREFIX = "sk-ant-oat"
OAUTH_BETA = "oauth-2025-04-20"
STOP_REASONS = {
    "end": "end_turn",
    "tool": "tool_use",
    "max_tokens": "max_tokens",
    "refusal": "refusal",
}


class FakeAnthropic(FakeUpstream):
    protocol = "anthropic"
    call_prefix = "toolu_"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)

    def auth_error(self, request: web.Request) -> str | None:
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        if self.api_key.startswith(OAUTH_TOKEN_PREFIX):
            return oauth_error(self.api_key, key, bearer, betas_of(request))
        if key is None and not bearer:
            return "x-api-key header is required"
        if key != self.api_key and bearer != f"Bearer {self.api_key}":
            return "invalid x-api-key"
        return None

    def error_body(self, status: int, message: str, param: str | None) -> JSON:
        return {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": new_id("req_"),
        }

    def frame(self, event: JSON) -> bytes:
        return (
            b"event: "
            + str(event.get("type", "message")).encode()
            + b"\ndata: "
            + orjson.dumps(event)
            + b"\n\n"
        )

    def view(self, body: JSON) -> Conversation:
        return view(body)

    async def admit_anthropic(self, request: web.Request) -> tuple[JSON, web.Response | None]:
        rec, refusal = await self.admit(request)
        if refusal is None and not request.headers.get("anthropic-version"):
            refusal = self.error(400, "anthropic-version: header is required")
        return rec.body, refusal

    async def models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        model = {
            "type": "model",
            "id": "claude-test",
            "display_name": "Claude Test",
            "created_at": "2025-01-01T00:00:00Z",
        }
        return web.json_response(
            {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
        )

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self.admit_anthropic(request)
        if refusal is not None:
            return refusal
        try:
            check_fields(body, COUNT_FIELDS, ("model", "messages"))
            validate_request(body, counting=True, betas=betas_of(request))
        except Invalid as exc:
            return self.error(exc.status, exc.message)
        return web.json_response({"input_tokens": estimate_tokens(body)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self.admit_anthropic(request)
        if refusal is not None:
            return refusal
        try:
            check_fields(body, MESSAGE_FIELDS, ("model", "max_tokens", "messages"))
            validate_request(body, counting=False, betas=betas_of(request))
        except Invalid as exc:
            return self.error(exc.status, exc.message)
        reply = self.next_reply(self.view(body))
        res = resolve(reply, body, "toolu_", str(body["model"]))
        omit = (body.get("thinking") or {}).get("display") == "omitted"
        return await self.answer(
            request,
            reply,
            bool(body.get("stream")),
            lambda: render_json(res, omit),
            lambda: render_events(res, omit),
        )


# -- validation


def betas_of(request: web.Request) -> frozenset[str]:
    header = request.headers.get("anthropic-beta", "")
    return frozenset(b.strip() for b in header.split(",") if b.strip())


def oauth_error(token: str, key: str | None, bearer: str, betas: frozenset[str]) -> str | None:
    """What Anthropic answers a request made with a subscription's OAuth token: taken only as
    `Authorization: Bearer` with the OAuth beta, and never as (or beside) an x-api-key."""
    if key is not None:
        return "invalid x-api-key"
    if not bearer:
        return "x-api-key header is required"
    if bearer != f"Bearer {token}":
        return "Invalid bearer token"
    if OAUTH_BETA not in betas:
        return "OAuth authentication is currently not supported."
    return None


def check_fields(body: JSON, allowed: frozenset[str], required: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    for key in required:
        if key not in body:
            raise Invalid(f"{key}: Field required")


def thinking_mode(body: JSON) -> str:
    thinking = body.get("thinking")
    return str(thinking.get("type")) if isinstance(thinking, dict) else "disabled"


def validate_request(body: JSON, counting: bool, betas: frozenset[str]) -> None:
    if not counting:
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise Invalid("max_tokens: Input should be greater than or equal to 1")
        validate_thinking(body, max_tokens)
    validate_system(body.get("system"))
    validate_tools(body.get("tools"))
    messages = body["messages"]
    if not isinstance(messages, list):
        raise Invalid("messages: Input should be a valid list")
    validate_messages(messages, thinking_mode(body) in ("enabled", "adaptive"), betas)
    breakpoints = count_cache_control(body)
    if breakpoints > 4:
        raise Invalid(
            f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        )


def validate_thinking(body: JSON, max_tokens: int) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise Invalid(
            "thinking: Input tag does not match any of the expected tags: "
            "'enabled', 'disabled', 'adaptive'"
        )
    if kind == "disabled":
        return
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= max_tokens:
            raise Invalid(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                "consult our documentation at https://docs.claude.com/en/docs/build-"
                "with-claude/extended-thinking#max-tokens-and-context-window-size"
            )
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if body.get("temperature") not in (None, 1, 1.0):
        raise Invalid(
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode."
        )


def validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Invalid("system: Input should be a valid list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Invalid(f"system.{i}: Input tag does not match the expected tag 'text'")
        check_text(block, f"system.{i}")


def validate_tools(tools: Any) -> None:
    if tools is None:
        return
    names = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type", "custom")
        if kind not in ("custom", None) and re.search(r"_\d{8}$", str(kind)):
            continue  # a versioned server tool (web_search_20250305, ...)
        name = str(tool.get("name"))
        if not TOOL_NAME.match(name):
            raise Invalid(
                f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise Invalid("tools: Tool names must be unique.")
        names.add(name)


def check_text(block: JSON, where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise Invalid(f"{where}.text: Field required")
    if not text:
        raise Invalid(f"{where}: text content blocks must be non-empty")
    if not text.strip():
        raise Invalid(f"{where}: text content blocks must contain non-whitespace text")


def validate_messages(messages: list[Any], thinking_on: bool, betas: frozenset[str]) -> None:
    pending: list[str] = []  # tool_use ids the next user message must answer
    seen_ids: set[str] = set()
    roles = (
        ("user", "assistant", "system") if SYSTEM_MESSAGES_BETA in betas else ("user", "assistant")
    )
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in roles:
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = as_blocks(
            msg.get("content"), i, last=i == len(messages) - 1 and role == "assistant"
        )
        if role == "system":
            check_system_message(blocks, i, pending)
        elif role == "user":
            check_user_blocks(blocks, i, pending)
            pending = []
            continue
        if pending:
            raise_unanswered(i - 1, pending)
        pending = check_assistant_blocks(blocks, i, seen_ids)
    if pending:
        raise_unanswered(len(messages) - 1, pending)
    if thinking_on:
        check_thinking_first(messages)


def check_system_message(blocks: list[JSON], i: int, pending: list[str]) -> None:
    if pending:
        raise_unanswered(i - 1, pending)
    for j, block in enumerate(blocks):
        if block.get("type") != "text":
            raise Invalid(f"messages.{i}.content.{j}: system messages may only contain text")
        check_text(block, f"messages.{i}.content.{j}")


def raise_unanswered(i: int, ids: list[str]) -> None:
    raise Invalid(
        f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
        f"immediately after: {', '.join(ids)}. Each `tool_use` block must have a "
        "corresponding `tool_result` block in the next message."
    )


def as_blocks(content: Any, i: int, last: bool) -> list[JSON]:
    if isinstance(content, str):
        if not content and not last:
            raise Invalid(
                f"messages.{i}: all messages must have non-empty content except for "
                "the optional final assistant message"
            )
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list) or (not content and not last):
        raise Invalid(
            f"messages.{i}: all messages must have non-empty content except for the "
            "optional final assistant message"
        )
    return content


def check_user_blocks(blocks: list[JSON], i: int, pending: list[str]) -> None:
    answered = set()
    for j, block in enumerate(blocks):
        kind = block.get("type")
        where = f"messages.{i}.content.{j}"
        if kind not in USER_BLOCKS:
            raise Invalid(
                f"{where}: Input tag '{kind}' found using 'type' does not match any of "
                "the expected tags for a user message"
            )
        if kind == "text":
            check_text(block, where)
        elif kind == "image":
            check_image(block, where)
        elif kind == "tool_result":
            tid = block.get("tool_use_id")
            if tid not in pending:
                raise Invalid(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{tid}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
            answered.add(tid)
            check_tool_result(block, where)
    missing = [tid for tid in pending if tid not in answered]
    if missing:
        raise_unanswered(i - 1, missing)


def check_image(block: JSON, where: str) -> None:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        if source.get("media_type") not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
            raise Invalid(
                f"{where}.source.base64.media_type: Input should be 'image/jpeg', "
                "'image/png', 'image/gif' or 'image/webp'"
            )
        if not source.get("data"):
            raise Invalid(f"{where}.source.base64.data: Field required")
    elif source.get("type") != "url" or not source.get("url"):
        raise Invalid(
            f"{where}.source: Input tag does not match any of the expected tags: "
            "'base64', 'url', 'file'"
        )


def check_tool_result(block: JSON, where: str) -> None:
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    for k, part in enumerate(content):
        if part.get("type") == "text":
            check_text(part, f"{where}.content.{k}")
        elif part.get("type") == "image":
            check_image(part, f"{where}.content.{k}")


def check_assistant_blocks(blocks: list[JSON], i: int, seen_ids: set[str]) -> list[str]:
    pending = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        where = f"messages.{i}.content.{j}"
        if kind not in ASSISTANT_BLOCKS:
            raise Invalid(
                f"{where}: Input tag '{kind}' found using 'type' does not match any of "
                "the expected tags for an assistant message"
            )
        if kind == "text":
            check_text(block, where)
        elif kind == "thinking":
            if "cache_control" in block:
                raise Invalid(f"{where}.thinking.cache_control: Extra inputs are not permitted")
            if not verify(str(block.get("thinking")), block.get("signature")):
                raise Invalid(f"{where}: Invalid `signature` in `thinking` block")
        elif kind == "redacted_thinking" and not block.get("data"):
            raise Invalid(f"{where}.redacted_thinking.data: Field required")
        elif kind == "tool_use":
            pending.append(check_tool_use(block, where, seen_ids))
    return pending


def check_tool_use(block: JSON, where: str, seen_ids: set[str]) -> str:
    tid = str(block.get("id"))
    if not TOOL_ID.match(tid):
        raise Invalid(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    if tid in seen_ids:
        raise Invalid(f"{where}: `tool_use` ids must be unique")
    seen_ids.add(tid)
    if not isinstance(block.get("input"), dict):
        raise Invalid(f"{where}.tool_use.input: Input should be a valid dictionary")
    if not block.get("name"):
        raise Invalid(f"{where}.tool_use.name: Field required")
    return tid


def check_thinking_first(messages: list[Any]) -> None:
    """With thinking on, the assistant turn of an unfinished tool loop (the last assistant
    message, followed only by tool results) must start with its thinking block."""
    if len(messages) < 2 or messages[-1].get("role") != "user":
        return
    last_user = messages[-1].get("content")
    if (
        not isinstance(last_user, list)
        or not last_user
        or any(b.get("type") != "tool_result" for b in last_user)
    ):
        return
    assistant = messages[-2]
    blocks = assistant.get("content")
    if (
        isinstance(blocks, list)
        and blocks
        and blocks[0].get("type") not in ("thinking", "redacted_thinking")
    ):
        raise Invalid(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{blocks[0].get('type')}`. When `thinking` "
            "is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
        )


def count_cache_control(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if isinstance(value.get("cache_control"), dict) else 0
        return own + sum(count_cache_control(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(count_cache_control(v) for v in value)
    return 0


# -- what the brain sees


def block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def view(body: JSON) -> Conversation:
    conv = Conversation(wants_reasoning=thinking_mode(body) in ("enabled", "adaptive"))
    for tool in body.get("tools") or []:
        if "name" in tool:
            conv.tools[tool["name"]] = tool.get("input_schema") or {}
    users = [m for m in body["messages"] if m.get("role") == "user"]
    if not users:
        return conv
    last = users[-1].get("content")
    if isinstance(last, list):
        conv.tool_results = [
            block_text(b.get("content")) for b in last if b.get("type") == "tool_result"
        ]
    texts = [
        block_text(m.get("content"))
        if isinstance(m.get("content"), str)
        else "".join(b.get("text", "") for b in m["content"] if b.get("type") == "text")
        for m in users
    ]
    conv.last_user_text = next((t for t in reversed(texts) if "RUN<<" in t), texts[-1])
    return conv


# -- rendering


def usage_json(res: Resolved, output_tokens: int) -> JSON:
    return {
        "input_tokens": max(0, res.input_tokens - res.cached_tokens - res.cache_creation_tokens),
        "cache_creation_input_tokens": res.cache_creation_tokens,
        "cache_read_input_tokens": res.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": res.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def content_blocks(res: Resolved, omit: bool) -> list[JSON]:
    blocks: list[JSON] = []
    if res.reasoning:
        # With `display: "omitted"` the API returns the block with empty text; the signature
        # then vouches for the empty text that comes back.
        shown = "" if omit else res.reasoning
        blocks.append({"type": "thinking", "thinking": shown, "signature": sign(shown)})
    if res.text:
        blocks.append({"type": "text", "text": res.text})
    for cid, name, args in res.calls:
        try:
            tool_input = orjson.loads(args)
        except orjson.JSONDecodeError:
            tool_input = {}
        blocks.append({"type": "tool_use", "id": cid, "name": name, "input": tool_input})
    return blocks


def render_json(res: Resolved, omit: bool) -> JSON:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": res.model,
        "content": content_blocks(res, omit),
        "stop_reason": STOP_REASONS.get(res.stop, "end_turn"),
        "stop_sequence": None,
        "usage": usage_json(res, res.output_tokens),
    }


def block_events(index: int, res: Resolved, block: JSON) -> list[JSON]:
    kind = block["type"]
    start: JSON
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"]) if p]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        args = next(a for cid, _, a in res.calls if cid == block["id"])
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(args, 10)]
    return (
        [{"type": "content_block_start", "index": index, "content_block": start}]
        + [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        + [{"type": "content_block_stop", "index": index}]
    )


def render_events(res: Resolved, omit: bool) -> list[JSON]:
    message = render_json(res, omit)
    start = dict(
        message, content=[], stop_reason=None, stop_sequence=None, usage=usage_json(res, 1)
    )
    events: list[JSON] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        events += block_events(index, res, block)
    final_usage = usage_json(res, res.output_tokens)
    del final_usage["cache_creation"], final_usage["service_tier"]
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": final_usage,
        }
    )
    events.append({"type": "message_stop"})
    return events
