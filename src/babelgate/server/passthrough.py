"""Same protocol in and out: forward the client's body, rewrite only what must change.

Rewritten: the model name (to the target's), and max tokens when the provider clamps them.
Everything else goes through as the client sent it, so fields the gateway does not know yet
(new betas, new block types) still work. The upstream's answer streams back byte for byte;
`UsageTap` reads usage off it without re-encoding anything, and, when the upstream fails
mid-stream, says how to end the stream in the upstream's own terms (`UsageTap.failure`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from babelgate.canonical import GatewayError, Usage
from babelgate.canonical.carry import ENVELOPE_PREFIX, ID_MARK
from babelgate.protocols import Quirks
from babelgate.protocols.gemini.parts import SIGNATURE_PREFIX as GEMINI_SIGNATURE_PREFIX
from babelgate.protocols.gemini.response import parse_usage as gemini_usage
from babelgate.protocols.openai_chat.usage import parse_usage as chat_usage
from babelgate.protocols.openai_responses.errors import stream_error
from babelgate.protocols.openai_responses.response_in import parse_usage as responses_usage
from babelgate.protocols.sse import EventBuffer, SSEDecoder, sse

JSON = dict[str, Any]
_ENVELOPE_MARK = b'"' + ENVELOPE_PREFIX.encode()
_ID_MARK = ID_MARK.encode()
_GEMINI_MARK = b'"' + GEMINI_SIGNATURE_PREFIX.encode()  # our envelope in a thoughtSignature


def can_pass_through(
    client_protocol: str, provider_type: str, raw_body: bytes, *, preset: str | None = None,
    data: JSON | None = None,
) -> bool:
    """Pass through when both sides speak the same protocol, except:
    - the history carries reasoning from another provider (our envelopes, or data carried in
      tool call ids): the codec must drop or unpack it, since an upstream rejects signatures it
      did not issue and ids longer than it allows;
    - an OpenAI-compatible upstream with a preset other than `openai`: its quirks (reasoning
      controls, limits, fields it rejects) need the translation the codec does;
    - a Responses request that relies on stored state (`store` not false, or
      `previous_response_id`): the gateway keeps that state, so it must see the output."""
    if client_protocol != provider_type or client_protocol not in SPECS:
        return False
    if _ENVELOPE_MARK in raw_body or _ID_MARK in raw_body:
        return False
    if client_protocol == "gemini":
        return _GEMINI_MARK not in raw_body
    if client_protocol == "openai":
        return preset is None or preset == "openai"
    if client_protocol == "openai-responses":
        return data is not None and data.get("store") is False and not data.get(
            "previous_response_id"
        )
    return True


def rewrite_body(protocol: str, data: JSON, model: str, quirks: Quirks) -> bytes:
    """The client's body for one target: its model name, and max tokens clamped."""
    out = dict(data)  # shallow: the caller's dict serves the next fallback target unchanged
    spec = SPECS[protocol]
    if spec.rewrite is not None:
        spec.rewrite(out, quirks)
        return orjson.dumps(out)
    out["model"] = model
    limit = quirks.max_tokens
    if limit is not None:
        for field in SPECS[protocol].max_tokens_fields:
            requested = out.get(field)
            if isinstance(requested, int) and requested > limit:
                out[field] = limit
                fit_thinking_budget(out, limit)
    return orjson.dumps(out)


def fit_thinking_budget(body: JSON, limit: int) -> None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        # Anthropic requires budget_tokens < max_tokens.
        budget = min(thinking["budget_tokens"], limit - 1)
        body["thinking"] = {**thinking, "budget_tokens": max(budget, 1024)}


def anthropic_usage(data: Any) -> Usage:
    """Usage from an Anthropic `usage` object (message body, message_start or message_delta)."""
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=data.get("input_tokens") or 0,
        output_tokens=data.get("output_tokens") or 0,
        cache_read_tokens=data.get("cache_read_input_tokens") or 0,
        cache_write_tokens=data.get("cache_creation_input_tokens") or 0,
    )


class EventCut(EventBuffer):
    """A passed-through stream cut where its events end: `take` gives the whole events a
    chunk completes (with what waited before it), and what follows them waits (`size`
    bytes) until its event ends (EventBuffer: chunks that cannot end it are joined once,
    when one can)."""

    __slots__ = ()

    def __init__(self, carry: bytes) -> None:
        super().__init__()
        self._pending = carry  # holds no blank line (what whole_events left over)

    @property
    def size(self) -> int:
        """The bytes waiting (read only when a chunk completed no event)."""
        return len(self._pending) + sum(map(len, self._held))

    def take(self, chunk: bytes, redact: Callable[[bytes], bytes] | None = None) -> bytes:
        """The whole events `chunk` completes (b"" if none); `redact` is applied to them and
        to what waits, when given."""
        if not self._pending:
            data = chunk  # the usual chunk: it begins an event
        elif redact is None:
            joined = self._join(chunk)
            if joined is None:
                return b""
            data = joined
        else:
            data, self._held = b"".join([self._pending, *self._held, chunk]), []
        if redact is not None:
            data = redact(data)
        whole = whole_events(data)
        self._pending = data[whole:]
        return data if whole == len(data) else data[:whole]

    def rest(self) -> bytes:
        """What waited for its event's end when the stream ended."""
        return self._waiting()


def whole_events(data: bytes) -> int:
    """How many leading bytes of `data` are whole SSE events (up to the last blank line)."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def body_usage(protocol: str, body: JSON) -> Usage:
    """Usage from a whole (non-streamed) response body."""
    return SPECS[protocol].body_usage(body)


class UsageTap:
    """Watches an upstream's event stream go by and keeps the usage and any error it reports,
    parsing only the events that can carry them. `events` counts the events seen, `started`
    says whether real output began, and `error_data` keeps an error as a `{"error": ...}` body,
    so the caller can tell a stream that failed before it started (worth a fallback) from one
    that did start."""

    __slots__ = ("_envelope", "_spec", "_sse", "content", "ended", "error_data", "events",
                 "head", "last_data", "started", "text_chars", "usage")

    def __init__(self, protocol: str) -> None:
        self._spec = SPECS[protocol]
        self._sse = SSEDecoder()
        self.usage = Usage()
        self.error_data: str | None = None
        self.events = 0
        self.started = False
        self.content = False  # an event of the answer itself went by (see PassThroughSpec)
        self.ended = False  # the upstream's own terminal event went by
        self.head: JSON | None = None  # Responses: the response object of response.created
        self.last_data = ""
        # Roughly the text of the events not parsed (deltas): their size less the JSON
        # around a delta's text; the output estimate of a stream without usage. That JSON
        # (ids, model name, fields a server adds) is measured on the stream's first delta,
        # the one delta parsed; the spec's guess stands until then (and if none is found).
        self.text_chars = 0
        self._envelope: int | None = None

    def feed(self, chunk: bytes) -> None:
        spec = self._spec
        for event in self._sse.feed(chunk):
            self.events += 1
            self.last_data = event.data
            if spec.interesting(event.event, event.data):
                spec.read(self, event.event, _loads(event.data))
            else:
                if not self.started and spec.starts(event.event):
                    self.started = True
                envelope = self._envelope
                if envelope is None:
                    envelope = self._learn(event.data)
                size = len(event.data) - envelope
                if size > 0:
                    self.text_chars += size
            if not self.content and self.error_data is None:
                self.content = spec.content(event.event, event.data)

    def _learn(self, data: str) -> int:
        """The envelope of this stream's deltas, from its first one (`data`, if it is one):
        the event's size less its text."""
        text = self._spec.text(_loads(data))
        if text is None:  # not a delta (a block's start, a role chunk): keep looking
            return self._spec.envelope
        self._envelope = envelope = len(data) - len(text)
        # What the events before it were guessed to hold goes: they were a stream's start,
        # a role or a block's opening, no text.
        self.text_chars = 0
        return envelope

    def merge(self, delta: Usage) -> None:
        # Usage in later events is cumulative; fields they leave out (0) keep their value.
        usage = self.usage
        self.usage = Usage(
            input_tokens=delta.input_tokens or usage.input_tokens,
            output_tokens=delta.output_tokens or usage.output_tokens,
            cache_read_tokens=delta.cache_read_tokens or usage.cache_read_tokens,
            cache_write_tokens=delta.cache_write_tokens or usage.cache_write_tokens,
            reasoning_tokens=delta.reasoning_tokens or usage.reasoning_tokens,
        )

    def fail(self, error: Any) -> None:
        self.error_data = orjson.dumps({"error": error}).decode()

    def failure(self, error: GatewayError) -> bytes | None:
        """The bytes that end the stream after the upstream failed mid-way, continuing what
        the client already has; None when the client codec's own encoder can say it (its
        error event needs nothing from the stream so far)."""
        tail = self._spec.tail
        return tail(self, error) if tail is not None else None


# ---------------------------------------------------------------- per-protocol knowledge


@dataclass(frozen=True, slots=True)
class PassThroughSpec:
    max_tokens_fields: tuple[str, ...]
    body_usage: Callable[[JSON], Usage]
    interesting: Callable[[str | None, str], bool]  # (event name, raw data): parse it?
    read: Callable[[UsageTap, str | None, JSON], None]
    starts: Callable[[str | None], bool]  # an uninteresting event that means output began
    # (event name, raw data): the answer's content begins with this event (a block, a piece
    # of text, the end); asked only until it says so. The events before it (a stream's
    # start, pings) are held back, so a failure among them can still go to the next target.
    content: Callable[[str | None, str], bool]
    tail: Callable[[UsageTap, GatewayError], bytes] | None = None  # see UsageTap.failure
    # Rewrites the (shallow-copied) body in place instead of setting `model` and clamping
    # max_tokens_fields: for a protocol whose model is in the URL (Gemini).
    rewrite: Callable[[JSON, Quirks], None] | None = None
    envelope: int = 0  # characters of a text delta event's data that are not its text
    # The text of a delta event (text, reasoning, tool arguments); None: not a delta.
    text: Callable[[JSON], str | None] = lambda _: None


def _anthropic_read(tap: UsageTap, name: str | None, data: JSON) -> None:
    if name == "message_start":
        tap.started = True
        message = data.get("message")
        if isinstance(message, dict):
            tap.usage = anthropic_usage(message.get("usage"))
    elif name == "message_delta":
        tap.merge(anthropic_usage(data.get("usage")))
    elif name == "error":
        tap.fail(data.get("error"))


def _chunk_read(field: str, parse: Callable[[Any], Usage]
                ) -> Callable[[UsageTap, str | None, JSON], None]:
    """The reader of a protocol whose stream is one kind of chunk (Chat Completions,
    Gemini): an `error` in one fails the stream; else the usage in `field`, if any."""

    def read(tap: UsageTap, name: str | None, data: JSON) -> None:
        if data.get("error") is not None:
            tap.fail(data["error"])
            return
        tap.started = True
        usage = data.get(field)
        if isinstance(usage, dict):
            tap.merge(parse(usage))

    return read


_chat_read = _chunk_read("usage", chat_usage)


_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_READ = _RESPONSES_TERMINAL | {"response.created", "error"}


def _responses_read(tap: UsageTap, name: str | None, data: JSON) -> None:
    if name == "error":
        tap.fail({"message": data.get("message"), "code": data.get("code")})
        return
    response = data.get("response")
    if not isinstance(response, dict):
        return
    if name == "response.created":
        tap.started = True
        tap.head = response
        return
    tap.ended = True
    if name == "response.failed":
        tap.fail(response.get("error") or {"message": "the upstream response failed"})
    tap.merge(responses_usage(response.get("usage")))


def _responses_tail(tap: UsageTap, error: GatewayError) -> bytes:
    """A `response.failed` numbered after the last event the client got, for the response
    it was reading (a fresh encoder would restart at 0 with a new response id). Nothing
    after the upstream's own terminal event."""
    if tap.ended:
        return b""
    seq = _loads(tap.last_data).get("sequence_number")
    number = seq + 1 if isinstance(seq, int) else tap.events
    response = {"object": "response", "output": [], **(tap.head or {}),
                "status": "failed", "error": stream_error(error), "usage": None}
    event = {"type": "response.failed", "sequence_number": number, "response": response}
    return sse(orjson.dumps(event), "response.failed")


def _gemini_rewrite(body: JSON, quirks: Quirks) -> None:
    """The model travels in the URL (the provider builds it for the target); only
    `generationConfig.maxOutputTokens` may need the provider's clamp."""
    limit = quirks.max_tokens
    if limit is None:
        return
    for config_key, field in (("generationConfig", "maxOutputTokens"),
                              ("generation_config", "max_output_tokens")):
        config = body.get(config_key)
        if isinstance(config, dict):
            requested = config.get(field)
            if isinstance(requested, int) and requested > limit:
                body[config_key] = {**config, field: limit}


def _chat_content(name: str | None, raw: str) -> bool:
    """A chunk with something in its delta besides the role (the first chunk says only
    `role` and an empty `content`), a finish reason, usage, or the end."""
    if raw == "[DONE]":
        return True
    data = _loads(raw)
    if data.get("error") is not None:
        return False
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return bool(data.get("usage"))
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    said = isinstance(delta, dict) and any(
        value for key, value in delta.items() if key != "role")
    return said or choice.get("finish_reason") is not None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first(value: Any) -> JSON:
    """The first item of a list, if it is an object, else {}."""
    return value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else {}


def _anthropic_text(data: JSON) -> str | None:
    delta = data.get("delta")
    if data.get("type") != "content_block_delta" or not isinstance(delta, dict):
        return None
    return (_string(delta.get("text")) or _string(delta.get("thinking"))
            or _string(delta.get("partial_json")))


def _chat_text(data: JSON) -> str | None:
    delta = _first(data.get("choices")).get("delta")
    if not isinstance(delta, dict):
        return None
    call = _first(delta.get("tool_calls")).get("function")
    return (_string(delta.get("content")) or _string(delta.get("reasoning_content"))
            or _string(delta.get("reasoning"))
            or (_string(call.get("arguments")) if isinstance(call, dict) else None))


def _gemini_text(data: JSON) -> str | None:
    content = _first(data.get("candidates")).get("content")
    part = _first(content.get("parts")) if isinstance(content, dict) else {}
    return _string(part.get("text"))


_RESPONSES_OPENING = frozenset({"response.created", "response.in_progress", "response.queued",
                                "error"})
_ANTHROPIC_OPENING = frozenset({"message_start", "ping", "error"})


_gemini_read = _chunk_read("usageMetadata", gemini_usage)


SPECS: dict[str, PassThroughSpec] = {
    "anthropic": PassThroughSpec(
        max_tokens_fields=("max_tokens",),
        body_usage=lambda body: anthropic_usage(body.get("usage")),
        interesting=lambda name, _: name in ("message_start", "message_delta", "error"),
        read=_anthropic_read,
        starts=lambda name: False,  # message_start is read above
        # {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}
        envelope=80,
        text=_anthropic_text,
        content=lambda name, _: name not in _ANTHROPIC_OPENING,
    ),
    "openai": PassThroughSpec(
        max_tokens_fields=("max_tokens", "max_completion_tokens"),
        body_usage=lambda body: chat_usage(body.get("usage") or {}),
        # Chunks are unnamed; only those that mention usage or an error need parsing.
        interesting=lambda _, raw: '"usage":{' in raw or '"error"' in raw,
        read=_chat_read,
        starts=lambda name: True,
        # id, object, created, model and choices around {"content":""}: ~140 on OpenAI's
        envelope=140,
        text=_chat_text,
        content=_chat_content,
    ),
    "openai-responses": PassThroughSpec(
        max_tokens_fields=("max_output_tokens",),
        body_usage=lambda body: responses_usage(body.get("usage")),
        interesting=lambda name, _: name in _RESPONSES_READ,
        read=_responses_read,
        starts=lambda name: False,  # response.created is read above
        content=lambda name, _: name not in _RESPONSES_OPENING,
        tail=_responses_tail,
        # {"type":"response.output_text.delta","sequence_number":..,"item_id":"msg_..", ...}
        envelope=150,
        text=lambda data: _string(data.get("delta")),
    ),
    "gemini": PassThroughSpec(
        max_tokens_fields=(),
        body_usage=lambda body: gemini_usage(body.get("usageMetadata")),
        # Chunks are unnamed; only those that carry usage or an error need parsing.
        interesting=lambda _, raw: '"usageMetadata"' in raw or '"error"' in raw,
        read=_gemini_read,
        starts=lambda name: True,
        content=lambda _, raw: '"error"' not in raw,
        rewrite=_gemini_rewrite,
        # {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"index":0}]}
        envelope=80,
        text=_gemini_text,
    ),
}


def _loads(data: str) -> JSON:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
