"""Gemini generateContent responses -> canonical Response, and thought signatures surviving
the trip back into the next request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    GatewayError,
    Message,
    Reasoning,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.gemini import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
SEARCH = "mcp__my server/search"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def request() -> Request:
    return Request(
        model="gemini-3-pro-preview",
        messages=(Message("user", (Text("Fix the failing test"),)),),
        tools=(Tool(name="Bash"), Tool(name="Read"), Tool(name=SEARCH)),
    )


def test_gemini25_thoughts_text_and_signed_call() -> None:
    response = codec.parse_response(load("gemini25_tool_call.json"), request())
    thought, text, call = response.parts
    assert isinstance(thought, Reasoning) and thought.origin == "gemini"
    assert thought.text.startswith("**Inspecting the repository**")
    assert thought.signature is None
    assert text == Text("I'll look at the test directory first.")
    assert isinstance(call, ToolCall)
    assert call.name == "Bash"
    assert call.arguments == {"command": "ls tests", "description": "List test files"}
    assert call.id.startswith("call_")
    assert call.provider_metadata == {"thought_signature": "CiQB0e2Kb7kQ3mW1sig25AAAA"}
    assert response.stop_reason == "tool_use"
    assert response.id == "p6ZaaOXhN9eO2PgPk4TlqAk"
    assert response.model == "gemini-2.5-pro"


def test_usage_separates_cached_and_thought_tokens() -> None:
    usage = codec.parse_response(load("gemini25_tool_call.json"), request()).usage
    assert usage.input_tokens == 12840 - 10240
    assert usage.cache_read_tokens == 10240
    assert usage.output_tokens == 41 + 229
    assert usage.reasoning_tokens == 229
    assert usage.prompt_tokens == 12840


def test_parallel_call_signatures_round_trip_onto_the_right_call() -> None:
    response = codec.parse_response(load("gemini3_parallel_calls.json"), request())
    calls = [p for p in response.parts if isinstance(p, ToolCall)]
    assert [c.name for c in calls] == ["Read", "Read", SEARCH]  # name mapped back
    assert len({c.id for c in calls}) == 3
    # The next request, as Claude Code would send it back.
    asked = request()
    results = tuple(ToolResult(c.id, (Text(f"result {i}"),)) for i, c in enumerate(calls))
    follow_up = replace(asked, messages=(
        *asked.messages, Message("assistant", response.parts), Message("user", results)
    ))
    contents = codec.render_request(follow_up, Quirks())["contents"]
    model = contents[1]["parts"]
    assert model[0]["thoughtSignature"] == "EpQFCpEFAdHtim9G3sigFIRSTcallONLY=="
    assert model[0]["functionCall"]["args"] == {"file_path": "/repo/src/app.py"}
    assert "thoughtSignature" not in model[1] and "thoughtSignature" not in model[2]
    assert model[2]["functionCall"]["name"] == "mcp__my_server_search_589b6e8c"
    names = [p["functionResponse"]["name"] for p in contents[2]["parts"]]
    assert names == ["Read", "Read", "mcp__my_server_search_589b6e8c"]


def test_text_signature_is_kept_and_restored_on_the_text() -> None:
    response = codec.parse_response(load("gemini3_text_signature.json"), request())
    text, holder = response.parts
    assert isinstance(text, Text) and text.text.startswith("The bug is an off-by-one")
    assert holder == Reasoning(text="", signature="EqkCCqYCAdHtim9TEXTsig==", origin="gemini")
    assert response.stop_reason == "end_turn"
    asked = request()
    follow_up = replace(asked, messages=(
        *asked.messages,
        Message("assistant", response.parts),
        Message("user", (Text("thanks"),)),
    ))
    model = codec.render_request(follow_up, Quirks())["contents"][1]
    assert model["parts"] == [{"text": text.text, "thoughtSignature": "EqkCCqYCAdHtim9TEXTsig=="}]


def test_gemini_call_ids_are_kept() -> None:
    body = load("gemini3_parallel_calls.json")
    body["candidates"][0]["content"]["parts"][0]["functionCall"]["id"] = "fc/42"
    call = codec.parse_response(body, request()).parts[0]
    assert isinstance(call, ToolCall)
    assert call.id == "fc_42"  # valid for every client
    assert call.provider_metadata is not None
    assert call.provider_metadata["gemini_id"] == "fc/42"  # the exact id goes back to Gemini


@pytest.mark.parametrize(
    ("fixture", "stop", "parts"),
    [
        ("max_tokens.json", "max_tokens", 1),
        ("safety.json", "refusal", 0),
        ("prompt_blocked.json", "refusal", 0),
    ],
)
def test_finish_reasons(fixture: str, stop: str, parts: int) -> None:
    response = codec.parse_response(load(fixture), request())
    assert response.stop_reason == stop
    assert len(response.parts) == parts


def test_malformed_function_call_is_a_retryable_error() -> None:
    with pytest.raises(GatewayError) as caught:
        codec.parse_response(load("malformed_call.json"), request())
    assert caught.value.kind == "api_error"
    assert caught.value.retryable
    assert "MALFORMED_FUNCTION_CALL" in caught.value.message


def test_bare_thought_signature_signs_the_thought_before_it() -> None:
    body = load("gemini3_text_signature.json")
    body["candidates"][0]["content"]["parts"] = [
        {"text": "Thinking about it.", "thought": True},
        {"text": "", "thought": True, "thoughtSignature": "SIG_T"},
        {"text": "", "thought": True, "thoughtSignature": "SIG_ALONE"},
        {"text": "Answer."},
    ]
    parts = codec.parse_response(body, request()).parts
    assert parts[0] == Reasoning("Thinking about it.", signature="SIG_T", origin="gemini")
    alone = parts[1]
    assert isinstance(alone, Reasoning) and alone.signature == "SIG_ALONE" and not alone.text
    assert parts[2] == Text("Answer.")
    asked = request()
    follow_up = replace(asked, messages=(
        *asked.messages, Message("assistant", tuple(parts)), Message("user", (Text("ok"),))
    ))
    model = codec.render_request(follow_up, Quirks())["contents"][1]["parts"]
    assert model == [
        {"text": "Thinking about it.", "thought": True, "thoughtSignature": "SIG_T"},
        {"text": "", "thought": True, "thoughtSignature": "SIG_ALONE"},
        {"text": "Answer."},
    ]
