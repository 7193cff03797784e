"""The interfaces every wire-protocol codec implements: `Codec`, `StreamDecoder`,
`StreamEncoder`, and the `Quirks` a codec is given for one upstream.

A codec is I/O-free: dicts and bytes in, canonical values out, and back. The same codec serves
its protocol in both directions:
- client-facing (inbound): `parse_request`, `render_response`, `stream_encoder`,
  `render_error`;
- upstream-facing (outbound): `render_request`, `parse_response`, `stream_decoder`,
  `parse_error`.
`Quirks` carries what differs between upstreams that speak the same protocol (DeepSeek,
Kimi, GLM... over OpenAI Chat): plain data filled by the providers layer from presets and
configuration, so codecs never key behaviour on model-name substrings.

What makes the streams fast lives beside these: sse_decoder.py (the base of the SSE stream
decoders) and learnt_layout.py (its fast path for bare pieces of text).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Literal, TypeVar

import msgspec

from babelgate.canonical import JSON, Event, GatewayError, Request, Response

from .reuse import Reuse

ReasoningControl = Literal[
    "reasoning_effort",  # OpenAI, Grok, Ollama: reasoning_effort: low|medium|high
    "thinking",  # DeepSeek, GLM, Kimi: thinking: {type: enabled|disabled}
    "enable_thinking",  # Qwen, SiliconFlow: enable_thinking + thinking_budget
    "reasoning",  # OpenRouter: reasoning: {effort | max_tokens}
    "chat_template_kwargs",  # vLLM: chat_template_kwargs: {enable_thinking}
    "none",  # the upstream has no control; say nothing
]


class Quirks(msgspec.Struct, frozen=True, cache_hash=True):
    """Per-upstream differences inside one protocol family. Defaults suit the reference
    provider of each family (OpenAI, Anthropic, Google). Frozen and hashable, its hash
    computed once: what a codec derives from a shared piece for one upstream is kept under
    the whole Quirks (babelgate.protocols.reuse)."""

    max_tokens: int | None = None  # clamp the client's max_tokens to this
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    reasoning_control: ReasoningControl = "reasoning_effort"
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    echo_reasoning: bool = False  # send reasoning_content back on assistant turns (DeepSeek)
    stream_usage: bool = True  # ask for stream_options.include_usage
    images: bool = True  # the upstream accepts image input
    documents: bool = False  # the upstream accepts PDF/document input
    strict_fields: bool = True  # the upstream rejects fields it does not define
    auto_cache: bool = False  # mark prompt-cache breakpoints a client could not (Anthropic)
    # The upstream takes `system` messages after the first one (OpenAI). Most chat templates
    # (vLLM's, llama.cpp's) reject or drop them, so by default a client's mid-conversation
    # system message (Claude Code sends some) is folded into the first one.
    system_anywhere: bool = False


class StreamDecoder(ABC):
    """Upstream stream bytes -> canonical events (see canonical.stream for the contract)."""

    # The upstream's stream counts the prompt's tokens at its start (Anthropic's
    # message_start, Gemini's usageMetadata): the gateway then estimates them only when a
    # stream's start comes without them, not in advance for every stream.
    input_at_start: ClassVar[bool] = False

    @abstractmethod
    def feed(self, chunk: bytes) -> list[Event]:
        """Take the next chunk of the body (any size, any split) and return the events it
        completes."""

    @abstractmethod
    def close(self) -> list[Event]:
        """The body ended. Return the closing events; a stream that ended early yields a
        StreamError rather than a silent stop."""


W = TypeVar("W")


def writer_by_kind(writers: Mapping[type[Event], W | None], event: Event) -> W | None:
    """The writer of the first kind in `writers` (in its order) that `event` is an instance
    of: for an event of a subclass, which an encoder's lookup by the event's own type misses
    (the chain of isinstance tests these tables replaced took it so); None when none."""
    for kind, write in writers.items():
        if isinstance(event, kind):
            return write
    return None


class StreamEncoder(ABC):
    """Canonical events -> the client's stream bytes."""

    @abstractmethod
    def encode(self, event: Event) -> bytes:
        """Bytes for one event (b"" when the protocol has nothing to say for it). A
        StreamError becomes the protocol's mid-stream error."""

    def encode_batch(self, events: list[Event]) -> bytes:
        """The bytes `encode` writes for each of `events`, in order, joined: what one read of
        the upstream's stream becomes. Encoders that write a run of text deltas in one go
        override it; the bytes must be the same."""
        return b"".join(map(self.encode, events))

    def ping(self) -> bytes:
        """A keep-alive the client ignores; b"" if the protocol has none."""
        return b""


class Codec(ABC):
    """One wire protocol. Instances are stateless and shared.

    `reuse` is the reuse table of the caller the request came from (protocols/reuse.py): what
    a codec computes from a piece the caller resends is kept there. None (tests, tools):
    nothing is kept."""

    name: ClassVar[str]  # "anthropic", "openai", "gemini", "openai-responses"
    # What keeps a client's stream alive while its upstream has not begun to answer
    # (server/keepalive.py): an SSE comment, which every SSE client skips.
    keepalive: ClassVar[bytes] = b": keep-alive\n\n"

    # ------------------------------------------------ client-facing
    @abstractmethod
    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        """A client's request body -> Request. Raises GatewayError(invalid_request) naming
        the field for anything missing or malformed."""

    def read_request(self, raw: bytes, reuse: Reuse) -> Request | None:
        """A client's request read straight from its bytes, for a body the reuse table found
        nothing of: the same Request `parse_request` makes of the decoded body (a tool schema
        may stay the client's text, canonical.JSONText), or None when this protocol has no
        such reader or the body is not of the usual shape; the caller then decodes it and
        calls `parse_request`, which says what is wrong."""
        return None

    @abstractmethod
    def render_response(
        self, response: Response, request: Request, reuse: Reuse | None = None
    ) -> JSON:
        """A finished Response -> the client's response body."""

    @abstractmethod
    def stream_encoder(self, request: Request, reuse: Reuse | None = None) -> StreamEncoder:
        """A fresh encoder for one streamed response to a client."""

    @abstractmethod
    def render_error(self, error: GatewayError) -> JSON:
        """The error body this protocol's clients expect (the status is error.status)."""

    # ------------------------------------------------ upstream-facing
    @abstractmethod
    def render_request(
        self, request: Request, quirks: Quirks, reuse: Reuse | None = None
    ) -> JSON:
        """Request -> this protocol's request body, with nothing the upstream does not define
        (request.model is already the upstream's model name)."""

    @abstractmethod
    def parse_response(
        self, body: JSON, request: Request, reuse: Reuse | None = None
    ) -> Response:
        """The upstream's response body -> Response (tool names mapped back to the request's
        own names)."""

    @abstractmethod
    def stream_decoder(self, request: Request, reuse: Reuse | None = None) -> StreamDecoder:
        """A fresh decoder for one upstream stream."""

    @abstractmethod
    def parse_error(self, status: int, body: bytes) -> GatewayError:
        """An upstream error response -> GatewayError, keeping the upstream's message."""

    # ------------------------------------------------ token counting (optional)
    def parse_count_tokens_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        """A client's token-counting body -> Request (protocols whose counting body differs
        from a generation body override this)."""
        return self.parse_request(body, reuse)

    def render_count_tokens(
        self, request: Request, quirks: Quirks, reuse: Reuse | None = None
    ) -> JSON | None:
        """The upstream token-counting body, or None when the protocol has no such endpoint."""
        return None

    def parse_count_tokens(self, body: JSON) -> int | None:
        """The count from the upstream token-counting answer."""
        return None
