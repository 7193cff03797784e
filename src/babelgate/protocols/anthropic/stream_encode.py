"""Canonical stream events -> Anthropic SSE bytes for a client (Claude Code).

The client sees exactly Anthropic's sequence: `message_start`, a `ping`, then per block
`content_block_start` / deltas / `content_block_stop`, then `message_delta` and
`message_stop`. Promises beyond the canonical contract:
- A text part with no text (or only whitespace) never reaches the client: its block opens at
  the first delta with real text, and client-visible indexes are renumbered so they stay
  0, 1, 2... without gaps.
- A thinking block's signature (Anthropic's own, or our envelope for foreign reasoning) is
  sent as one `signature_delta` just before the block's stop, computed from the finished part.
- A tool call whose arguments never streamed gets them in one `input_json_delta` at its stop.
- A thinking block with no thinking text (a bare signature, as Gemini attaches to text parts)
  is held back until the next block starts, and dropped if the message ends instead: Claude
  Code reads the last block of a message as its answer, and a trailing empty thinking block
  leaves it with none. Such signatures are optional for the upstream to get back.
- A StreamError becomes `event: error`; after it the encoder says nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from babelgate.canonical import (
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningDelta,
    Request,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import dump_arguments

from ..base import StreamEncoder
from ..sse import sse
from ..sse_templates import CUT, INT, cut, event_template
from .carrier import client_signature, is_native
from .errors import render_error
from .response import tool_use_block
from .wire import client_stop_reason, usage_body

JSON = dict[str, Any]
_PING = sse(b'{"type":"ping"}', "ping")
_THINKING_START: JSON = {"type": "thinking", "thinking": "", "signature": ""}
_STOP = sse(b'{"type":"message_stop"}', "message_stop")
# Templates of the events a text block is made of, by block index (sse_templates.py):
# what _block_start({"type": "text", "text": ""}) writes, a text delta around its text, and
# the content_block_stop _close_open writes.
_TEXT_START = event_template(
    "content_block_start",
    {"type": "content_block_start", "index": INT, "content_block": {"type": "text", "text": ""}},
)
_TEXT_DELTA_HEAD, _TEXT_DELTA_TAIL = cut(event_template(
    "content_block_delta",
    {"type": "content_block_delta", "index": INT, "delta": {"type": "text_delta", "text": CUT}},
))
_BLOCK_STOP = event_template("content_block_stop", {"type": "content_block_stop", "index": INT})


def _event(name: str, data: JSON) -> bytes:
    return sse(orjson.dumps(data), name)


class _TextDeltaHeads(dict[int, bytes]):
    """Block index -> the bytes every text delta of that block starts with."""

    def __missing__(self, index: int) -> bytes:
        head = self[index] = _TEXT_DELTA_HEAD % index
        return head


_TEXT_DELTA = _TextDeltaHeads()


class AnthropicStreamEncoder(StreamEncoder):
    __slots__ = (
        "_args_sent",
        "_client_index",
        "_closed",
        "_held",
        "_held_signature",
        "_model",
        "_next_index",
        "_open",
        "_text_head",
    )

    def __init__(self, request: Request) -> None:
        self._model = request.model  # not the request: a stream must not keep its body alive
        self._next_index = 0  # the next client-visible block index
        self._client_index: int | None = None  # the open block's client index
        self._open: Text | Reasoning | ToolCall | None = None  # the canonical part underway
        self._args_sent = False
        self._held = ""  # leading whitespace of a text part not opened yet
        self._closed = False  # after an error or message_stop
        self._held_signature: Reasoning | None = None  # a bare-signature block not yet sent
        # While a text block is open and nothing else came since its last delta: how its
        # deltas start (the text, then b"}}\n\n", is all the next one needs).
        self._text_head: bytes | None = None

    def ping(self) -> bytes:
        return _PING

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta and self._text_head is not None and event.text:
            return self._text_head + orjson.dumps(event.text) + _TEXT_DELTA_TAIL
        self._text_head = None  # set again by _text_delta
        if self._closed:
            return b""
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler is not None else b""

    def _reasoning_delta(self, event: ReasoningDelta) -> bytes:
        if not event.text:
            return b""
        out = b""
        if self._client_index is None and isinstance(self._open, Reasoning):
            out = self._block_start(_THINKING_START)  # deferred until there is text
        return out + self._delta({"type": "thinking_delta", "thinking": event.text})

    def _args_delta(self, event: ToolArgsDelta) -> bytes:
        if not event.json:
            return b""
        self._args_sent = True
        return self._delta({"type": "input_json_delta", "partial_json": event.json})

    def _message_stop(self, _event: MessageStop) -> bytes:
        self._closed = True
        return _STOP

    def _error(self, event: StreamError) -> bytes:
        self._closed = True
        return _event("error", render_error(event.error))

    # ------------------------------------------------ message

    def _message_start(self, event: MessageStart) -> bytes:
        message: JSON = {
            "id": event.id or new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": event.model or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(event.usage),
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _PING

    def _message_delta(self, event: MessageDelta) -> bytes:
        self._held_signature = None  # a bare signature at the very end is not shown
        data = {
            "type": "message_delta",
            "delta": {
                "stop_reason": client_stop_reason(event.stop_reason),
                "stop_sequence": event.stop_sequence,
            },
            "usage": usage_body(event.usage),
        }
        return self._close_open() + _event("message_delta", data)

    # ------------------------------------------------ blocks

    def _part_start(self, event: PartStart) -> bytes:
        part = event.part
        out = self._close_open()  # defensive: the contract closes parts before the next
        if self._held_signature is not None:
            out += self._whole_reasoning(self._held_signature)
            self._held_signature = None
        self._open = part
        self._args_sent = False
        self._held = ""
        if isinstance(part, Text):
            return out  # opened at its first non-empty delta
        if isinstance(part, Reasoning):
            if not (is_native(part) and part.redacted):
                return out  # opened at its first thinking text, or sent whole at its stop
            block: JSON = {"type": "redacted_thinking", "data": part.redacted}
        else:
            block = tool_use_block(part, empty_input=True)
        return out + self._block_start(block)

    def _block_start(self, block: JSON) -> bytes:
        self._client_index = self._next_index
        self._next_index += 1
        data = {"type": "content_block_start", "index": self._client_index, "content_block": block}
        return _event("content_block_start", data)

    def _text_delta(self, event: TextDelta) -> bytes:
        text = event.text
        if not text or not isinstance(self._open, Text):
            return b""
        out = b""
        index = self._client_index
        if index is None:
            # A whitespace-only text block is rejected by Anthropic when the client sends the
            # history back, so the block opens only with real text; whitespace before it is
            # held and sent with that text.
            if text.isspace():
                self._held += text
                return b""
            text, self._held = self._held + text, ""
            index = self._client_index = self._next_index
            self._next_index += 1
            out = _TEXT_START % index  # what _block_start({"type": "text", "text": ""}) writes
        # The event a stream is mostly made of, written without building its dict.
        self._text_head = _TEXT_DELTA[index]
        return out + self._text_head + orjson.dumps(text) + _TEXT_DELTA_TAIL

    def _delta(self, delta: JSON) -> bytes:
        if self._client_index is None:
            return b""
        data = {"type": "content_block_delta", "index": self._client_index, "delta": delta}
        return _event("content_block_delta", data)

    def _part_stop(self, event: PartStop) -> bytes:
        part = event.part
        out = b""
        if self._client_index is None and isinstance(part, Reasoning):
            if client_signature(part):
                self._held_signature = part  # no thinking text: wait to see what follows
            self._open = None
            return b""
        if self._client_index is not None:
            if isinstance(part, Reasoning) and not (is_native(part) and part.redacted):
                signature = client_signature(part)
                if signature:
                    out += self._delta({"type": "signature_delta", "signature": signature})
            elif isinstance(part, ToolCall) and not self._args_sent and part.arguments:
                arguments = dump_arguments(part.arguments)
                out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        self._open = None
        return out + self._close_open()

    def _whole_reasoning(self, part: Reasoning) -> bytes:
        """A held bare-signature thinking block, sent whole."""
        out = self._block_start(_THINKING_START)
        out += self._delta({"type": "signature_delta", "signature": client_signature(part)})
        return out + self._close_open()

    def _close_open(self) -> bytes:
        index, self._client_index, self._open = self._client_index, None, None
        if index is None:
            return b""
        return _BLOCK_STOP % index  # the content_block_stop event _event would write


# SignatureDelta has no handler: the signature is sent from the finished part at its stop.
_HANDLERS: dict[type, Callable[[AnthropicStreamEncoder, Any], bytes]] = {
    TextDelta: AnthropicStreamEncoder._text_delta,
    ReasoningDelta: AnthropicStreamEncoder._reasoning_delta,
    ToolArgsDelta: AnthropicStreamEncoder._args_delta,
    PartStart: AnthropicStreamEncoder._part_start,
    PartStop: AnthropicStreamEncoder._part_stop,
    MessageStart: AnthropicStreamEncoder._message_start,
    MessageDelta: AnthropicStreamEncoder._message_delta,
    MessageStop: AnthropicStreamEncoder._message_stop,
    StreamError: AnthropicStreamEncoder._error,
}
