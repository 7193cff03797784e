"""Canonical Request -> a Messages request body for an Anthropic-compatible upstream.

Promises (each one is a 400 some upstream returned when it was broken):
- Only fields the Messages API defines, and optional ones only when set.
- `max_tokens` always present and clamped to `quirks.max_tokens`.
- Thinking never sent unless it is Anthropic's own and signed (foreign or unsigned reasoning
  is dropped); never a `cache_control` on it.
- At most 4 cache breakpoints, the last ones in prompt order (tools, system, messages).
- Leading system messages go to the top-level `system`; a later system message becomes user
  text in place. Consecutive same-role turns are merged, then repaired (history.py).
- No empty text blocks; tool names match `^[a-zA-Z0-9_-]{1,128}$` (see tool_names.py).
- Thinking budget in [1024, max_tokens); a forced tool choice becomes `auto` while thinking.
"""

from __future__ import annotations

import re
from typing import Any

from babelgate.canonical import (
    Document,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from babelgate.canonical.ids import safe_call_id
from babelgate.reuse import derive

from ..base import Quirks
from .carrier import is_native
from .history import declare_history_tools, repair_history, unsigned_tool_turn
from .tool_names import upstream_name

JSON = dict[str, Any]
DEFAULT_MAX_TOKENS = 8192
MIN_THINKING_BUDGET = 1024
MAX_CACHE_BREAKPOINTS = 4
_EPHEMERAL = {"type": "ephemeral"}
# A thinking budget for clients that only say how hard to think.
_BUDGET_BY_EFFORT = {
    "minimal": 1024,
    "low": 4096,
    "medium": 10240,
    "high": 20480,
    "xhigh": 32768,
    "max": 65536,
}
_DEFAULT_BUDGET = _BUDGET_BY_EFFORT["medium"]
# output_config.effort accepts these (sent only alongside adaptive thinking, the newer
# models that understand both).
_ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_SERVER_TOOL = re.compile(
    r"^(web_search|web_fetch|code_execution|bash|text_editor|memory|computer"
    r"|tool_search_tool_bm25|tool_search_tool_regex)_\d{8}$"
)
# Other protocols' unversioned web search maps onto Anthropic's server tool.
_WEB_SEARCH_ALIASES = frozenset({"web_search", "web_search_preview", "google_search"})
_WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.DOTALL)
_EMPTY_OBJECT = {"type": "object", "properties": {}}
_CUSTOM_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}


def render_request(request: Request, quirks: Quirks) -> JSON:
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    if quirks.max_tokens is not None:
        max_tokens = min(max_tokens, quirks.max_tokens)
    body: JSON = {"model": request.model, "max_tokens": max_tokens}
    leading, rest = _split_leading_system(request.messages)
    system = _system_blocks([*request.system, *leading])
    if system:
        body["system"] = system
    body["messages"] = _messages(rest, quirks)
    thinking_on = _render_thinking(request.reasoning, max_tokens, body)
    _render_tools(request, thinking_on, body)
    _sampling(request, thinking_on, body)
    if request.stream:
        body["stream"] = True
    if not _limit_cache_breakpoints(body) and quirks.auto_cache:
        _auto_cache(body)
    return body


# Generation-only fields `/v1/messages/count_tokens` does not define.
_NOT_COUNTED = (
    "max_tokens",
    "stream",
    "metadata",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
)


def render_count_tokens(request: Request, quirks: Quirks) -> JSON:
    """The `/v1/messages/count_tokens` body: the same prompt, without generation settings."""
    body = render_request(request, quirks)
    for name in _NOT_COUNTED:
        body.pop(name, None)
    return body


# ---------------------------------------------------------------- system and messages


def _split_leading_system(messages: list[Message]) -> tuple[list[Text], list[Message]]:
    leading: list[Text] = []
    start = 0
    while start < len(messages) and messages[start].role == "system":
        leading.extend(p for p in messages[start].parts if isinstance(p, Text))
        start += 1
    return leading, messages[start:]


def _system_blocks(parts: list[Text]) -> list[JSON]:
    return [_text(p) for p in parts if p.text.strip()]


def _messages(messages: list[Message], quirks: Quirks) -> list[JSON]:
    out: list[JSON] = []
    for message in messages:
        # A mid-conversation system message keeps its place as user text.
        role = "user" if message.role == "system" else message.role
        blocks = [b for b in (_block(p, quirks) for p in message.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return repair_history(out)


def _block(part: Part, quirks: Quirks) -> JSON | None:
    if isinstance(part, Text):
        return _text(part) if part.text.strip() else None
    if isinstance(part, Reasoning):
        return _reasoning(part)
    if isinstance(part, ToolCall):
        return _tool_use(part)
    if isinstance(part, ToolResult):
        return _tool_result(part, quirks)
    if isinstance(part, Image):
        return _image(part, quirks)
    return _document(part, quirks)


def _cache(block: JSON, cached: bool) -> JSON:
    if cached:
        block["cache_control"] = dict(_EPHEMERAL)
    return block


def _text(part: Text) -> JSON:
    return _cache({"type": "text", "text": part.text}, part.cache)


def _reasoning(part: Reasoning) -> JSON | None:
    """Only Anthropic's own, signed (or redacted) thinking goes back; never cached."""
    if not is_native(part):
        return None
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.redacted}
    if not part.signature:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _tool_use(part: ToolCall) -> JSON:
    block = {
        "type": "tool_use",
        "id": safe_call_id(part.id),
        "name": upstream_name(part.name),
        "input": part.arguments,
    }
    return _cache(block, part.cache)


def _tool_result(part: ToolResult, quirks: Quirks) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": safe_call_id(part.call_id)}
    content = [b for b in (_block(p, quirks) for p in part.content) if b is not None]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return _cache(block, part.cache)


def _image(part: Image, quirks: Quirks) -> JSON | None:
    if not quirks.images:
        return {"type": "text", "text": "[image omitted: this model does not accept images]"}
    source: JSON
    data, media_type = part.data, part.media_type
    if data is None and part.url:
        match = _DATA_URL.match(part.url)
        if match:
            media_type, data = match.group(1), match.group(2)
    if data is not None:
        media_type = media_type or "image/png"
        if media_type not in _IMAGE_TYPES:
            return {"type": "text", "text": f"[{media_type} image omitted: not supported]"}
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif part.url:
        source = {"type": "url", "url": part.url}
    else:
        return None
    return _cache({"type": "image", "source": source}, part.cache)


def _document(part: Document, quirks: Quirks) -> JSON | None:
    if part.text is not None and (not quirks.documents or part.data is None):
        source: JSON = {"type": "text", "media_type": "text/plain", "data": part.text}
    elif not quirks.documents:
        name = part.title or part.filename or "document"
        return {"type": "text", "text": f"[{name} omitted: this model does not accept files]"}
    elif part.data is not None:
        media = part.media_type or "application/pdf"
        source = {"type": "base64", "media_type": media, "data": part.data}
    elif part.url:
        source = {"type": "url", "url": part.url}
    else:
        return None
    block: JSON = {"type": "document", "source": source}
    if part.title or part.filename:
        block["title"] = part.title or part.filename
    if part.context:
        block["context"] = part.context
    return _cache(block, part.cache)


# ---------------------------------------------------------------- tools


def _render_tools(request: Request, thinking_on: bool, body: JSON) -> None:
    # Rendered once per distinct tool list (babelgate.reuse): agents resend theirs every turn.
    # The cache-mark passes below may change a tool carrying a mark and the last tool, so
    # those are this request's own copies; the others stay shared.
    shared = derive(request.tools, _TOOLS, _tool_blocks, request.tools)
    if not shared:
        declare_history_tools(body)
        return
    tools = [dict(t) if "cache_control" in t else t for t in shared]
    tools[-1] = dict(tools[-1])
    body["tools"] = tools
    choice = _tool_choice(request.tool_choice, request.parallel_tool_calls, thinking_on)
    if choice is not None:
        body["tool_choice"] = choice


_TOOLS = "anthropic.tools-out"  # what babelgate.reuse keeps per shared tool list


def _tool_blocks(tools: list[Tool]) -> list[JSON]:
    return [t for t in (_tool(tool) for tool in tools) if t is not None]


def _tool(tool: Tool) -> JSON | None:
    if tool.kind == "hosted":
        return _hosted_tool(tool)
    block: JSON = {"name": upstream_name(tool.name)}
    if tool.description:
        block["description"] = tool.description
    if tool.kind == "custom":
        # Free-form input travels as one string argument; the decoders mark these calls
        # `custom` again.
        block["input_schema"] = _custom_schema(tool)
    else:
        block["input_schema"] = _object_schema(tool.parameters)
    return _cache(block, tool.cache)


def _custom_schema(tool: Tool) -> JSON:
    """The one-string schema, with the tool's grammar (Codex's apply_patch Lark grammar) in
    the argument's description: without it the model does not know the input's syntax."""
    fmt: JSON = tool.format or {}
    nested = fmt.get("grammar")  # Chat nests the grammar; Responses keeps it flat
    grammar: JSON = nested if isinstance(nested, dict) else fmt
    definition = grammar.get("definition")
    if not isinstance(definition, str) or not definition:
        return _CUSTOM_TOOL_SCHEMA
    syntax = grammar.get("syntax") or "grammar"
    text = f"The raw input for this tool. It must follow this {syntax} grammar:\n{definition}"
    return {**_CUSTOM_TOOL_SCHEMA, "properties": {"input": {"type": "string", "description": text}}}


def _object_schema(schema: JSON) -> JSON:
    """Anthropic requires `input_schema.type == "object"`; OpenAI clients may send `{}`."""
    if schema.get("type") == "object":
        return schema
    return {**schema, "type": "object"} if "type" not in schema else _EMPTY_OBJECT


def _hosted_tool(tool: Tool) -> JSON | None:
    hosted = tool.hosted_type or ""
    if _SERVER_TOOL.match(hosted):
        return _cache({**(tool.config or {}), "type": hosted, "name": tool.name}, tool.cache)
    if hosted in _WEB_SEARCH_ALIASES:
        if (tool.config or {}).get("external_web_access") is False:
            return None  # Codex's cached-only search: Anthropic's search is live, so none
        # The other protocol's settings have a different shape; the defaults are safe.
        return _cache(dict(_WEB_SEARCH_TOOL), tool.cache)
    return None


def _tool_choice(
    choice: ToolChoice | None, parallel: bool | None, thinking_on: bool
) -> JSON | None:
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice is not None else "auto"
    if thinking_on and mode in ("required", "tool"):
        mode = "auto"  # Anthropic rejects forced tool use while thinking
    block: JSON
    if mode == "required":
        block = {"type": "any"}
    elif mode == "tool" and choice is not None and choice.name:
        block = {"type": "tool", "name": upstream_name(choice.name)}
    elif mode == "none":
        return {"type": "none"}
    else:
        block = {"type": "auto"}
    if parallel is False:
        block["disable_parallel_tool_use"] = True
    return block


# ---------------------------------------------------------------- thinking and sampling


def _render_thinking(config: ReasoningConfig | None, max_tokens: int, body: JSON) -> bool:
    """Set `thinking` (and adaptive effort); True when thinking is on."""
    thinking = _thinking(config, max_tokens)
    if thinking is None:
        return False
    on: bool = thinking["type"] != "disabled"
    if on and unsigned_tool_turn(body["messages"]):
        return False
    body["thinking"] = thinking
    _effort(config, thinking, body)
    return on


def _thinking(config: ReasoningConfig | None, max_tokens: int) -> JSON | None:
    if config is None:
        return None
    if config.enabled is False or config.effort == "none":
        return {"type": "disabled"}
    if config.adaptive:
        return {"type": "adaptive"}
    if config.enabled is None and config.effort is None:
        return None
    budget = config.budget_tokens
    if budget is None:
        # A budget we chose leaves at least half of max_tokens (which counts thinking) for
        # the answer; a budget the client chose is its own call.
        budget = _BUDGET_BY_EFFORT.get(config.effort or "", _DEFAULT_BUDGET)
        budget = min(budget, max_tokens // 2)
    # Anthropic needs 1024 <= budget < max_tokens; with a tiny max_tokens, no thinking.
    if max_tokens <= MIN_THINKING_BUDGET:
        return None
    budget = min(max(budget, MIN_THINKING_BUDGET), max_tokens - 1)
    return {"type": "enabled", "budget_tokens": budget}


def _effort(config: ReasoningConfig | None, thinking: JSON, body: JSON) -> None:
    if config is None or thinking["type"] != "adaptive":
        return
    if config.effort in _ANTHROPIC_EFFORTS:
        body["output_config"] = {"effort": config.effort}


def _sampling(request: Request, thinking_on: bool, body: JSON) -> None:
    # With thinking on Anthropic rejects temperature and top_k changes and top_p below 0.95;
    # dropping them beats a 400.
    if request.temperature is not None and not thinking_on:
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None:
        body["top_p"] = max(request.top_p, 0.95) if thinking_on else request.top_p
    if request.top_k is not None and not thinking_on:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.user:
        body["metadata"] = {"user_id": request.user}


def _limit_cache_breakpoints(body: JSON) -> int:
    """Keep the last MAX_CACHE_BREAKPOINTS cache_control marks in prompt order; return how
    many the client asked for."""
    marked = [b for b in body.get("tools", ()) if "cache_control" in b]
    marked += [b for b in body.get("system", ()) if "cache_control" in b]
    for message in body["messages"]:
        for block in message["content"]:
            if "cache_control" in block:
                marked.append(block)
            if block["type"] == "tool_result":
                marked += [b for b in block.get("content", ()) if "cache_control" in b]
    for block in marked[:-MAX_CACHE_BREAKPOINTS]:
        del block["cache_control"]
    return len(marked)


_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def _auto_cache(body: JSON) -> None:
    """Clients of other protocols (Codex, Chat tools) cannot mark cache breakpoints, and
    Anthropic caches nothing unmarked: mark the end of the tools, of the system prompt and of
    the newest turn, so each turn reads the previous turns' prefix from the cache (a tenth of
    the input price) instead of paying for it again. Only requests with tools or a system
    prompt (agents: long prompts that repeat) are marked; Anthropic ignores marks on prompts
    below its minimum cacheable length anyway."""
    if not body.get("tools") and not body.get("system"):
        return
    candidates: list[JSON] = []
    if body.get("tools"):
        candidates.append(body["tools"][-1])
    if body.get("system"):
        candidates.append(body["system"][-1])
    messages = body["messages"]
    if messages and messages[-1]["content"]:
        candidates.append(messages[-1]["content"][-1])
    for block in candidates:
        if block.get("type") not in _UNCACHEABLE:
            block["cache_control"] = dict(_EPHEMERAL)
