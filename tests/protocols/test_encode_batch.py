"""The Chat Completions and Gemini stream encoders write a read's run of text deltas in one
go (`encode_batch`, protocols/text_run.py) and a text delta from kept bytes around its text:
both must write exactly what the general path writes, event by event and from the dict."""

from __future__ import annotations

import random
import re

import pytest

from babelgate.canonical import (
    Event,
    GatewayError,
    Message,
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
    Usage,
)
from babelgate.protocols import get_codec
from babelgate.protocols.gemini.stream_encode import GeminiStreamEncoder

TEXTS = ["", "a", " word", ' "q",', "\\", '","', '"', "\u00e9\U0001f600", "line\n\ttab",
         "\x01", "%d %b", "</script>", "\u2028"]
CLIENTS = ["openai", "gemini"]


def _request(include_usage: bool) -> Request:
    return Request(model="client-model", messages=(Message("user", (Text("hi"),)),),
                   stream=True, include_usage=include_usage)


def _events(rng: random.Random) -> list[Event]:
    """A stream's events: text (runs of it, empty texts and escapes among them), thinking
    with its signature, tool calls, usage, maybe an error, maybe no start."""
    model = rng.choice(["gemini-x", "m \"q\" \\", "\u00e9"])
    events: list[Event] = [MessageStart(id=rng.choice(["r1", "msg_\"x\""]), model=model,
                                        usage=Usage(input_tokens=3))]
    for index in range(rng.randint(1, 4)):
        kind = rng.choice(["text", "text", "reasoning", "call"])
        if kind == "text":
            pieces = [rng.choice(TEXTS) for _ in range(rng.randint(0, 12))]
            events += [PartStart(index, Text("")), *(TextDelta(index, t) for t in pieces),
                       PartStop(index, Text("".join(pieces)))]
        elif kind == "reasoning":
            pieces = [rng.choice(TEXTS) for _ in range(rng.randint(0, 5))]
            events += [PartStart(index, Reasoning()),
                       *(ReasoningDelta(index, t) for t in pieces),
                       PartStop(index, Reasoning(text="".join(pieces), signature="sig"))]
        else:
            call = ToolCall(f"call_{index}", "shell", {"command": ["ls"]})
            events += [PartStart(index, ToolCall(f"call_{index}", "shell")),
                       ToolArgsDelta(index, '{"command":["ls"]}'), PartStop(index, call)]
    if rng.random() < 0.2:
        events.insert(rng.randrange(1, len(events)),
                      StreamError(GatewayError("overloaded", "busy", status=529)))
    events += [MessageDelta("end_turn", Usage(input_tokens=3, output_tokens=9)), MessageStop()]
    if rng.random() < 0.15:
        events = events[1:]  # no start (it breaks the contract): still written the same
    if rng.random() < 0.15:
        events.insert(rng.randrange(0, len(events)),  # a second start: new id and model
                      MessageStart(id="r2", model="other", usage=Usage()))
    return events


def _reads(events: list[Event], rng: random.Random) -> list[list[Event]]:
    """`events` cut into the batches reads of an upstream would make (often all at once)."""
    if rng.random() < 0.3:
        return [events]
    cuts = sorted(rng.sample(range(1, len(events)), rng.randint(0, min(4, len(events) - 1))))
    return [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]


def _same_time(raw: bytes) -> bytes:
    return re.sub(rb'"created":\d+', b'"created":0', raw)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("seed", range(80))
def test_encode_batch_writes_what_encode_writes(client: str, seed: int) -> None:
    rng = random.Random(seed)
    request = _request(include_usage=rng.random() < 0.5)
    batches = _reads(_events(rng), rng)
    codec = get_codec(client)
    one, batched = codec.stream_encoder(request), codec.stream_encoder(request)
    expected = b"".join(one.encode(event) for batch in batches for event in batch)
    assert _same_time(b"".join(map(batched.encode_batch, batches))) == _same_time(expected)


def test_a_text_orjson_refuses_fails_as_one_event_at_a_time() -> None:
    """A lone surrogate in a run: encode_batch raises what encode raises."""
    events: list[Event] = [MessageStart(id="r", model="m", usage=Usage()),
                           PartStart(0, Text(""))]
    events += [TextDelta(0, "a"), TextDelta(0, "\ud800"), TextDelta(0, "b")]
    for client in CLIENTS:
        encoder = get_codec(client).stream_encoder(_request(include_usage=False))
        with pytest.raises(TypeError) as batched:
            encoder.encode_batch(events)
        encoder = get_codec(client).stream_encoder(_request(include_usage=False))
        with pytest.raises(TypeError) as one:
            for event in events:
                encoder.encode(event)
        assert str(batched.value) == str(one.value)


@pytest.mark.parametrize("seed", range(20))
def test_gemini_text_chunks_are_the_general_chunks(seed: int) -> None:
    """A Gemini client's text or thought chunk, written from its kept bytes, is the chunk the
    general path builds from the dict, whatever the id, model and text."""
    rng = random.Random(seed)
    encoder = GeminiStreamEncoder(_request(include_usage=False))
    for _ in range(10):
        if rng.random() < 0.3:
            encoder.encode(MessageStart(id=rng.choice(["", "r1", "\"\\"]),
                                        model=rng.choice(["", "m", "\u00e9 %s"]), usage=Usage()))
        text = "".join(rng.choice(TEXTS) for _ in range(rng.randint(0, 3)))
        assert encoder.encode(TextDelta(0, text)) == encoder._chunk([{"text": text}])
        assert encoder.encode(ReasoningDelta(0, text)) == encoder._chunk(
            [{"text": text, "thought": True}])


class _LabelledStop(PartStop):
    """An event of a subclass of a kind the encoders write (a caller's own, say)."""


class _LabelledEnd(MessageDelta):
    pass


@pytest.mark.parametrize("client", CLIENTS)
def test_an_event_of_a_subclass_is_written_as_its_kind(client: str) -> None:
    """The encoders find an event's writer by its own type; one of a subclass of a kind
    they write is written as that kind, byte for byte."""
    call = ToolCall("call_1", "shell", {"command": ["ls"]})
    start = MessageStart(id="r1", model="m", usage=Usage(input_tokens=3))
    plain = [start, PartStart(0, ToolCall("call_1", "shell")),
             ToolArgsDelta(0, '{"command":["ls"]}'), PartStop(0, call),
             MessageDelta("tool_use", Usage(input_tokens=3, output_tokens=9)), MessageStop()]
    labelled = [*plain[:3], _LabelledStop(0, call),
                _LabelledEnd("tool_use", Usage(input_tokens=3, output_tokens=9)), MessageStop()]
    written = []
    for events in (plain, labelled):
        encoder = get_codec(client).stream_encoder(_request(include_usage=True))
        written.append(b"".join(encoder.encode(event) for event in events))
    assert written[0] == written[1]
    assert b"shell" in written[1]
