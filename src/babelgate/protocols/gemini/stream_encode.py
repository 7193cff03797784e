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
"""

from __future__ import annotations

from typing import Any

import orjson

from babelgate.canonical import (
    Event,
    MessageDelta,
    MessageStart,
    PartStop,
    Reasoning,
    ReasoningDelta,
    Request,
    StreamError,
    TextDelta,
    ToolCall,
)
from babelgate.protocols.base import StreamEncoder
from babelgate.protocols.sse import sse

from .client import finish_reason, usage_metadata
from .errors import render_error
from .parts import BARE_THOUGHT, ORIGIN, foreign_signature, render_model_parts

JSON = dict[str, Any]


class GeminiStreamEncoder(StreamEncoder):
    __slots__ = ("_calls", "_foreign", "_id", "_model")

    def __init__(self, request: Request) -> None:
        self._id = ""
        self._model = request.model
        self._foreign: list[Reasoning] = []  # finished reasoning of another provider
        self._calls = 0

    def encode(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk([{"text": event.text}])
        if isinstance(event, ReasoningDelta):
            return self._chunk([{"text": event.text, "thought": True}])
        if isinstance(event, PartStop):
            return self._part_stop(event.part)
        if isinstance(event, MessageDelta):
            return self._chunk(
                [{"text": ""}],
                finishReason=finish_reason(event.stop_reason),
                usage=usage_metadata(event.usage),
            )
        if isinstance(event, MessageStart):
            self._id = event.id
            self._model = event.model or self._model
            return b""
        if isinstance(event, StreamError):
            return sse(orjson.dumps(render_error(event.error)))
        return b""  # PartStart, SignatureDelta, ToolArgsDelta, MessageStop: nothing to say

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
