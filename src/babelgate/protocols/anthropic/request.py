"""A client's Messages request body -> canonical Request (client-facing).

Promises:
- Anything structurally wrong raises `canonical.invalid` naming the field the way Anthropic
  does (`messages.3.content.0.type`), so the client sees a useful 400.
- Fields we cannot represent but that do not change the conversation (`context_management`,
  `service_tier`, `container`, betas) are ignored; passthrough to an Anthropic upstream keeps
  the original bytes anyway.
- Our envelopes in thinking signatures and tool ids are opened here (see carrier.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from msgspec.structs import replace

from babelgate.canonical import (
    Document,
    Effort,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    Request,
    Role,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    invalid,
)
from babelgate.canonical.carry import split_id

from ..fields import boolean
from ..reuse import Reuse
from .carrier import ANTHROPIC, reasoning_from_thinking

JSON = dict[str, Any]
_NO_INPUT: JSON = {}  # a tool_use without `input` (never handed out: a new {} is)
_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system"}
_EFFORTS: dict[str, Effort] = {effort: effort for effort in get_args(Effort)}
_TOOL_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}
# Blocks Anthropic defines that have no canonical form: results of server-side tools the
# upstream ran itself, and bookkeeping blocks. Dropping them loses nothing a different
# upstream could use.
_SKIPPED_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
        "tool_reference",
    }
)


def parse_request(body: JSON, reuse: Reuse) -> Request:
    return _parse(body, reuse, require_max_tokens=True)


def parse_count_tokens_request(body: JSON, reuse: Reuse) -> Request:
    """`/v1/messages/count_tokens`: the same body without `max_tokens`."""
    return _parse(body, reuse, require_max_tokens=False)


def _parse(body: JSON, reuse: Reuse, *, require_max_tokens: bool) -> Request:
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: field required", param="model")
    system = body.get("system")
    tools = body.get("tools")
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    tool_choice, parallel_tool_calls = _tool_choice(body.get("tool_choice"))
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return Request(
        model=model,
        messages=_messages(body.get("messages"), reuse),
        system=reuse.derive(_system, system),
        max_tokens=_max_tokens(body.get("max_tokens"), required=require_max_tokens),
        # A truthy non-boolean would be read as false here and as true by an Anthropic
        # upstream the body passes through to: refused.
        stream=boolean(body, "stream") is True,
        temperature=temperature,
        top_p=top_p,
        top_k=_top_k(body.get("top_k")),
        stop=_stop_sequences(body.get("stop_sequences")),
        tools=reuse.derive(_tools, tools),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        reasoning=_reasoning(body.get("thinking"), body.get("output_config")),
        user=user if isinstance(user, str) else None,
        response_format=_response_format(body.get("output_config")),
    )


# ---------------------------------------------------------------- top-level fields


def _max_tokens(value: object, *, required: bool) -> int | None:
    if value is None and not required:
        return None
    if value is None:
        raise invalid("max_tokens: field required", param="max_tokens")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid("max_tokens: must be a positive integer", param="max_tokens")
    return value


def _number(body: JSON, name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(f"{name}: must be a number", param=name)
    return float(value)


def _top_k(value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise invalid("top_k: must be an integer", param="top_k")
    return value


def _stop_sequences(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise invalid("stop_sequences: must be a list of strings", param="stop_sequences")
    return tuple(value)


def _system(value: object) -> tuple[Text, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),) if value else ()
    if not isinstance(value, list):
        raise invalid("system: must be a string or a list of text blocks", param="system")
    parts: list[Text] = []
    for i, block in enumerate(value):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"{where}.type: system blocks must be text", param=f"{where}.type")
        parts.append(_text(block, where))
    return tuple(parts)


# ---------------------------------------------------------------- messages


def _messages(value: object, reuse: Reuse) -> tuple[Message, ...]:
    if value is None:
        raise invalid("messages: field required", param="messages")
    if not isinstance(value, list):
        raise invalid("messages: must be a list", param="messages")
    # A message resent unchanged from an earlier turn is parsed once (protocols/reuse.py).
    messages = [reuse.derive(_message, item, i) for i, item in enumerate(value)]
    _name_tool_results(messages, reuse)
    return tuple(messages)


# The blocks every turn of an agent carries (text, tool_use, tool_result, thinking) are parsed
# by the shortcuts below, which build the same values as the general functions (`_block` and
# the parsers it calls) for the shapes they take, and hand every other shape, error included,
# to those; a differential test holds the two together (tests/protocols/
# test_anthropic_request_fast.py). Why: a conversation nobody sent before is parsed whole on
# every request, and the general path's path strings (`messages.3.content.0`), made for
# errors, and calls per block were a third of its parsing.


def _message(item: object, i: int) -> Message:
    if type(item) is dict:
        named = item.get("role")
        role = _ROLES.get(named) if type(named) is str else None
        if role is not None:
            content = item.get("content")
            if type(content) is str:
                return Message(role, (Text(content),))
            if type(content) is list:
                return Message(role, _blocks(content, i))
    return _message_general(item, i)


def _message_general(item: object, i: int) -> Message:
    where = f"messages.{i}"
    if not isinstance(item, dict):
        raise invalid(f"{where}: must be an object", param=where)
    named = item.get("role")
    role = _ROLES.get(named) if isinstance(named, str) else None  # a list is no name
    if role is None:
        raise invalid(f"{where}.role: must be user, assistant or system", param=f"{where}.role")
    return Message(role=role, parts=_content(item.get("content"), f"{where}.content"))


def _blocks(value: list[Any], i: int) -> tuple[Part, ...]:
    """A message's list of content blocks (message `i`): `_content`'s result."""
    parts: list[Part] = []
    for j, block in enumerate(value):
        part = _common_block(block) if type(block) is dict else None
        if part is None:
            part = _block(block, f"messages.{i}.content.{j}")
            if part is None:
                continue
        parts.append(part)
    return tuple(parts)


def _common_block(block: JSON) -> Part | None:
    """A text, tool_use, tool_result or thinking block in its usual shape; None for anything
    else (the general path then parses it, or says what is wrong)."""
    kind = block.get("type")
    if kind == "text":
        return _common_text(block)
    if kind == "tool_use":
        call_id, name = block.get("id"), block.get("name")
        arguments = block.get("input", _NO_INPUT)
        if type(call_id) is not str or type(name) is not str or type(arguments) is not dict:
            return None
        if arguments is _NO_INPUT:
            arguments = {}
        call_id, metadata = split_id(call_id)
        return ToolCall(call_id, name, arguments, "function", metadata,
                        type(block.get("cache_control")) is dict)
    if kind == "tool_result":
        call_id = block.get("tool_use_id")
        content = _common_result_content(block.get("content"))
        if type(call_id) is not str or content is None:
            return None
        return ToolResult(split_id(call_id)[0], content, block.get("is_error") is True, None,
                          "function", type(block.get("cache_control")) is dict)
    if kind == "thinking":
        text, signature = block.get("thinking"), block.get("signature")
        if type(text) is not str:
            return None
        return reasoning_from_thinking(text, signature if type(signature) is str else None)
    return None


def _common_text(block: JSON) -> Text | None:
    text = block.get("text")
    if type(text) is not str:
        return None
    citations = block.get("citations")
    return Text(text, type(block.get("cache_control")) is dict,
                tuple(citations) if type(citations) is list and citations else None)


def _common_result_content(value: object) -> tuple[Text, ...] | None:
    """A tool result's content when it is absent, a string or text blocks; None otherwise."""
    if value is None:
        return ()
    if type(value) is str:
        return (Text(value),) if value else ()
    if type(value) is not list:
        return None
    content: list[Text] = []
    for item in value:
        if type(item) is not dict or item.get("type") != "text":
            return None
        text = _common_text(item)
        if text is None:
            return None
        content.append(text)
    return tuple(content)


def _name_tool_results(messages: list[Message], reuse: Reuse) -> None:
    """Give each tool result the name of the call it answers (Gemini needs it; Anthropic's
    tool_result only carries the id). Parsed messages may be shared with other requests, so
    a message with results to name is replaced by a named copy, itself kept per message and
    names (the next turn finds it again)."""
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        found: list[str | None] | None = None
        parts = message.parts
        for j, part in enumerate(parts):
            if type(part) is ToolCall:
                names[part.id] = part.name
            elif type(part) is ToolResult and part.name is None:
                name = names.get(part.call_id)
                if name is not None:
                    found = found or [None] * len(parts)
                    found[j] = name
        if found is not None:
            messages[i] = reuse.derive(_named, message, tuple(found))


def _named(message: Message, names: tuple[str | None, ...]) -> Message:
    parts = tuple([
        replace(part, name=name) if name and isinstance(part, ToolResult) else part
        for part, name in zip(message.parts, names, strict=True)
    ])
    return Message(role=message.role, parts=parts)


def _content(value: object, where: str) -> tuple[Part, ...]:
    if isinstance(value, str):
        return (Text(value),)
    if not isinstance(value, list):
        raise invalid(f"{where}: must be a string or a list of blocks", param=where)
    parts: list[Part] = []
    for j, block in enumerate(value):
        part = _block(block, f"{where}.{j}")
        if part is not None:
            parts.append(part)
    return tuple(parts)


def _block(block: object, where: str) -> Part | None:
    if not isinstance(block, dict):
        raise invalid(f"{where}: must be an object", param=where)
    kind = block.get("type")
    if isinstance(kind, str):  # a list or an object there cannot be looked up by name
        parser = _BLOCK_PARSERS.get(kind)
        if parser is not None:
            return parser(block, where)
        if kind in _SKIPPED_BLOCKS:
            return None
    raise invalid(f"{where}.type: unsupported content block type {kind!r}", param=f"{where}.type")


def _cached(block: JSON) -> bool:
    return isinstance(block.get("cache_control"), dict)


def _require_str(block: JSON, field: str, where: str) -> str:
    value = block.get(field)
    if not isinstance(value, str):
        raise invalid(f"{where}.{field}: must be a string", param=f"{where}.{field}")
    return value


def _text(block: JSON, where: str) -> Text:
    citations = block.get("citations")
    return Text(
        text=_require_str(block, "text", where),
        cache=_cached(block),
        citations=tuple(citations) if isinstance(citations, list) and citations else None,
    )


def _source(block: JSON, where: str) -> JSON:
    source = block.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise invalid(f"{where}.source: must be an object with a type", param=f"{where}.source")
    return source


def _image(block: JSON, where: str) -> Image:
    source = _source(block, where)
    here = f"{where}.source"
    if source["type"] == "base64":
        return Image(
            media_type=_require_str(source, "media_type", here),
            data=_require_str(source, "data", here),
            cache=_cached(block),
        )
    if source["type"] == "url":
        return Image(url=_require_str(source, "url", here), cache=_cached(block))
    raise invalid(f"{here}.type: unsupported image source", param=f"{here}.type")


def _document(block: JSON, where: str) -> Document:
    source = _source(block, where)
    here = f"{where}.source"
    title, context = block.get("title"), block.get("context")
    media_type = data = url = text = None
    kind = source["type"]
    if kind == "base64":
        media_type = _require_str(source, "media_type", here)
        data = _require_str(source, "data", here)
    elif kind == "url":
        url = _require_str(source, "url", here)
    elif kind == "text":
        media_type = "text/plain"
        text = _require_str(source, "data", here)
    elif kind == "content":
        text = _content_source_text(source.get("content"), here)
    else:
        raise invalid(f"{here}.type: unsupported document source", param=f"{here}.type")
    return Document(
        media_type=media_type,
        data=data,
        url=url,
        text=text,
        title=title if isinstance(title, str) else None,
        context=context if isinstance(context, str) else None,
        cache=_cached(block),
    )


def _content_source_text(content: object, where: str) -> str:
    """A `content` document source (a string or text blocks) -> its text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where}.content: must be a string or a list", param=f"{where}.content")
    texts = [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return "\n\n".join(texts)


def _tool_use(block: JSON, where: str) -> ToolCall:
    call_id, metadata = split_id(_require_str(block, "id", where))
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise invalid(f"{where}.input: must be an object", param=f"{where}.input")
    return ToolCall(
        id=call_id,
        name=_require_str(block, "name", where),
        arguments=arguments,
        provider_metadata=metadata,
        cache=_cached(block),
    )


def _tool_result(block: JSON, where: str) -> ToolResult:
    call_id, _ = split_id(_require_str(block, "tool_use_id", where))
    return ToolResult(
        call_id=call_id,
        content=_tool_result_content(block.get("content"), f"{where}.content"),
        is_error=block.get("is_error") is True,
        cache=_cached(block),
    )


def _tool_result_content(value: object, where: str) -> tuple[Text | Image | Document, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),) if value else ()
    if not isinstance(value, list):
        raise invalid(f"{where}: must be a string or a list of blocks", param=where)
    content: list[Text | Image | Document] = []
    for k, item in enumerate(value):
        part = _block(item, f"{where}.{k}")
        if isinstance(part, Text | Image | Document):
            content.append(part)
        elif part is not None:
            raise invalid(f"{where}.{k}.type: not allowed in a tool result", f"{where}.{k}.type")
    return tuple(content)


def _search_result(block: JSON, where: str) -> Text:
    """A search_result block has no canonical form; keep what the model would read."""
    title = block.get("title") if isinstance(block.get("title"), str) else ""
    body = _content_source_text(block.get("content", []), where)
    return Text(f"{title}\n\n{body}" if title else body, cache=_cached(block))


def _thinking(block: JSON, where: str) -> Reasoning:
    signature = block.get("signature")
    return reasoning_from_thinking(
        _require_str(block, "thinking", where),
        signature if isinstance(signature, str) else None,
    )


def _redacted_thinking(block: JSON, where: str) -> Reasoning:
    return Reasoning(redacted=_require_str(block, "data", where), origin=ANTHROPIC)


_BLOCK_PARSERS: dict[str, Callable[[JSON, str], Part]] = {
    "text": _text,
    "image": _image,
    "document": _document,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted_thinking,
    "search_result": _search_result,
}


# ---------------------------------------------------------------- tools


def _tools(value: object) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("tools: must be a list", param="tools")
    tools: list[Tool] = []
    for i, item in enumerate(value):
        # The common case, on every request for every tool: kept to plain lookups, with the
        # path for errors (`tools.3`) made only when the general path below needs it.
        tool = _common_tool(item) if type(item) is dict else None
        tools.append(tool if tool is not None else _tool(item, f"tools.{i}"))
    return tuple(tools)


def _common_tool(item: JSON) -> Tool | None:
    """A function tool in its usual shape, as `_tool` makes it; None for anything else."""
    kind = item.get("type")
    if kind is not None and kind != "custom":
        return None
    name, schema = item.get("name"), item.get("input_schema")
    if type(name) is not str or type(schema) is not dict:
        return None
    description, strict = item.get("description"), item.get("strict")
    return Tool(name, description if type(description) is str else None, schema, "function",
                strict if type(strict) is bool else None, None, None, None,
                type(item.get("cache_control")) is dict)


def _tool(item: object, where: str) -> Tool:
    if not isinstance(item, dict):
        raise invalid(f"{where}: must be an object", param=where)
    kind = item.get("type")
    if kind is None or kind == "custom":
        name = item.get("name")
        schema = item.get("input_schema")
        if type(name) is not str or type(schema) is not dict:
            _require_str(item, "name", where)
            raise invalid(f"{where}.input_schema: field required", param=f"{where}.input_schema")
        description = item.get("description")
        strict = item.get("strict")
        return Tool(
            name=name,
            description=description if type(description) is str else None,
            parameters=schema,
            strict=strict if type(strict) is bool else None,
            cache=type(item.get("cache_control")) is dict,
        )
    if not isinstance(kind, str):
        raise invalid(f"{where}.type: must be a string", param=f"{where}.type")
    # A server tool (web_search_20250305, bash_20250124, ...): kept whole for an upstream
    # that knows it, dropped by codecs whose upstream does not.
    config = {k: v for k, v in item.items() if k not in ("type", "name", "cache_control")}
    hosted_name = item.get("name")
    return Tool(
        name=hosted_name if isinstance(hosted_name, str) else kind,
        kind="hosted",
        hosted_type=kind,
        config=config,
        cache=_cached(item),
    )


def _tool_choice(value: object) -> tuple[ToolChoice | None, bool | None]:
    """The tool choice, and False when parallel tool calls are turned off."""
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(kind, str) or kind not in _TOOL_CHOICE_MODES:
        raise invalid("tool_choice.type: must be auto, any, tool or none", "tool_choice.type")
    mode = _TOOL_CHOICE_MODES[kind]
    name = None
    if mode == "tool":
        name = _require_str(value, "name", "tool_choice")
    parallel = False if value.get("disable_parallel_tool_use") is True else None
    return ToolChoice(mode=mode, name=name), parallel


# ---------------------------------------------------------------- thinking and output


def _reasoning(thinking: object, output_config: object) -> ReasoningConfig | None:
    named = output_config.get("effort") if isinstance(output_config, dict) else None
    effort = _EFFORTS.get(named) if isinstance(named, str) else None  # a list is no name
    if not isinstance(thinking, dict):
        return ReasoningConfig(effort=effort) if effort else None
    kind = thinking.get("type")
    if kind == "disabled":
        return ReasoningConfig(enabled=False, effort=effort)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise invalid("thinking.budget_tokens: field required", "thinking.budget_tokens")
        return ReasoningConfig(enabled=True, budget_tokens=budget, effort=effort)
    if not isinstance(kind, str):
        raise invalid("thinking.type: field required", param="thinking.type")
    # adaptive, and newer modes we do not know yet: thinking on, the model decides how much.
    return ReasoningConfig(enabled=True, adaptive=True, effort=effort)


def _response_format(output_config: object) -> JSON | None:
    """Structured outputs (`output_config.format`) -> the OpenAI-style json_schema format
    the canonical Request carries."""
    if not isinstance(output_config, dict):
        return None
    fmt = output_config.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid("output_config.format.schema: field required", "output_config.format.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


__all__ = ["parse_count_tokens_request", "parse_request"]
