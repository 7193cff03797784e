"""Canonical events -> a Gemini SSE stream for a Gemini-SDK client.

Each `data:` line is one whole GenerateContentResponse chunk, as Gemini sends them:
- text and thought deltas -> a chunk with one part each;
- a function call -> one chunk when its part stops (Gemini never splits a call); the first
  carries the turn's reasoning from another provider in its thoughtSignature (parts.py);
- a reasoning part's signature -> a chunk at the part's stop, once the whole signature is
  known (foreign signatures are packed, see parts.py);
- MessageDelta -> a last chunk with `finishReason` and `usageMetadata`;
- StreamError -> a `{"error": {...}}` chunk.
Every chunk names `modelVersion` and `responseId`, like Gemini's own.

A text or thought delta, what a stream is mostly made of, is written from the bytes of its
chunk around the text (made once per stream from the very dict the general path serialises,
see `_ends`) and the text's JSON string; a read's run of text deltas in one go (text_run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
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
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
)
from babelgate.protocols.base import StreamEncoder, writer_by_kind
from babelgate.protocols.sse import sse
from babelgate.protocols.sse_templates import CUT
from babelgate.protocols.text_run import text_run, write_texts

from .client import finish_reason, usage_metadata
from .errors import render_error
from .parts import BARE_THOUGHT, ORIGIN, foreign_signature, render_model_parts

JSON = dict[str, Any]
_CUT_STRING = orjson.dumps(CUT)


class GeminiStreamEncoder(StreamEncoder):
    __slots__ = ("_calls", "_foreign", "_id", "_model", "_text_ends", "_thought_ends")

    def __init__(self, request: Request) -> None:
        self._id = ""
        self._model = request.model
        self._foreign: list[Reasoning] = []  # finished reasoning of another provider
        self._calls = 0
        # A text (thought) delta's chunk before and after its text: made at the first one,
        # again after a MessageStart (the chunks name its id and model).
        self._text_ends: tuple[bytes, bytes] | None = None
        self._thought_ends: tuple[bytes, bytes] | None = None

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta:
            head, tail = self._text_ends or self._ends(thought=False)
            return head + orjson.dumps(event.text) + tail
        if type(event) is ReasoningDelta:
            head, tail = self._thought_ends or self._ends(thought=True)
            return head + orjson.dumps(event.text) + tail
        # Each other event by its type: one lookup, where a chain of isinstance tests cost
        # ~1-3 k instructions a test on these structs.
        write = _WRITERS.get(type(event), _by_kind)
        return write(self, event) if write is not None else b""

    def _text(self, event: TextDelta) -> bytes:
        return self._chunk([{"text": event.text}])

    def _thought(self, event: ReasoningDelta) -> bytes:
        return self._chunk([{"text": event.text, "thought": True}])

    def _stop(self, event: PartStop) -> bytes:
        return self._part_stop(event.part)

    def _end(self, event: MessageDelta) -> bytes:
        return self._chunk(
            [{"text": ""}],
            finishReason=finish_reason(event.stop_reason),
            usage=usage_metadata(event.usage),
        )

    def _start(self, event: MessageStart) -> bytes:
        self._id = event.id
        self._model = event.model or self._model
        self._text_ends = self._thought_ends = None
        return b""

    def _error(self, event: StreamError) -> bytes:
        return sse(orjson.dumps(render_error(event.error)))

    def encode_batch(self, events: list[Event]) -> bytes:
        """As encode for each event, with a run of text deltas written in one go."""
        run = text_run(events)
        if run is None:
            return b"".join(map(self.encode, events))
        first, end = run
        out = list(map(self.encode, events[:first]))  # the start, if in this read
        head, tail = self._text_ends or self._ends(thought=False)
        out.append(write_texts(events[first:end], head, tail))
        out += map(self.encode, events[end:])
        return b"".join(out)

    def _ends(self, *, thought: bool) -> tuple[bytes, bytes]:
        """The bytes `_chunk` writes for a text (thought) delta before and after its text's
        JSON string, kept for the next ones."""
        part: JSON = {"text": CUT, "thought": True} if thought else {"text": CUT}
        head, tail = self._chunk([part]).split(_CUT_STRING)
        if thought:
            self._thought_ends = head, tail
        else:
            self._text_ends = head, tail
        return head, tail

    def _part_stop(self, part: Any) -> bytes:
        if isinstance(part, ToolCall):
            # The first call carries the turn's foreign reasoning (parts.turn_reasoning).
            foreign = self._foreign if not self._calls else []
            self._calls += 1
            return self._chunk(render_model_parts((part,), upstream=False, foreign=foreign))
        if isinstance(part, Reasoning):
            if part.origin != ORIGIN:
                self._foreign.append(part)
            signed = _signature_part(part)
            return self._chunk([signed]) if signed is not None else b""
        return b""

    def _chunk(
        self, parts: list[JSON], finishReason: str | None = None, usage: JSON | None = None
    ) -> bytes:
        candidate: JSON = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finishReason is not None:
            candidate["finishReason"] = finishReason
        body: JSON = {"candidates": [candidate]}
        if usage is not None:
            body["usageMetadata"] = usage
        body["modelVersion"] = self._model
        body["responseId"] = self._id
        return sse(orjson.dumps(body))


def _signature_part(part: Reasoning) -> JSON | None:
    """The chunk that carries a finished reasoning part's signature (its text has streamed)."""
    if part.origin == ORIGIN:
        if not part.signature:
            return None
        if part.text or part.provider_metadata == BARE_THOUGHT:
            return {"text": "", "thought": True, "thoughtSignature": part.signature}
        return {"text": "", "thoughtSignature": part.signature}  # a text part's signature
    packed = foreign_signature(part)
    return None if packed is None else {"text": "", "thought": True, "thoughtSignature": packed}


# The writer of each kind of event, in the order encode tests a subclass; None: nothing to
# say (PartStart, SignatureDelta, ToolArgsDelta, MessageStop).
_WRITERS: Mapping[type[Event], Callable[[GeminiStreamEncoder, Any], bytes] | None] = (
    MappingProxyType({
        TextDelta: GeminiStreamEncoder._text,
        ReasoningDelta: GeminiStreamEncoder._thought,
        PartStop: GeminiStreamEncoder._stop,
        MessageDelta: GeminiStreamEncoder._end,
        MessageStart: GeminiStreamEncoder._start,
        StreamError: GeminiStreamEncoder._error,
        PartStart: None,
        SignatureDelta: None,
        ToolArgsDelta: None,
        MessageStop: None,
    })
)


def _by_kind(encoder: GeminiStreamEncoder, event: Event) -> bytes:
    """An event of none of those types, but maybe of a subclass of one: as the chain of
    isinstance tests took it."""
    write = writer_by_kind(_WRITERS, event)
    return write(encoder, event) if write is not None else b""
