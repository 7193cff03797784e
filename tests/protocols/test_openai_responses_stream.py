"""OpenAI Responses codec: the stream decoder over recorded upstream streams (split at random
points), and the stream encoder checked event by event and through the official SDK."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the transport package the installed openai SDK is built on
import openai
import pytest
from tests.protocols.contract import check_stream_contract

from babelgate.canonical import (
    Accumulator,
    Event,
    GatewayError,
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
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.protocols import get_codec
from babelgate.protocols.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses"
codec = get_codec("openai-responses")
GEMINI_SIGNATURE = "CiQB0e2Kb5+dX3ZsQpTUMrr6N4Q6d8pXx9u4Qm2aVb0kYvq1cU8="
PATCH = (
    "*** Begin Patch\n*** Update File: src/parser.py\n@@\n-    return None\n+    return []\n"
    "*** End Patch\n"
)


def upstream_request() -> Request:
    return Request(
        model="gpt-5.1-codex",
        messages=(),
        stream=True,
        tools=(Tool(name="exec_command"), Tool(name="apply_patch", kind="custom")),
    )


def decode(name: str, seed: int | None = None) -> list[Event]:
    """Feed a recorded stream to a fresh decoder, in one piece or in random small chunks."""
    body = (FIXTURES / name).read_bytes()
    decoder = codec.stream_decoder(upstream_request())
    events: list[Event] = []
    if seed is None:
        events += decoder.feed(body)
    else:
        rng = random.Random(seed)
        at = 0
        while at < len(body):
            size = rng.randint(1, 40)
            events += decoder.feed(body[at : at + size])
            at += size
    return events + decoder.close()


# ---------------------------------------------------------------- decoder


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_decoder_full_stream_any_split(seed: int | None) -> None:
    events = decode("stream_reasoning_text_tools.sse", seed)
    assert events == decode("stream_reasoning_text_tools.sse")  # splits never matter
    check_stream_contract(events)
    assert events[0] == MessageStart(
        id="resp_68f1c2d3e4b5a6978812aa34bc56de78", model="gpt-5.1-codex"
    )
    assert isinstance(events[-2], MessageDelta) and isinstance(events[-1], MessageStop)
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    response = acc.response()
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(
        input_tokens=1056, output_tokens=286, cache_read_tokens=8064, reasoning_tokens=192
    )
    reasoning, text, call, patch = response.parts
    assert isinstance(reasoning, Reasoning)
    assert reasoning.origin == "openai-responses"
    assert reasoning.redacted is not None and reasoning.redacted.startswith("gAAAAABpIBx")
    assert reasoning.summary is not None and len(reasoning.summary) == 2
    assert reasoning.text == "\n\n".join(reasoning.summary)  # deltas, a blank line between parts
    assert text == Text("Let me look at the parser — it's in `src/`.")
    assert call == ToolCall(
        "call_Lm3No4Pq5Rs6Tu7V",
        "exec_command",
        {"cmd": 'rg -n "def parse" src', "yield_time_ms": 1000},
    )
    assert patch == ToolCall(
        "call_Wx8Yz9Ab0Cd1Ef2G", "apply_patch", {"input": PATCH}, kind="custom"
    )


def test_decoder_arguments_come_as_one_delta_at_item_done() -> None:
    events = decode("stream_reasoning_text_tools.sse")
    arg_deltas = [e for e in events if isinstance(e, ToolArgsDelta)]
    assert [e.index for e in arg_deltas] == [2, 3]
    start = next(e for e in events if isinstance(e, PartStart) and isinstance(e.part, ToolCall))
    assert isinstance(start.part, ToolCall) and start.part.arguments == {}
    assert start.part.name == "exec_command"


@pytest.mark.parametrize("seed", [None, 11, 12])
def test_decoder_truncated_stream_is_an_error(seed: int | None) -> None:
    events = decode("stream_truncated.sse", seed)
    assert isinstance(events[-1], StreamError)
    assert events[-1].error.kind == "connection"
    assert "response.completed" in events[-1].error.message
    assert not any(isinstance(e, MessageStop | MessageDelta) for e in events)


def test_decoder_incomplete_is_max_tokens() -> None:
    events = decode("stream_incomplete.sse", 5)
    check_stream_contract(events)
    delta = events[-2]
    assert isinstance(delta, MessageDelta)
    assert delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 64
    stop = events[-3]
    assert isinstance(stop, PartStop) and stop.part == Text("The three main causes are: first, the")


def test_decoder_failed_is_a_rate_limit_error() -> None:
    events = decode("stream_failed.sse", 9)
    assert isinstance(events[0], MessageStart)
    assert isinstance(events[-1], StreamError)
    error = events[-1].error
    assert error.kind == "rate_limit" and error.retryable
    assert "try again in 1.4s" in error.message


def test_decoder_error_event_before_anything() -> None:
    decoder = codec.stream_decoder(upstream_request())
    events = decoder.feed(
        b'event: error\ndata: {"type":"error","code":"server_is_overloaded","message":"busy",'
        b'"param":null,"sequence_number":0}\n\n'
    )
    events += decoder.close()
    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert events[0].error.kind == "overloaded"


def test_decoder_item_done_without_deltas() -> None:
    """Some Responses-compatible servers send only output_item.done with the full item."""
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi"}],
    }
    lines = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "m"}},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}},
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in lines)
    decoder = codec.stream_decoder(upstream_request())
    events = decoder.feed(body) + decoder.close()
    check_stream_contract(events)
    assert events[1:4] == [PartStart(0, Text("")), TextDelta(0, "hi"), PartStop(0, Text("hi"))]
    assert isinstance(events[-2], MessageDelta) and events[-2].stop_reason == "end_turn"


# ---------------------------------------------------------------- encoder


def client_request() -> Request:
    return codec.parse_request(
        {
            "model": "gemini-3-pro",
            "input": "fix the test",
            "stream": True,
            "tools": [
                {
                    "type": "function",
                    "name": "shell",
                    "parameters": {"type": "object", "properties": {}},
                },
                {"type": "custom", "name": "apply_patch"},
            ],
        }
    )


def canonical_events() -> list[Event]:
    call = ToolCall(
        "call_g1",
        "shell",
        {"command": ["pytest"]},
        provider_metadata={"thought_signature": GEMINI_SIGNATURE},
    )
    custom = ToolCall("call_g2", "apply_patch", {"input": PATCH}, kind="custom")
    thinking = Reasoning(text="Think first.", signature="sig-abc", origin="anthropic")
    return [
        MessageStart(id="msg_01", model="gemini-3-pro", usage=Usage(input_tokens=10)),
        PartStart(0, Reasoning()),
        ReasoningDelta(0, "Think "),
        ReasoningDelta(0, "first."),
        PartStop(0, thinking),
        PartStart(1, Text("")),
        TextDelta(1, "Running "),
        TextDelta(1, "tests."),
        PartStop(1, Text("Running tests.")),
        PartStart(2, ToolCall("call_g1", "shell")),
        ToolArgsDelta(2, '{"command":'),
        ToolArgsDelta(2, '["pytest"]}'),
        PartStop(2, call),
        PartStart(3, ToolCall("call_g2", "apply_patch", kind="custom")),
        ToolArgsDelta(3, json.dumps({"input": PATCH})),
        PartStop(3, custom),
        MessageDelta("tool_use", Usage(input_tokens=100, output_tokens=50, cache_read_tokens=900)),
        MessageStop(),
    ]


def encode(events: list[Event], request: Request | None = None) -> bytes:
    encoder = codec.stream_encoder(request or client_request())
    return b"".join(encoder.encode(e) for e in events)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for sse in SSEDecoder().feed(raw):
        data = json.loads(sse.data)
        assert sse.event == data["type"]  # every event names its type on the event: line
        out.append(data)
    return out


def test_encoder_event_sequence() -> None:
    events = sse_events(encode(canonical_events()))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_encoder_items_and_final_response() -> None:
    events = sse_events(encode(canonical_events()))
    created, final = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert final["id"] == created["id"] and final["id"].startswith("resp_")
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert final["output"] == done
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [
        0,
        1,
        2,
        3,
    ]
    reasoning, message, call, custom = done
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Think first."}]
    assert reasoning["encrypted_content"].startswith("bg1.")
    assert message["content"][0]["text"] == "Running tests."
    assert json.loads(call["arguments"]) == {"command": ["pytest"]}
    assert call["call_id"].startswith("call_g1__bg1_")
    assert custom["input"] == PATCH
    assert final["usage"]["input_tokens"] == 1000
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 900
    assert final["usage"]["total_tokens"] == 1050
    # the item a client sees added carries the same call id as the finished one
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[2]["call_id"] == call["call_id"] and added[2]["arguments"] == ""


def test_encoder_stream_error_ends_with_response_failed() -> None:
    events = [
        *canonical_events()[:8],
        StreamError(GatewayError("rate_limit", "Too many requests", retry_after=2.5)),
        MessageStop(),  # nothing is written after the failure
    ]
    out = sse_events(encode(events))
    assert out[-1]["type"] == "response.failed"
    failed = out[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "rate_limit_exceeded"
    assert "try again in 2.5s" in failed["error"]["message"]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))


def test_encoder_error_before_start_still_opens_the_response() -> None:
    out = sse_events(encode([StreamError(GatewayError("invalid_request", "context too long"))]))
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert out[-1]["response"]["error"]["code"] == "invalid_prompt"


def test_encoder_max_tokens_ends_incomplete() -> None:
    events: list[Event] = [
        MessageStart(id="x", model="m"),
        PartStart(0, Text("")),
        TextDelta(0, "cut"),
        PartStop(0, Text("cut")),
        MessageDelta("max_tokens", Usage(output_tokens=5)),
        MessageStop(),
    ]
    out = sse_events(encode(events))
    assert out[-1]["type"] == "response.incomplete"
    assert out[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_openai_sdk_accumulates_the_encoded_stream() -> None:
    """The official SDK's Responses stream helper reads our stream end to end."""
    body = encode(canonical_events())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.responses.stream(model="gemini-3-pro", input="fix the test") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.status == "completed"
    assert final.output_text == "Running tests."
    kinds = [item.type for item in final.output]
    assert kinds == ["reasoning", "message", "function_call", "custom_tool_call"]
    assert final.usage is not None and final.usage.output_tokens == 50


def test_decoded_upstream_stream_reencoded_for_codex() -> None:
    """OpenAI upstream stream -> canonical -> Codex stream: items and reasoning survive."""
    decoded = decode("stream_reasoning_text_tools.sse", 3)
    out = sse_events(encode(decoded))
    final = out[-1]["response"]
    assert out[-1]["type"] == "response.completed"
    reasoning = final["output"][0]
    original = json.loads(
        next(
            line[6:]
            for line in (FIXTURES / "stream_reasoning_text_tools.sse").read_text().splitlines()
            if line.startswith("data: ") and '"response.completed"' in line
        )
    )["response"]
    assert reasoning["encrypted_content"] == original["output"][0]["encrypted_content"]
    assert reasoning["summary"] == original["output"][0]["summary"]
    assert [i["type"] for i in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert final["output"][2]["call_id"] == "call_Lm3No4Pq5Rs6Tu7V"
    assert final["usage"]["input_tokens"] == original["usage"]["input_tokens"]


# ------------------------------------------------------------------ a read's events at once


def _same_ids(raw: bytes) -> bytes:
    """`raw` with the ids and the time the encoder makes up written alike."""
    raw = re.sub(rb'"(msg|rs|fc|ctc|tsc|resp)_[0-9a-f]+"', rb'"\1_"', raw)
    return re.sub(rb'"created_at":\d+', b'"created_at":0', raw)


def _reads(events: list[Event], rng: random.Random) -> list[list[Event]]:
    """`events` cut into the batches reads of an upstream would make."""
    cuts = sorted(rng.sample(range(1, len(events)), rng.randint(0, min(4, len(events) - 1))))
    return [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]


def _both_ways(batches: list[list[Event]]) -> None:
    one, batched = codec.stream_encoder(client_request()), codec.stream_encoder(client_request())
    expected = b"".join(one.encode(event) for batch in batches for event in batch)
    assert _same_ids(b"".join(map(batched.encode_batch, batches))) == _same_ids(expected)


@pytest.mark.parametrize("seed", range(60))
def test_encode_batch_writes_what_encode_writes(seed: int) -> None:
    """A batch of events (a run of text deltas among them, or two, or one) is written as
    encode writes each event: text, empty texts, thinking with its signature, tool calls,
    usage, an error in the middle of the stream, cut into reads anywhere."""
    rng = random.Random(seed)
    texts = ["", "a", ' "q",', "\\", '","', "\u00e9\U0001f600", "line\n", "%d %b"]
    events: list[Event] = [MessageStart(id="msg_01", model="m", usage=Usage(input_tokens=3))]
    for index in range(rng.randint(1, 4)):
        kind = rng.choice(["text", "text", "reasoning", "call"])
        if kind == "text":
            pieces = [rng.choice(texts) for _ in range(rng.randint(0, 12))]
            events += [PartStart(index, Text("")), *(TextDelta(index, t) for t in pieces),
                       PartStop(index, Text("".join(pieces)))]
        elif kind == "reasoning":
            events += [PartStart(index, Reasoning()), ReasoningDelta(index, "hm"),
                       TextDelta(index, "stray"), TextDelta(index, "text"),
                       PartStop(index, Reasoning(text="hm", signature="sig",
                                                 origin="anthropic"))]
        else:
            call = ToolCall("call_1", "shell", {"command": ["ls"]})
            events += [PartStart(index, ToolCall("call_1", "shell")),
                       ToolArgsDelta(index, '{"command":["ls"]}'), PartStop(index, call)]
    if rng.random() < 0.3:
        events.insert(rng.randrange(1, len(events)),
                      StreamError(GatewayError("overloaded", "busy", status=529)))
    events += [MessageDelta("end_turn", Usage(input_tokens=3, output_tokens=9)), MessageStop()]
    if seed % 5 == 0:
        events = events[1:]  # no start: the encoder opens the response itself
    if seed % 7 == 0:
        events.append(MessageStop())  # nothing is written after the end
    if seed % 3 == 1:  # out of order: a part that stops without its start, a second start
        starts = [at for at, event in enumerate(events) if type(event) is PartStart]
        del events[rng.choice(starts)]
        events.insert(rng.randrange(1, len(events)),
                      MessageStart(id="msg_02", model="m2", usage=Usage(input_tokens=4)))
    _both_ways(_reads(events, rng))


def test_encode_batch_past_the_kept_sequence_numbers() -> None:
    """A run of text deltas whose sequence numbers pass those the encoder keeps made."""
    deltas = [TextDelta(0, f"w{n} ") for n in range(5000)]
    events: list[Event] = [MessageStart(id="msg_01", model="m", usage=Usage()),
                           PartStart(0, Text("")), *deltas, PartStop(0, Text("")), MessageStop()]
    _both_ways([events[:3000], events[3000:4090], events[4090:]])
