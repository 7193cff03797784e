"""The canonical request, response and content model: plain values, no vendor format.

Rules this module keeps:
- Every wire protocol is parsed into these types and rendered from them; no codec looks at
  another codec's dicts.
- Provider data that must survive a round trip through a client (thinking signatures, Gemini
  thought signatures, DeepSeek reasoning text) travels in explicit fields (`signature`,
  `provider_metadata`), never in side channels.
- Nothing here does I/O or knows about HTTP.
- Every value is immutable: msgspec structs with `frozen=True`, their sequences tuples, so a
  value can be shared between requests (babelgate.protocols.reuse keeps the parts of a
  conversation an agent resends) and assigning to one is a type error for mypy and an
  AttributeError at run time. An edit builds a new value (`msgspec.structs.replace`).
  JSON payloads (tool arguments and schemas, citations, provider metadata, response formats)
  stay dicts as decoded: freezing them deeply would cost a copy of every tool schema per
  request; nothing in babelgate changes one after it is built, and renderers copy before
  they adapt one. A tool's schema may instead be the client's own JSON text, undecoded
  (`JSONText`, from a typed reader such as protocols/anthropic/typed_request.py): renderers
  that only copy it write its bytes, the others read it with `schema_of`.
- Why msgspec structs, not frozen dataclasses: one is built in C in ~0.15 µs, where a frozen
  dataclass's __init__ assigns each field through object.__setattr__ (~1 µs for a tool call),
  and a conversation is made of thousands of them. `gc=False`: they hold only strings,
  numbers, JSON and other canonical values, never a cycle, so the collector need not track
  them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from .errors import invalid

Role = Literal["system", "user", "assistant"]
StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "context_window_exceeded",
    "error",
]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
JSON = dict[str, Any]


# ---------------------------------------------------------------- content parts


class Text(msgspec.Struct, frozen=True, gc=False):
    text: str
    cache: bool = False  # the client marked a cache breakpoint here (cache_control)
    citations: tuple[JSON, ...] | None = None


class Image(msgspec.Struct, frozen=True, gc=False):
    """An image, either inline base64 (`data` + `media_type`) or by `url`."""

    media_type: str | None = None
    data: str | None = None  # base64, without a data: prefix
    url: str | None = None
    detail: str | None = None  # OpenAI's low/high/auto hint
    cache: bool = False


class Document(msgspec.Struct, frozen=True, gc=False):
    """A document: base64 (`data`, e.g. a PDF), a `url`, or plain `text`."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    text: str | None = None
    title: str | None = None
    context: str | None = None
    filename: str | None = None
    cache: bool = False


class Reasoning(msgspec.Struct, frozen=True, gc=False):
    """Model reasoning ("thinking").

    `signature` is the opaque proof an upstream needs back unchanged; `origin` names the wire
    protocol family that produced it (`anthropic`, `gemini`, `openai`, `openai-responses`), so a
    codec can drop or convert reasoning that is foreign to its upstream. `redacted` holds
    Anthropic's opaque `redacted_thinking.data`, or Responses' `encrypted_content` when the
    reasoning text itself is hidden.
    """

    text: str = ""
    signature: str | None = None
    origin: str | None = None
    redacted: str | None = None
    summary: tuple[str, ...] | None = None  # Responses API reasoning summaries, when separate
    provider_metadata: JSON | None = None


class ToolCall(msgspec.Struct, frozen=True, gc=False):
    """A call the model made. `arguments` is parsed JSON (always an object).

    `kind` is `function` for JSON-argument tools and `custom` for free-form tools (Codex's
    `apply_patch`), whose raw input is `arguments["input"]`.
    `provider_metadata` carries round-trip data such as Gemini's `thought_signature`.
    """

    id: str
    name: str
    arguments: JSON = {}  # msgspec gives each value its own empty dict
    kind: Literal["function", "custom"] = "function"
    provider_metadata: JSON | None = None
    cache: bool = False


class ToolResult(msgspec.Struct, frozen=True, gc=False):
    """The client's answer to a ToolCall. `content` may hold text, images and documents."""

    call_id: str
    content: tuple[Text | Image | Document, ...] = ()
    is_error: bool = False
    name: str | None = None  # filled by codecs that know it; Gemini needs it
    kind: Literal["function", "custom"] = "function"
    cache: bool = False


Part = Text | Image | Document | Reasoning | ToolCall | ToolResult


class Message(msgspec.Struct, frozen=True, gc=False):
    """One conversation turn. Tool results live in `user` messages (as in Anthropic's
    model); codecs for protocols with a separate tool role split them out. A `system`
    message inside the conversation is a mid-conversation instruction."""

    role: Role
    parts: tuple[Part, ...]


# ---------------------------------------------------------------- tools


class JSONText(msgspec.Struct, frozen=True, gc=False):
    """A JSON object kept as the bytes the client sent: a tool schema that a typed reader
    did not decode, because the common upstream (OpenAI's) only copies it. Its syntax was
    checked as it was read (msgspec) and its UTF-8 too; numbers are as the client wrote
    them. `value` decodes it, as decoding the whole body would have."""

    text: bytes

    def value(self) -> JSON:
        try:
            found = orjson.loads(self.text)
        except orjson.JSONDecodeError as exc:  # a number past a double's range, say
            raise invalid(f"request body is not valid JSON: {exc}") from None
        if not isinstance(found, dict):  # readers keep only objects; a guard for mypy
            raise invalid("a tool's schema must be a JSON object")
        return found



class Tool(msgspec.Struct, frozen=True, gc=False):
    """A tool the model may call.

    `kind`: `function` (JSON Schema `parameters`), `custom` (free-form text input; `format`
    holds the grammar or other format description), or `hosted` (a provider-side tool such
    as web search; `hosted_type` names it and `config` holds its settings). Codecs drop hosted
    tools their upstream has no equivalent for.
    """

    name: str
    description: str | None = None
    # JSON Schema, decoded or as the client's text (JSONText: read it with `schema_of`)
    parameters: JSON | JSONText = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}})
    kind: Literal["function", "custom", "hosted"] = "function"
    strict: bool | None = None
    format: JSON | None = None
    hosted_type: str | None = None
    config: JSON | None = None
    cache: bool = False


def schema_of(tool: Tool) -> JSON:
    """A tool's parameter schema as a dict, decoded now if it came as the client's text."""
    parameters = tool.parameters
    return parameters if isinstance(parameters, dict) else parameters.value()


def schema_copy(tool: Tool) -> JSON | orjson.Fragment:
    """A tool's schema for a renderer that writes it unchanged: as the client's bytes when
    it came as text (orjson.dumps copies a Fragment as it is), else the dict."""
    parameters = tool.parameters
    return parameters if isinstance(parameters, dict) else orjson.Fragment(parameters.text)


class ToolChoice(msgspec.Struct, frozen=True, gc=False):
    """`auto`, `none`, `required` (any tool), or `tool` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


class ReasoningConfig(msgspec.Struct, frozen=True, gc=False):
    """What the client asked for: `enabled` with an optional token budget, and/or an effort.

    `enabled=False` means the client turned reasoning off explicitly; `None` means it said
    nothing and the upstream's default applies.
    """

    enabled: bool | None = None
    budget_tokens: int | None = None
    effort: Effort | None = None
    summary: str | None = None  # Responses: auto/concise/detailed
    adaptive: bool = False  # Anthropic `adaptive`: the model decides how much to think


# ---------------------------------------------------------------- request / response


class Request(msgspec.Struct, frozen=True, gc=False):
    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    max_tokens: int | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    user: str | None = None  # end-user id (Anthropic metadata.user_id, OpenAI user)
    response_format: JSON | None = None  # OpenAI-style JSON mode / schema
    n: int | None = None
    # Responses API state, kept here so one Request describes the whole call.
    previous_response_id: str | None = None
    store: bool | None = None
    include_usage: bool = True  # Chat Completions stream_options.include_usage


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Token counts. `input_tokens` EXCLUDES cached tokens (Anthropic's convention): total
    prompt = input_tokens + cache_read_tokens + cache_write_tokens. `output_tokens` INCLUDES
    reasoning tokens; `reasoning_tokens` says how many of them were reasoning."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


NO_USAGE = Usage()  # the default: one value serves all, since none can change


class Response(msgspec.Struct, frozen=True, gc=False):
    id: str
    model: str
    parts: tuple[Part, ...]
    stop_reason: StopReason | None = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = NO_USAGE
    created: int | None = None  # unix seconds, when the upstream said
