"""The client stream encoders (Anthropic, OpenAI Chat, OpenAI Responses) must keep writing
exactly the bytes they wrote before their hot paths were rewritten as byte templates.

`tests/fixtures/stream_encoders.jsonl.gz` holds what the encoders wrote, before that
rewrite, for random canonical event streams made by `_events(seed)` below: text, whitespace
and empty deltas, reasoning of every origin (with signatures, redacted, bare), tool calls of
both kinds, usage, every stop reason, errors mid-stream, events after the end. Each case
replays its stream through today's encoder and compares the bytes, made-up ids and
timestamps aside. Regenerate only on purpose (a deliberate change of the wire output), with
`python -m tests.protocols.test_stream_encoders_golden`.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from pathlib import Path

import orjson
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
    SignatureDelta,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.protocols import get_codec

GOLDEN = Path(__file__).parent.parent / "fixtures" / "stream_encoders.jsonl.gz"
PROTOCOLS = ["anthropic", "openai", "openai-responses"]
SEEDS = range(120)
TEXTS = ["Hello", " world", "", "  ", "\n", ' "q" \\ ', "h\u00e9llo \U0001f600", "\x01\u2028",
         "</a> & b", "x" * 300]
STOPS = ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn",
         "context_window_exceeded", None]
TOOLS = (Tool(name="Read", parameters={"type": "object"}),
         Tool(name="Bash", parameters={"type": "object"}),
         Tool(name="apply_patch", kind="custom"))
_IDS = re.compile(rb'\b(msg|resp|rs|fc|ctc|tsc|call|toolu|chatcmpl)_[0-9a-f]{24}\b')
_TIMES = re.compile(rb'"(created|created_at)":\d+')


def _request(protocol: str, seed: int) -> Request:
    return Request(
        model="client-model",
        messages=(Message("user", (Text("hi"),)),),
        tools=TOOLS if seed % 3 else (),
        stream=True,
        include_usage=seed % 2 == 0,
    )


def _usage(rng: random.Random) -> Usage:
    return Usage(input_tokens=rng.randint(0, 900), output_tokens=rng.randint(0, 90),
                 cache_read_tokens=rng.choice([0, 128]), cache_write_tokens=rng.choice([0, 64]),
                 reasoning_tokens=rng.choice([0, 7]))


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXTS) for _ in range(rng.randint(1, 3)))


def _part(rng: random.Random, index: int) -> list[Event]:
    kind = rng.choice(["text", "text", "reasoning", "tool"])
    if kind == "text":
        pieces = [rng.choice(["", " ", "\n"])] * rng.randint(0, 2)
        pieces += [_text(rng) for _ in range(rng.randint(0, 6))]
        return [PartStart(index, Text("")), *[TextDelta(index, p) for p in pieces],
                PartStop(index, Text("".join(pieces)))]
    if kind == "reasoning":
        origin = rng.choice(["anthropic", "openai", "gemini", None])
        redacted = "UkVE" if origin == "anthropic" and rng.random() < 0.2 else None
        metadata = {"thoughtSignature": "c2ln"} if origin == "gemini" else None
        pieces = [_text(rng) for _ in range(rng.randint(0, 4))]
        signature = rng.choice([None, "sig-1"])
        events: list[Event] = [PartStart(index, Reasoning(origin=origin, redacted=redacted,
                                                          provider_metadata=metadata))]
        events += [ReasoningDelta(index, p) for p in pieces]
        if signature:
            events.append(SignatureDelta(index, signature))
        return [*events, PartStop(index, Reasoning(
            text="".join(pieces), signature=signature, origin=origin, redacted=redacted,
            provider_metadata=metadata))]
    tool = rng.choice(TOOLS)
    arguments = rng.choice([{}, {"path": _text(rng)}, {"input": _text(rng)}])
    call_kind = "custom" if tool.kind == "custom" else "function"
    metadata = rng.choice([None, {"thoughtSignature": "c2ln"}])
    start = ToolCall(id=f"call_{index}", name=tool.name, kind=call_kind,
                     provider_metadata=metadata)
    done = ToolCall(id=f"call_{index}", name=tool.name, arguments=arguments, kind=call_kind,
                    provider_metadata=metadata)
    return [PartStart(index, start), ToolArgsDelta(index, json.dumps(arguments)),
            PartStop(index, done)]


def _events(seed: int) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    if seed % 11:
        events.append(MessageStart(id=rng.choice(["msg_up", "resp_up", "chatcmpl-up", ""]),
                                   model=rng.choice(["upstream-model", ""]), usage=_usage(rng)))
    for index in range(rng.randint(0, 4)):
        events += _part(rng, index)
    events += [MessageDelta(rng.choice(STOPS), _usage(rng), rng.choice([None, "STOP"])),
               MessageStop()]
    if seed % 7 == 0:  # an error somewhere, and whatever still comes after it
        cut = rng.randint(0, len(events))
        error = GatewayError(rng.choice(["api_error", "overloaded", "connection"]), "boom")
        events = [*events[:cut], StreamError(error), *events[cut:]]
    return events


def _encode(protocol: str, seed: int) -> str:
    encoder = get_codec(protocol).stream_encoder(_request(protocol, seed))
    out = b"".join(encoder.encode(event) for event in _events(seed)) + encoder.ping()
    out = _TIMES.sub(rb'"\1":0', _IDS.sub(rb"\1_ID", out))
    return out.decode()


def _golden() -> dict[tuple[str, int], str]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as lines:
        cases = [json.loads(line) for line in lines]
    return {(case["protocol"], case["seed"]): case["out"] for case in cases}


@pytest.fixture(scope="module")
def golden() -> dict[tuple[str, int], str]:
    return _golden()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_encoders_write_what_they_wrote(golden: dict[tuple[str, int], str], protocol: str) -> None:
    for seed in SEEDS:
        assert _encode(protocol, seed) == golden[protocol, seed], seed


def test_responses_text_deltas_past_the_kept_tails() -> None:
    """Sequence numbers past the tails the Responses encoder keeps made (4096): each delta
    is still the event _emit writes (its JSON as orjson gives it back) and they count up."""
    encoder = get_codec("openai-responses").stream_encoder(_request("openai-responses", 0))
    encoder.encode(MessageStart("resp_1", "m"))
    encoder.encode(PartStart(0, Text("")))
    for seq in range(4, 5004):
        out = encoder.encode(TextDelta(0, f"w{seq}"))
        head, data = out.split(b"\ndata: ")
        event = orjson.loads(data)
        assert head == b"event: response.output_text.delta"
        assert data == orjson.dumps(event) + b"\n\n"
        assert (event["delta"], event["sequence_number"]) == (f"w{seq}", seq)


def _write() -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(GOLDEN, "wt", encoding="utf-8") as out:
        for protocol in PROTOCOLS:
            for seed in SEEDS:
                case = {"protocol": protocol, "seed": seed, "out": _encode(protocol, seed)}
                out.write(json.dumps(case) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    _write()
