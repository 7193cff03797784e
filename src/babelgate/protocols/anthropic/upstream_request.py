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

Blocks and the tool list are rendered once per piece a session resends (protocols/reuse.py);
see "system and messages" below for what stays per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import is_
from typing import Any

import orjson

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
    schema_of,
)
from babelgate.canonical.ids import safe_call_id

from ..base import Quirks
from ..reuse import Reuse
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


def render_request(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    if quirks.max_tokens is not None:
        max_tokens = min(max_tokens, quirks.max_tokens)
    body: JSON = {"model": request.model, "max_tokens": max_tokens}
    leading, rest = _split_leading_system(request.messages)
    system = _system_blocks([*request.system, *leading], reuse)
    if system:
        body["system"] = system
    body["messages"], kinds = _messages(rest, quirks, reuse)
    thinking_on = _render_thinking(request.reasoning, max_tokens, body)
    tools = _render_tools(request, thinking_on, body, reuse)
    _sampling(request, thinking_on, body)
    if request.stream:
        body["stream"] = True
    if not _limit_cache_breakpoints(body, _Marked in kinds, reuse) and quirks.auto_cache:
        _auto_cache(body, reuse)
    _serialise_shared(body, tools, _Long in kinds, reuse)
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


def render_count_tokens(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    """The `/v1/messages/count_tokens` body: the same prompt, without generation settings."""
    body = render_request(request, quirks, reuse)
    for name in _NOT_COUNTED:
        body.pop(name, None)
    return body


# ---------------------------------------------------------------- system and messages
#
# A block depends on its part and on two quirks only, so it is rendered once per part a
# session resends (protocols/reuse.py) and then shared between requests: nothing changes a
# block after it is rendered. Turns and their lists of blocks are each request's own (merged,
# repaired, marked per request); a pass that would change a block puts a new one in its place.


def _split_leading_system(
    messages: tuple[Message, ...],
) -> tuple[list[Text], tuple[Message, ...]]:
    leading: list[Text] = []
    start = 0
    while start < len(messages) and messages[start].role == "system":
        leading.extend(p for p in messages[start].parts if isinstance(p, Text))
        start += 1
    return leading, messages[start:]


def _system_blocks(parts: list[Text], reuse: Reuse) -> list[JSON]:
    derive = reuse.derive
    return [b for p in parts if (b := derive(_text, p, None)) is not None]


def _messages(
    messages: tuple[Message, ...], quirks: Quirks, reuse: Reuse
) -> tuple[list[JSON], set[type]]:
    """The turns, and the types of their blocks (see _Marked and _Long)."""
    render, derive = _RENDER, reuse.derive
    out: list[JSON] = []
    every: list[JSON] = []
    last: JSON | None = None
    for message in messages:
        # A mid-conversation system message keeps its place as user text.
        role = "user" if message.role == "system" else message.role
        blocks: list[JSON] = []
        for p in message.parts:  # (a comprehension costs more for a message's few parts)
            b = derive(render[type(p)], p, quirks)
            if b is not None:
                blocks.append(b)
        if not blocks:
            continue
        every += blocks
        if last is not None and last["role"] == role:
            last["content"] += blocks
        else:
            last = {"role": role, "content": blocks}
            out.append(last)
    # Repairs add no marks and no long blocks: the types found before them still tell.
    return repair_history(out), set(map(type, every))


class _Marked(dict[str, Any]):
    """A block the client marked as a cache breakpoint (or a tool result with a marked block
    in its content): the cache-mark passes look for marks only where one of these is."""

    __slots__ = ()


class _Long(dict[str, Any]):
    """An unmarked block whose payload is `_LONG` characters or more: shared, it goes out
    pre-serialised (`_serialise_shared`). Not worth it for a short block: orjson writes one
    about as fast as the gateway would look its JSON up."""

    __slots__ = ()


_LONG = 2048

def _block(part: Part, quirks: Quirks) -> JSON | None:
    return _RENDER[type(part)](part, quirks)


def _cache(block: JSON, cached: bool, size: int = 0) -> JSON:
    """`block` with the client's cache breakpoint if it marked one, typed for the passes."""
    if cached:
        block["cache_control"] = dict(_EPHEMERAL)
        return _Marked(block)
    return _Long(block) if size >= _LONG else block


def _text(part: Text, quirks: Quirks | None) -> JSON | None:
    text = part.text
    if not text or text.isspace():  # as `not text.strip()`, without copying a long text
        return None
    block = {"type": "text", "text": text}
    if part.cache or len(text) >= _LONG:
        return _cache(block, part.cache, len(text))
    return block  # the usual case, without a call


def _reasoning(part: Reasoning, quirks: Quirks) -> JSON | None:
    """Only Anthropic's own, signed (or redacted) thinking goes back; never cached."""
    if not is_native(part):
        return None
    if part.redacted:
        block = {"type": "redacted_thinking", "data": part.redacted}
        return _Long(block) if len(part.redacted) >= _LONG else block
    if not part.signature:
        return None
    block = {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return _Long(block) if len(part.text) + len(part.signature) >= _LONG else block


def _tool_use(part: ToolCall, quirks: Quirks) -> JSON:
    block = {
        "type": "tool_use",
        "id": safe_call_id(part.id),
        "name": upstream_name(part.name),
        "input": part.arguments,
    }
    return _cache(block, True) if part.cache else block


def _tool_result(part: ToolResult, quirks: Quirks) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": safe_call_id(part.call_id)}
    content = [b for b in (_block(p, quirks) for p in part.content) if b is not None]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    if part.cache:
        return _cache(block, True)
    kinds = set(map(type, content))
    if _Marked in kinds:
        return _Marked(block)  # a mark in its content
    return _Long(block) if _Long in kinds else block  # long when a text in it is


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
    return _cache({"type": "image", "source": source}, part.cache, len(data or ""))


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
    return _cache(block, part.cache, len(source.get("data", "")))


# Each part type's renderer (called through Reuse.derive, so kept per part and Quirks).
_RENDER: dict[type, Callable[[Any, Quirks], JSON | None]] = {
    Text: _text,
    Reasoning: _reasoning,
    ToolCall: _tool_use,
    ToolResult: _tool_result,
    Image: _image,
    Document: _document,
}


# ---------------------------------------------------------------- tools


def _render_tools(
    request: Request, thinking_on: bool, body: JSON, reuse: Reuse
) -> list[JSON] | None:
    """Set `tools` and `tool_choice`; return the shared rendering of the request's tools."""
    # Rendered once per distinct tool list (protocols/reuse.py): agents resend theirs every
    # turn. The list is this request's own; the cache-mark passes replace a tool they change.
    shared = reuse.derive(_tool_blocks, request.tools)
    if not shared:
        declare_history_tools(body)
        return None
    body["tools"] = list(shared)
    choice = _tool_choice(request.tool_choice, request.parallel_tool_calls, thinking_on)
    if choice is not None:
        body["tool_choice"] = choice
    return shared



def _tool_blocks(tools: tuple[Tool, ...]) -> list[JSON]:
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
        block["input_schema"] = _object_schema(schema_of(tool))
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
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}


def _limit_cache_breakpoints(body: JSON, in_messages: bool, reuse: Reuse) -> int:
    """Keep the last MAX_CACHE_BREAKPOINTS cache_control marks in prompt order; return how
    many the client asked for. `in_messages`: whether a message block may carry one."""
    # Where each mark is: (the list holding the block, its index, the index of the marked
    # block in its `content` or -1 for the block itself).
    marked: list[tuple[list[JSON], int, int]] = []
    for blocks in (body.get("tools"), body.get("system")):
        if blocks and _Marked in map(type, blocks):
            marked += [(blocks, i, -1) for i, b in enumerate(blocks) if "cache_control" in b]
    if in_messages:
        for message in body["messages"]:
            content = message["content"]
            for i, block in enumerate(content):
                if "cache_control" in block:
                    marked.append((content, i, -1))
                if block["type"] == "tool_result":
                    inner = block.get("content", ())
                    marked += [(content, i, j) for j, b in enumerate(inner) if "cache_control" in b]
    for blocks, i, j in marked[:-MAX_CACHE_BREAKPOINTS]:
        _unmark(blocks, i, j, reuse)
    return len(marked)


def _unmark(blocks: list[JSON], i: int, j: int, reuse: Reuse) -> None:
    """Drop the mark of `blocks[i]` (j < 0) or of the j-th block of its content, in a new
    block: the marked one may be shared with other requests."""
    block = blocks[i]
    if j < 0:
        blocks[i] = reuse.derive(_without_mark, block)
    else:
        inner = list(block["content"])
        inner[j] = _without_mark(inner[j])
        blocks[i] = {**block, "content": inner}


def _without_mark(block: JSON) -> JSON:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _with_mark(block: JSON) -> JSON:
    return {**block, "cache_control": dict(_EPHEMERAL)}


_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def _auto_cache(body: JSON, reuse: Reuse) -> None:
    """Clients of other protocols (Codex, Chat tools) cannot mark cache breakpoints, and
    Anthropic caches nothing unmarked: mark the end of the tools, of the system prompt and of
    the newest turn, so each turn reads the previous turns' prefix from the cache (a tenth of
    the input price) instead of paying for it again. Only requests with tools or a system
    prompt (agents: long prompts that repeat) are marked; Anthropic ignores marks on prompts
    below its minimum cacheable length anyway. Called only when nothing is marked yet."""
    tools, system = body.get("tools"), body.get("system")
    if not tools and not system:
        return
    if tools:
        tools[-1] = _with_mark(tools[-1])  # never shared on its own: see _serialised_tools
    if system:
        # The same block ends the system prompt on every turn: its marked copy is shared too.
        system[-1] = reuse.derive(_with_mark, system[-1])
    messages = body["messages"]
    if messages and messages[-1]["content"]:
        blocks = messages[-1]["content"]
        if blocks[-1]["type"] not in _UNCACHEABLE:
            blocks[-1] = reuse.derive(_with_mark, blocks[-1])


# ---------------------------------------------------------------- serialising


def _serialise_shared(
    body: JSON, tools: list[JSON] | None, long_blocks: bool, reuse: Reuse
) -> None:
    """The system prompt, long message blocks (`long_blocks`: whether there are any) and the
    tools go out pre-serialised when they are shared with other requests (protocols/reuse.py):
    the passes above are done, and nothing reads them before the body is sent."""
    system = body.get("system")
    serialised = reuse.serialised
    if system:
        body["system"] = [serialised(b) for b in system]
    if long_blocks:
        for message in body["messages"]:
            content = message["content"]
            if _Long in map(type, content):
                message["content"] = [serialised(b) if type(b) is _Long else b for b in content]
    if tools is not None:
        body["tools"] = _serialised_tools(body["tools"], tools, reuse)


def _serialised_tools(out: list[JSON], shared: list[JSON], reuse: Reuse) -> Any:
    """`out`, the request's copy of the shared tool list, as JSON kept for that list when
    the passes changed none of its tools, or none but the last (auto-cache marks it)."""
    whole = reuse.serialised(shared)
    if not isinstance(whole, orjson.Fragment):
        return out  # a list this request made: nothing is kept for it
    last = len(out) - 1
    if not all(map(is_, out[:last], shared)):
        return out
    if out[last] is shared[last]:
        return whole
    before = reuse.derive(_json_before_last, shared)
    return orjson.Fragment(b"".join((before, orjson.dumps(out[last]), b"]")))


def _json_before_last(tools: list[JSON]) -> bytes:
    """`[` and the JSON of every tool but the last, each followed by a comma."""
    return b"".join([b"[", *(orjson.dumps(tool) + b"," for tool in tools[:-1])])
