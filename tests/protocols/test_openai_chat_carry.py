"""Reasoning signatures and call metadata through a Chat Completions client: render_response
(or the stream encoder) -> the client echoes the assistant message and the tool results ->
parse_request restores the Reasoning parts and the calls' provider_metadata exactly."""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson

from babelgate.canonical import (
    Reasoning,
    Request,
    Response,
    Text,
    ToolCall,
    ToolResult,
)
from babelgate.canonical.stream import response_events
from babelgate.protocols.openai_chat import codec

REQUEST = Request(model="claude-client", messages=())
THOUGHT = "The user wants the weather in two cities, so I call get_weather twice."
# Real Anthropic signatures are base64 blobs of a few hundred to a few thousand characters.
ANTHROPIC_SIG = base64.b64encode(os.urandom(1200)).decode()  # 1600 characters
GEMINI_SIG = base64.b64encode(os.urandom(300)).decode()


def _calls(metadata: dict[str, Any] | None = None) -> list[ToolCall]:
    return [
        ToolCall("toolu_01Paris", "get_weather", {"city": "Paris"}, provider_metadata=metadata),
        ToolCall("toolu_02Lyon", "get_weather", {"city": "Lyon"}),
    ]


def _response(*parts: Any) -> Response:
    return Response(id="msg_1", model="claude-up", parts=tuple(parts), stop_reason="tool_use")


def _echo(message: dict[str, Any], *, reasoning: bool = True) -> list[Any]:
    """What a client sends back on the next turn: the assistant message, one tool result
    per call, each answering the call's id exactly as it was received."""
    assistant = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}
    if reasoning and message.get("reasoning_content"):
        assistant["reasoning_content"] = message["reasoning_content"]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": f"sunny {i}"}
               for i, c in enumerate(message["tool_calls"])]
    return [{"role": "user", "content": "Weather in Paris and Lyon?"}, assistant, *results]


def _round_trip(response: Response, *, reasoning: bool = True,
                ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(the assistant parts, the tool results) parse_request gives back."""
    message = codec.render_response(response, REQUEST)["choices"][0]["message"]
    request = codec.parse_request({"model": "m", "messages": _echo(message, reasoning=reasoning)})
    _, assistant, results = request.messages
    return assistant.parts, results.parts


def test_anthropic_signature_comes_back_exactly() -> None:
    thinking = Reasoning(THOUGHT, signature=ANTHROPIC_SIG, origin="anthropic")
    parts, results = _round_trip(_response(thinking, Text("Let me check."), *_calls()))
    assert list(parts) == [thinking, Text("Let me check."), *_calls()]
    assert [r.call_id for r in results] == ["toolu_01Paris", "toolu_02Lyon"]
    assert all(isinstance(r, ToolResult) and r.name == "get_weather" for r in results)


def test_first_id_carries_the_signature_not_the_text() -> None:
    thinking = Reasoning(THOUGHT * 20, signature=ANTHROPIC_SIG, origin="anthropic")
    message = codec.render_response(_response(thinking, *_calls()), REQUEST)["choices"][0][
        "message"]
    first, second = (c["id"] for c in message["tool_calls"])
    assert first.startswith("toolu_01Paris__bg1_")
    # The 1,600-character signature in base64 JSON, not the 1,400-character thought again.
    assert len(ANTHROPIC_SIG) < len(first) < len(ANTHROPIC_SIG) * 4 // 3 + 100
    assert second == "toolu_02Lyon"  # nothing of its own to carry


def test_interleaved_thinking_and_redacted_blocks_keep_their_order() -> None:
    one = Reasoning("First I look at Paris.", signature=sign_of("a"), origin="anthropic")
    hidden = Reasoning("", origin="anthropic", redacted="EmwKAhgBEgy3va3pzix/LafPsn4a")
    two = Reasoning("Then Lyon.", signature=sign_of("b"), origin="anthropic")
    parts, _ = _round_trip(_response(one, hidden, two, *_calls()))
    assert list(parts[:3]) == [one, hidden, two]


def sign_of(seed: str) -> str:
    return base64.b64encode((seed * 200).encode()).decode()


def test_gemini_call_signature_rides_on_its_own_call() -> None:
    thought = Reasoning(THOUGHT, origin="gemini")  # Gemini's thought text has no signature
    calls = [ToolCall("call_a", "get_weather", {"city": "Paris"},
                      provider_metadata={"thought_signature": GEMINI_SIG}),
             ToolCall("call_b", "get_weather", {"city": "Lyon"},
                      provider_metadata={"thought_signature": GEMINI_SIG[::-1]})]
    parts, results = _round_trip(_response(thought, *calls))
    assert list(parts) == [Reasoning(THOUGHT, origin="openai"), *calls]
    assert [r.call_id for r in results] == ["call_a", "call_b"]


def test_without_echoed_reasoning_the_signed_text_is_dropped_not_forged() -> None:
    thinking = Reasoning(THOUGHT, signature=ANTHROPIC_SIG, origin="anthropic")
    hidden = Reasoning("", origin="anthropic", redacted="EmwKAhgBEgy3va3pzix")
    calls = _calls({"thought_signature": GEMINI_SIG})
    parts, _ = _round_trip(_response(thinking, hidden, *calls), reasoning=False)
    assert list(parts) == [hidden, *calls]


def test_edited_reasoning_content_does_not_get_the_signature() -> None:
    thinking = Reasoning(THOUGHT, signature=ANTHROPIC_SIG, origin="anthropic")
    message = codec.render_response(_response(thinking, *_calls()), REQUEST)["choices"][0][
        "message"]
    message["reasoning_content"] = "Something else entirely."
    request = codec.parse_request({"model": "m", "messages": _echo(message)})
    assert request.messages[1].parts[0] == Reasoning("Something else entirely.", origin="openai")


def test_unsigned_reasoning_beside_signed_carries_the_signed_text() -> None:
    plain = Reasoning("Plain thoughts. ", origin="gemini")
    signed = Reasoning(THOUGHT, signature=GEMINI_SIG, origin="gemini")
    parts, _ = _round_trip(_response(plain, signed, *_calls()))
    assert parts[0] == signed
    assert list(parts[1:]) == _calls()


def test_ids_we_did_not_make_pass_unchanged() -> None:
    request = codec.parse_request({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "reasoning_content": "hmm", "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "ok"},
    ]})
    assert list(request.messages[1].parts) == [Reasoning("hmm", origin="openai"),
                                         ToolCall("call_abc", "f", {})]
    assert request.messages[2].parts[0].call_id == "call_abc"  # type: ignore[union-attr]


def _stream_chunks(response: Response) -> list[dict[str, Any]]:
    encoder = codec.stream_encoder(REQUEST)
    raw = b"".join(encoder.encode(e) for e in response_events(response))
    return [orjson.loads(line[6:]) for line in raw.split(b"\n\n")
            if line.startswith(b"data: {")]


def test_stream_first_fragment_has_the_carrying_id() -> None:
    thinking = Reasoning(THOUGHT, signature=ANTHROPIC_SIG, origin="anthropic")
    calls = _calls({"thought_signature": GEMINI_SIG})
    response = _response(thinking, *calls)
    whole = codec.render_response(response, REQUEST)["choices"][0]["message"]
    fragments = [c for chunk in _stream_chunks(response) for choice in chunk["choices"]
                 for c in choice["delta"].get("tool_calls", ())]
    ids = [(f["index"], f["id"]) for f in fragments if "id" in f]
    assert ids == [(0, whole["tool_calls"][0]["id"]), (1, whole["tool_calls"][1]["id"])]
    # The id is in the call's first fragment, the one that opens it.
    assert "id" in next(f for f in fragments if f["index"] == 0)
