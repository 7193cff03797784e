"""The CLI's recorded stream-json output as canonical events, and those events in every
client protocol; the chunking modes; what a request sends the CLI. No CLI runs here: the
fixtures were recorded from Claude Code 2.1.329 against tests/fakes/anthropic.py (a plain
turn with thinking, and a turn where the CLI ran its Bash tool between two API calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from babelgate.canonical import (
    GatewayError,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Request,
    TextDelta,
    ToolCall,
)
from babelgate.canonical.model import Image, Message, Reasoning, Text
from babelgate.canonical.stream import Accumulator, Event
from babelgate.claude_code.chunking import Chunker
from babelgate.claude_code.events import TurnReader
from babelgate.claude_code.prompt import new_turn, system_prompt, whole_conversation
from babelgate.protocols import get_codec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "claude_code"


def lines(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FIXTURES / name).read_bytes().splitlines()]


def read_turn(name: str, chunking: Any = "token") -> tuple[TurnReader, list[Event]]:
    reader = TurnReader("claude-sonnet-4-5", chunking)
    events: list[Event] = []
    for line in lines(name):
        events += reader.feed(line)
    return reader, events


def test_plain_turn_becomes_one_message_with_thinking_text_and_usage() -> None:
    reader, events = read_turn("turn_thinking_text.jsonl")
    assert isinstance(events[0], MessageStart) and events[0].model == "claude-sonnet-4-5"
    assert isinstance(events[-1], MessageStop)
    delta = events[-2]
    assert isinstance(delta, MessageDelta) and delta.stop_reason == "end_turn"
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (7480, 16)
    folded = Accumulator()
    for event in events:
        folded.feed(event)
    response = folded.response()
    reasoning, text = response.parts
    assert isinstance(reasoning, Reasoning) and reasoning.text.startswith("The user wants")
    assert reasoning.signature  # the upstream's, passed on
    assert text == Text("Fake reply.")
    assert reader.result is not None and reader.result.cost_usd == pytest.approx(0.02268)
    assert reader.session_id == "d83993a8-6010-4c2e-b2fc-b66ec62a8cee"


def test_the_clis_own_tool_calls_stay_inside_and_both_api_calls_make_one_message() -> None:
    _, events = read_turn("turn_bash_tool.jsonl")
    assert sum(isinstance(e, MessageStart) for e in events) == 1
    starts = [e for e in events if isinstance(e, PartStart)]
    assert [s.index for s in starts] == [0, 1, 2]  # thinking, thinking, text: renumbered
    assert not any(isinstance(e, PartStart) and isinstance(e.part, ToolCall) for e in events)
    stops = [e.part for e in events if isinstance(e, PartStop)]
    assert isinstance(stops[-1], Text)
    assert stops[-1].text.startswith("The command printed: tok-recorded123")


def test_an_error_result_is_the_clients_error_with_the_upstreams_status() -> None:
    reader = TurnReader("m")
    with pytest.raises(GatewayError) as caught:
        reader.feed({"type": "result", "subtype": "success", "is_error": True,
                     "api_error_status": 429, "result": "API Error: 429 rate limited"})
    assert caught.value.status == 429 and caught.value.kind == "rate_limit"
    assert "rate limited" in caught.value.message


@pytest.mark.parametrize("client", ["anthropic", "openai", "openai-responses", "gemini"])
@pytest.mark.parametrize("stream", [True, False])
def test_every_client_protocol_encodes_the_turn(client: str, stream: bool) -> None:
    # `message` chunking: the answer in one delta, so the token is whole in the stream too.
    _, events = read_turn("turn_bash_tool.jsonl", "message")
    request = Request(model="claude-sonnet-4-5",
                      messages=(Message("user", (Text("hi"),)),), stream=stream)
    codec = get_codec(client)
    if stream:
        encoder = codec.stream_encoder(request)
        body = b"".join(encoder.encode(event) for event in events)
    else:
        folded = Accumulator()
        for event in events:
            folded.feed(event)
        body = orjson.dumps(codec.render_response(folded.response(), request))
    assert b"tok-recorded123" in body
    assert b"Bash" not in body  # the CLI's tool call is not offered to the client


@pytest.mark.parametrize(("mode", "expected"), [
    ("token", ["Hel", "lo wor", "ld. How", " are", " you?\nFine"]),
    ("word", ["", "Hello ", "world. ", "How ", "are you?\n"]),
    ("sentence", ["", "", "Hello world. ", "", "How are you?\n"]),
    ("message", ["", "", "", "", ""]),
])
def test_chunking_cuts_text_at_the_modes_boundaries(mode: Any, expected: list[str]) -> None:
    pieces = ["Hel", "lo wor", "ld. How", " are", " you?\nFine"]
    chunker = Chunker(mode)
    assert [chunker.feed(piece) for piece in pieces] == expected
    assert "".join(expected) + chunker.flush() == "".join(pieces)  # nothing lost or doubled


def test_chunking_applies_to_the_text_deltas_of_a_turn() -> None:
    _, by_token = read_turn("turn_bash_tool.jsonl", "token")
    _, by_message = read_turn("turn_bash_tool.jsonl", "message")
    token_deltas = [e.text for e in by_token if isinstance(e, TextDelta)]
    message_deltas = [e.text for e in by_message if isinstance(e, TextDelta)]
    assert len(token_deltas) > 1 and len(message_deltas) == 1
    assert "".join(token_deltas) == message_deltas[0]


CONVERSATION = Request(
    model="m",
    system=(Text("Answer in French."),),
    messages=(
        Message("user", (Text("first question"),)),
        Message("assistant", (Text("first answer"),)),
        Message("user", (Text("look at this"), Image(media_type="image/png", data="iVBOR"))),
    ),
)


def test_a_session_turn_sends_only_the_new_user_message_with_its_image() -> None:
    assert new_turn(CONVERSATION) == [
        {"type": "text", "text": "look at this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBOR"}},
    ]
    assert system_prompt(CONVERSATION) == "Answer in French."


def test_a_one_off_sends_the_history_as_a_transcript_before_the_new_turn() -> None:
    blocks = whole_conversation(CONVERSATION)
    assert "User: first question" in blocks[0]["text"]
    assert "Assistant: first answer" in blocks[0]["text"]
    assert blocks[1:] == new_turn(CONVERSATION)
    single = Request(model="m", messages=(Message("user", (Text("hi"),)),))
    assert whole_conversation(single) == [{"type": "text", "text": "hi"}]


def test_a_conversation_ending_with_the_assistant_is_refused() -> None:
    ending = Request(model="m", messages=(Message("user", (Text("q"),)),
                                          Message("assistant", (Text("a"),))))
    with pytest.raises(GatewayError) as caught:
        new_turn(ending)
    assert caught.value.status == 400


def test_a_turns_cost_is_its_own_not_the_resumed_sessions_total() -> None:
    reader = TurnReader("m")
    reader.feed({"type": "result", "subtype": "success", "is_error": False,
                 "total_cost_usd": 0.165363, "usage": {"input_tokens": 8107},
                 "model_usage_since_last_result": {"claude-sonnet-4-5": {"costUSD": 0.024561}}})
    assert reader.result is not None and reader.result.cost_usd == pytest.approx(0.024561)
