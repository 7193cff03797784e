"""A client's Messages request read straight from its bytes into typed structs: the fast path
for a body the reuse table does not help with (a conversation nobody sent before).

Why: decoding a 51 KB Claude Code body with orjson builds ~1,100 Python values (0.69 M
instructions), and parsing them looks at each again (0.36 M). msgspec decodes the same bytes
into the structs below, checking types as it goes, and leaves each tool's schema undecoded
(a third of the decoding: hundreds of small objects that an OpenAI upstream only gets back
as the same JSON): the schema travels as the client's text (`JSONText`), written out as it
came by renderers that only copy it and decoded by the others (`schema_of`).

Promises:
- Only the usual shape is taken: the fields below and no others, text, tool_use,
  tool_result and thinking blocks, function tools. Anything else (an unknown field or block
  type, a wrong type anywhere, a value the general parser refuses, a body too deep for
  msgspec) gives None, and the caller reads the body the general way (`loads_object`, then
  `request.parse_request`), which then says what is wrong. So no client is answered
  differently: for a body taken here, the general path gives the same Request but for the
  schemas, which it decodes (tests/protocols/test_anthropic_typed_request.py holds the two
  together over recorded bodies and random edits).
- Where msgspec reads a value differently from orjson, the value is not taken as msgspec
  read it: integers past orjson's 64 bits (it makes floats of them, which the general
  parser refuses where it wants integers) give None; the fields kept undecoded here
  (`metadata`, `thinking`, `tool_choice`, `output_config`, `context_management`: small) are
  decoded with orjson, as the whole body would have been; a schema's UTF-8 is checked, as
  msgspec checks it only in the values it decodes.
- A schema is the client's bytes. What changes for an OpenAI upstream: nothing for a
  client that writes compact JSON (Claude Code's JSON.stringify, orjson); otherwise the
  schema keeps the client's whitespace, escapes and number spellings (`1E5`, `1.50`) where
  the general path writes orjson's, the same JSON values. Two things the general path
  refuses are copied: numbers past a double's range (`1e400`; integers past 64 bits reach
  the upstream exact instead of rounded) and schemas nested past orjson's 254 levels (up to
  msgspec's ~1,000): the upstream judges those, as it judges any schema.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from msgspec import Raw, Struct

from babelgate.canonical import (
    GatewayError,
    JSONText,
    Message,
    Part,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from babelgate.canonical.carry import ID_MARK, split_id

from ..reuse import Reuse
from .carrier import reasoning_from_thinking
from .request import _ROLES, _reasoning, _response_format, _tool_choice

_ABSENT = Raw(b"")  # a field left undecoded that the body does not have
# What orjson reads as an integer (past these it makes a float, which the general parser
# refuses where it wants an integer); msgspec reads any integer.
_LOWEST = -(2**63)
_HIGHEST = 2**64 - 1
Cache = dict[str, str]  # cache_control: {"type": "ephemeral", "ttl": "1h"}


class _Text(Struct, tag="text", tag_field="type", forbid_unknown_fields=True, gc=False):
    text: str
    cache_control: Cache | None = None


class _ToolUse(Struct, tag="tool_use", tag_field="type", forbid_unknown_fields=True, gc=False):
    id: str
    name: str
    input: Raw = _ABSENT  # decoded with orjson: the call's arguments, as the general path's
    cache_control: Cache | None = None


class _ToolResult(Struct, tag="tool_result", tag_field="type", forbid_unknown_fields=True,
                  gc=False):
    tool_use_id: str
    content: str | list[_Text] | None = None
    is_error: bool | None = None
    cache_control: Cache | None = None


class _Thinking(Struct, tag="thinking", tag_field="type", forbid_unknown_fields=True, gc=False):
    thinking: str
    signature: str | None = None


_Block = _Text | _ToolUse | _ToolResult | _Thinking


class _Message(Struct, forbid_unknown_fields=True, gc=False):
    role: str
    content: str | list[_Block]


class _Tool(Struct, forbid_unknown_fields=True, gc=False):
    name: str
    input_schema: Raw
    description: str | None = None
    type: str | None = None
    strict: bool | None = None
    cache_control: Cache | None = None


class _Body(Struct, forbid_unknown_fields=True, gc=False):
    model: str
    messages: list[_Message]
    max_tokens: int | None = None
    system: str | list[_Text] | None = None
    tools: list[_Tool] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Raw = _ABSENT
    thinking: Raw = _ABSENT
    tool_choice: Raw = _ABSENT
    output_config: Raw = _ABSENT
    context_management: Raw = _ABSENT  # nothing to translate; read only to be checked


_decode = msgspec.json.Decoder(_Body).decode


class _Unusual(Exception):
    """The body is not of the usual shape, or the general parser would refuse it."""


def read_request(raw: bytes, reuse: Reuse) -> Request | None:
    """The request in `raw` when it has the usual shape; None otherwise (read it the general
    way, which also says what is wrong). Nothing here is shared, so `reuse` keeps nothing."""
    try:
        return _request(_decode(raw))
    except (msgspec.DecodeError, orjson.JSONDecodeError, UnicodeDecodeError, RecursionError,
            GatewayError, _Unusual):  # (msgspec.ValidationError is a DecodeError)
        return None


def _request(body: _Body) -> Request:
    max_tokens, top_k = body.max_tokens, body.top_k
    if not body.model or max_tokens is None or not 1 <= max_tokens <= _HIGHEST:
        raise _Unusual
    if top_k is not None and not _LOWEST <= top_k <= _HIGHEST:
        raise _Unusual
    metadata = _loads(body.metadata)
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    thinking, output_config = _loads(body.thinking), _loads(body.output_config)
    tool_choice, parallel_tool_calls = _tool_choice(_loads(body.tool_choice))
    _loads(body.context_management)
    names: dict[str, str] = {}  # call id -> tool name, of the calls read so far
    messages = tuple([_message(item, names) for item in body.messages])
    stop = body.stop_sequences
    return Request(
        model=body.model,
        messages=messages,
        system=_texts(body.system),
        max_tokens=max_tokens,
        stream=body.stream is True,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=top_k,
        stop=tuple(stop) if stop is not None else (),
        tools=_tools(body.tools) if body.tools else (),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        reasoning=_reasoning(thinking, output_config),
        user=user if isinstance(user, str) else None,
        response_format=_response_format(output_config),
    )


def _loads(value: Raw) -> Any:
    return orjson.loads(memoryview(value)) if value else None


def _texts(value: str | list[_Text] | None) -> tuple[Text, ...]:
    """The system prompt, or a tool result's content: absent, one string (empty: nothing)
    or a list of text blocks."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),) if value else ()
    return tuple([Text(block.text, block.cache_control is not None) for block in value])


def _message(item: _Message, names: dict[str, str]) -> Message:
    """One message; each tool result named after the call it answers, as
    `request._name_tool_results` names them (Gemini needs the name), from `names`."""
    role = _ROLES.get(item.role)
    if role is None:
        raise _Unusual
    content = item.content
    if isinstance(content, str):
        return Message(role, (Text(content),))
    parts: list[Part] = []
    for block in content:
        if isinstance(block, _Text):
            parts.append(Text(block.text, block.cache_control is not None))
        elif isinstance(block, _ToolUse):
            arguments = orjson.loads(memoryview(block.input)) if block.input else {}
            if type(arguments) is not dict:
                raise _Unusual
            # (split_id only for an id carrying our mark: a call less per block)
            call_id, metadata = (block.id, None) if ID_MARK not in block.id else split_id(
                block.id)
            names[call_id] = block.name
            parts.append(ToolCall(call_id, block.name, arguments, "function", metadata,
                                  block.cache_control is not None))
        elif isinstance(block, _ToolResult):
            call_id = block.tool_use_id
            if ID_MARK in call_id:
                call_id = split_id(call_id)[0]
            parts.append(ToolResult(call_id, _texts(block.content), block.is_error is True,
                                    names.get(call_id), "function",
                                    block.cache_control is not None))
        else:
            parts.append(reasoning_from_thinking(block.thinking, block.signature))
    return Message(role, tuple(parts))


def _tools(tools: list[_Tool]) -> tuple[Tool, ...]:
    """Function tools, each schema as the client's text (valid UTF-8, an object)."""
    found: list[Tool] = []
    for tool in tools:
        kind = tool.type
        if kind is not None and kind != "custom":  # a server tool: the general path's
            raise _Unusual
        text = bytes(tool.input_schema)  # its own bytes: a Raw keeps the whole body alive
        if not text.startswith(b"{"):
            raise _Unusual  # the general parser refuses a schema that is not an object
        if not text.isascii():
            text.decode()  # a UnicodeDecodeError: read_request gives None
        found.append(Tool(tool.name, tool.description, JSONText(text), "function", tool.strict,
                          None, None, None, tool.cache_control is not None))
    return tuple(found)
