"""Gemini SSE streams -> canonical events, fed in random splits, checked against the event
contract of canonical/stream.py; and the encoder's stream read back by the decoder."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from msgspec.structs import replace
from tests.protocols.contract import check_stream_contract

from babelgate.canonical import (
    Accumulator,
    Event,
    GatewayError,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    Request,
    Response,
    SignatureDelta,
    StreamError,
    Text,
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.gemini import codec
from babelgate.protocols.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
SEARCH = "mcp__my server/search"
STREAMS = sorted(p.name for p in FIXTURES.glob("*.sse"))


def request() -> Request:
    return Request(
        model="gemini-x",
        messages=(Message("user", (Text("go"),)),),
        tools=(Tool(name="Read"), Tool(name=SEARCH)),
        stream=True,
    )


def decode(body: bytes, seed: int | None = None) -> list[Event]:
    decoder = codec.stream_decoder(request())
    events: list[Event] = []
    if seed is None:
        events += decoder.feed(body)
    else:
        rng = random.Random(seed)
        start = 0
        while start < len(body):
            end = start + rng.randint(1, 40)
            events += decoder.feed(body[start:end])
            start = end
    events += decoder.close()
    return events


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def accumulate(events: list[Event]) -> Response:
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    return acc.response()


def comparable(events: list[Event]) -> list[object]:
    """Events with the generated parts made comparable: made-up call ids, error objects."""
    out: list[object] = []
    for event in events:
        if isinstance(event, StreamError):
            out.append(("error", event.error.kind, event.error.message, event.error.status))
        elif isinstance(event, PartStart | PartStop) and isinstance(event.part, ToolCall):
            part = event.part
            out.append((type(event).__name__, part.name, part.arguments, part.provider_metadata))
        else:
            out.append(event)
    return out


@pytest.mark.parametrize("name", STREAMS)
def test_any_split_gives_the_same_events(name: str) -> None:
    whole = decode(fixture(name))
    check_stream_contract(whole)
    for seed in range(12):
        assert comparable(decode(fixture(name), seed)) == comparable(whole)


def test_thoughts_then_text_stream_as_deltas_with_usage() -> None:
    events = decode(fixture("gemini25_stream_thoughts_text.sse"), seed=3)
    start = events[0]
    assert isinstance(start, MessageStart)
    assert start.id == "stream-25-a" and start.model == "gemini-2.5-flash"
    assert start.usage.input_tokens == 1024 and start.usage.cache_read_tokens == 4096
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "MessageStart",
        "PartStart",
        "ReasoningDelta",
        "ReasoningDelta",
        "PartStop",
        "PartStart",
        "TextDelta",
        "TextDelta",
        "PartStop",
        "MessageDelta",
        "MessageStop",
    ]
    response = accumulate(events)
    thought, text = response.parts
    assert isinstance(thought, Reasoning) and thought.origin == "gemini"
    assert thought.text.endswith("so I need `sorted()` here.")
    assert text == Text(
        "The test fails because `items` is returned unsorted. Wrap it in `sorted()` — «fixed»."
    )
    assert response.stop_reason == "end_turn"
    assert response.usage == Usage(
        input_tokens=1024, output_tokens=24 + 175, cache_read_tokens=4096, reasoning_tokens=175
    )


def test_signed_thought_text_and_whole_function_calls() -> None:
    events = decode(fixture("gemini3_stream_tool_calls.sse"), seed=7)
    signatures = [e for e in events if isinstance(e, SignatureDelta)]
    assert [s.signature for s in signatures] == ["EpQFsigOnThought=="]
    args = [orjson.loads(e.json) for e in events if isinstance(e, ToolArgsDelta)]
    assert args == [{"file_path": "/repo/src/app.py"}, {"q": 'fixture "quoted"'}]
    starts = [e.part for e in events if isinstance(e, PartStart)]
    assert isinstance(starts[2], ToolCall) and starts[2].arguments == {}
    response = accumulate(events)
    thought, text, first, second = response.parts
    assert isinstance(thought, Reasoning) and thought.signature == "EpQFsigOnThought=="
    assert text == Text("Let me read them.")
    assert isinstance(first, ToolCall) and isinstance(second, ToolCall)
    assert first.provider_metadata == {"thought_signature": "EpQFCpEFAdHtim9G3sigFIRSTcallONLY=="}
    assert second.provider_metadata is None
    assert second.name == SEARCH
    assert response.stop_reason == "tool_use"
    assert response.usage.output_tokens == 96 + 184


def test_streamed_text_signature_returns_to_the_text() -> None:
    response = accumulate(decode(fixture("gemini3_stream_text_signature.sse"), seed=1))
    assert list(response.parts) == [
        Text("All tests pass now."),
        Reasoning(text="", signature="EqkCsigOnLastTextChunk==", origin="gemini"),
    ]
    asked = request()
    follow_up = replace(asked, messages=(
        *asked.messages, Message("assistant", response.parts), Message("user", (Text("ok"),))
    ))
    model = codec.render_request(follow_up, Quirks())["contents"][1]
    assert model["parts"] == [
        {"text": "All tests pass now.", "thoughtSignature": "EqkCsigOnLastTextChunk=="}
    ]


@pytest.mark.parametrize(
    ("name", "stop"), [("stream_max_tokens.sse", "max_tokens"), ("stream_safety.sse", "refusal")]
)
def test_stop_reasons(name: str, stop: str) -> None:
    assert accumulate(decode(fixture(name), seed=5)).stop_reason == stop


def test_error_chunk_ends_the_stream_with_its_error() -> None:
    events = decode(fixture("stream_error_chunk.sse"), seed=2)
    last = events[-1]
    assert isinstance(last, StreamError)
    assert last.error.kind == "overloaded" and last.error.status == 503
    assert "overloaded" in last.error.message
    assert not any(isinstance(e, MessageDelta | MessageStop) for e in events)


@pytest.mark.parametrize("cut", [0, 40, 150])
def test_truncated_stream_is_an_error_not_a_silent_stop(cut: int) -> None:
    body = fixture("stream_truncated.sse")
    for data in (body, body[: len(body) - cut] if cut else body):
        events = decode(data, seed=cut)
        assert isinstance(events[-1], StreamError)
        assert "ended" in events[-1].error.message
        assert events[-1].error.retryable
        with pytest.raises(GatewayError):
            accumulate(events)


def test_malformed_function_call_in_a_stream_is_an_error() -> None:
    chunk = {"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}]}
    events = decode(b"data: " + orjson.dumps(chunk) + b"\n\n")
    assert isinstance(events[-1], StreamError) and events[-1].error.retryable


@pytest.mark.parametrize("name", [n for n in STREAMS if "error" not in n and "truncated" not in n])
def test_encoder_stream_reads_back_the_same(name: str) -> None:
    """Gemini upstream -> Gemini client: what the encoder writes, the decoder reads back to
    the same response (text, thoughts, calls, signatures, stop reason, usage)."""
    events = decode(fixture(name))
    encoder = codec.stream_encoder(request())
    body = b"".join(encoder.encode(e) for e in events)
    for sse_event in SSEDecoder().feed(body):
        assert isinstance(orjson.loads(sse_event.data), dict)  # each line a whole chunk
    original, again = accumulate(events), accumulate(decode(body, seed=11))
    assert again.parts == original.parts or _same_calls(again, original)
    assert again.stop_reason == original.stop_reason
    assert again.usage == original.usage
    assert again.id == original.id


def _same_calls(a: Response, b: Response) -> bool:
    """Calls without a Gemini id get fresh ids on each decode; compare everything else."""

    def strip(parts: list[object]) -> list[object]:
        return [
            (p.name, p.arguments, (p.provider_metadata or {}).get("thought_signature"))
            if isinstance(p, ToolCall)
            else p
            for p in parts
        ]

    return strip(list(a.parts)) == strip(list(b.parts))


def test_encoder_renders_errors_as_google_error_chunks() -> None:
    encoder = codec.stream_encoder(request())
    out = encoder.encode(StreamError(GatewayError("rate_limit", "slow down")))
    assert out.startswith(b"data: ")
    assert orjson.loads(out[6:]) == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }


def test_blocked_prompt_stream_is_a_refusal() -> None:
    chunk = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
    }
    events = decode(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n", seed=4)
    check_stream_contract(events)
    response = accumulate(events)
    assert response.stop_reason == "refusal" and list(response.parts) == []
    assert response.usage.input_tokens == 12


def test_bare_thought_signature_after_text_stays_a_thought() -> None:
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}]},
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "", "thought": True, "thoughtSignature": "S"}]},
                    "finishReason": "STOP",
                }
            ]
        },
    ]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    response = accumulate(decode(body, seed=9))
    asked = request()
    follow_up = replace(asked, messages=(
        *asked.messages, Message("assistant", response.parts), Message("user", (Text("ok"),))
    ))
    model = codec.render_request(follow_up, Quirks())["contents"][1]["parts"]
    assert model == [{"text": "Hi"}, {"text": "", "thought": True, "thoughtSignature": "S"}]
