"""The Gemini stream decoder reads a chunk of one piece of text (the stream's first, with its
id and model; the last, with its finishReason; those between) through a typed view, and
everything else through orjson and dicts: both ways must give the same events.

Each case decodes the same body with the decoder as it is and with every chunk sent down the
general path (`_data`, learnt layouts off), and compares the events (the ids the decoder makes
up when the chunk names none written alike). Chunks of random shapes: text with or without
usage, id, model and finishReason, fields of the wrong type, `error` (even null), blocked
prompts, thoughts, signatures, function calls, several parts, numbers orjson and msgspec
read differently, broken JSON.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from babelgate.canonical import Event, Message, Request, Text, Tool
from babelgate.protocols.gemini.stream_decode import GeminiStreamDecoder
from babelgate.protocols.reuse import Reuse

REQUEST = Request(model="m", messages=(Message("user", (Text("hi"),)),),
                  tools=(Tool(name="Read", parameters={"type": "object"}),), stream=True)
TEXTS = ["The handler", "", " \"q\" \\", "\u00e9\U0001f600", "line\nbreak", "."]
USAGES: list[Any] = [
    {"promptTokenCount": 10, "totalTokenCount": 10},
    {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14,
     "cachedContentTokenCount": 8, "thoughtsTokenCount": 2},
    {"promptTokenCount": 2**64, "candidatesTokenCount": 10**30},  # orjson: floats
    {"promptTokenCount": 2**63 - 1, "candidatesTokenCount": 2**63},  # the view's bounds
    {"promptTokenCount": -(2**63), "thoughtsTokenCount": -(2**63) - 1},
    {"promptTokenCount": 1.5, "cachedContentTokenCount": 2.0},
    {"promptTokenCount": True, "candidatesTokenCount": None, "totalTokenCount": "x"},
    {"promptTokenCount": "7"},
    None,
    [],
    "x",
]


class General(GeminiStreamDecoder):
    """Every chunk down the general path, no layouts."""

    fast_text = False

    def on_data(self, data: bytes, events: list[Event]) -> None:
        self._data(data, events)


def _part(rng: random.Random) -> Any:
    text = rng.choice(TEXTS)
    return rng.choice([
        {"text": text},
        {"text": text},
        {"text": text},
        {"text": text, "thought": True},
        {"text": text, "thought": False},
        {"text": text, "thoughtSignature": "c2ln"},
        {"text": text, "thoughtSignature": ""},
        {"functionCall": {"name": "Read", "args": {"path": text}}},
        {"functionCall": None},
        {"text": 5},
        {"text": None},
        {},
        "not a part",
    ])


def _chunk(rng: random.Random) -> Any:
    candidate: dict[str, Any] = {"index": 0}
    if rng.random() < 0.95:
        parts = [_part(rng) for _ in range(rng.choice([1, 1, 1, 1, 2, 0]))]
        candidate["content"] = rng.choice([{"parts": parts, "role": "model"}] * 6 + [
            {"parts": None}, {}, None])
    if rng.random() < 0.2:
        candidate["finishReason"] = rng.choice(["STOP", "MAX_TOKENS", "", None, "SAFETY"])
    chunk: dict[str, Any] = {"candidates": rng.choice([[candidate]] * 8 + [
        [candidate, {"content": {"parts": [{"text": "second"}]}}], [], None])}
    if rng.random() < 0.8:
        chunk["usageMetadata"] = rng.choice(USAGES)
    for key, values in (("modelVersion", ["gemini-x", "", None, 7]),
                        ("responseId", ["r1", "", None, ["r"]])):
        if rng.random() < 0.7:
            chunk[key] = rng.choice(values)
    if rng.random() < 0.05:
        chunk["error"] = rng.choice([None, {"code": 503, "message": "busy",
                                            "status": "UNAVAILABLE"}])
    if rng.random() < 0.05:
        chunk["promptFeedback"] = rng.choice([None, {"blockReason": "SAFETY"}, {}])
    return chunk


def _data(chunk: Any, rng: random.Random) -> bytes:
    # (json, not orjson: it writes integers past 64 bits)
    data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()
    roll = rng.random()
    if roll < 0.03:
        return data[: len(data) // 2]  # cut short: not JSON
    if roll < 0.06:
        # orjson: not JSON. (In a field no view reads, msgspec skips the number unread, as
        # every typed view does: no upstream writes one.)
        return data.replace(b'"promptTokenCount":10', b'"promptTokenCount":1e999')
    if roll < 0.08:
        return b"[" + data + b"]"  # an array around it
    return data


def _decode(decoder: GeminiStreamDecoder, body: bytes, cut: int | None) -> list[Any]:
    try:
        if cut is None:
            events = decoder.feed(body) + decoder.close()
        else:
            events = decoder.feed(body[:cut]) + decoder.feed(body[cut:]) + decoder.close()
    except Exception as exc:  # the same failure either way
        return [type(exc), str(exc)]
    # The ids the decoder makes up when the chunk names none are written alike; errors
    # (which compare by identity) by their repr.
    return [re.sub(r"'(msg|call)_[0-9a-f]+'", r"'\1_'", repr(event)) for event in events]


@pytest.mark.parametrize("seed", range(500))
def test_typed_chunks_give_the_general_events(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [_chunk(rng) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.7:  # a stream that ends well, with the usage of its last chunk
        chunks.append({"candidates": [{"content": {"parts": [{"text": "."}]},
                                       "finishReason": "STOP"}],
                       "usageMetadata": rng.choice(USAGES[:2])})
    end = rng.choice(["\r\n", "\n"])
    body = b"".join(b"data: " + _data(c, rng) + (end * 2).encode() for c in chunks)
    cut = rng.randrange(len(body)) if rng.random() < 0.5 else None
    fast = _decode(GeminiStreamDecoder(REQUEST, Reuse()), body, cut)
    general = _decode(General(REQUEST, Reuse()), body, cut)
    assert fast == general
