"""Whole responses both ways, the round trip of foreign reasoning and tool-call metadata
through a Claude Code client, and error bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from babelgate.canonical import (
    GatewayError,
    Reasoning,
    Request,
    Response,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)
from babelgate.canonical.carry import unpack
from babelgate.protocols.anthropic import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
REQUEST = Request(model="claude-sonnet-4-5", messages=(), max_tokens=1000)


def gemini_response() -> Response:
    return Response(
        id="msg_gw1",
        model="gemini-3-pro-preview",
        parts=(
            Reasoning(
                text="Thinking about the file layout.",
                signature="CiQB0e2Kb3Y1Z2FzZGZhc2RmYXNkZg==",
                origin="gemini",
                provider_metadata={"part_index": 0},
            ),
            Text(""),  # an upstream's empty text part must not reach the client
            Text("Reading both files."),
            ToolCall(
                id="functions.Read:0",
                name="Read",
                arguments={"file_path": "/a.py"},
                provider_metadata={"thought_signature": "CiQB0e2Kb3Y1Z2Fz"},
            ),
            ToolCall(id="call_2", name="Read", arguments={"file_path": "/b.py"}),
        ),
        stop_reason="tool_use",
        usage=Usage(input_tokens=900, output_tokens=120, cache_read_tokens=4000),
    )


def test_render_response_shape() -> None:
    body = codec.render_response(gemini_response(), REQUEST)
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"] == "msg_gw1" and body["model"] == "gemini-3-pro-preview"
    assert [b["type"] for b in body["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": 900,
        "output_tokens": 120,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4000,
    }
    first_call, second_call = body["content"][2], body["content"][3]
    assert first_call["id"].startswith("functions_Read_0")  # made valid for Anthropic
    assert all(
        c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
        for c in first_call["id"]
    )
    assert second_call["id"] == "call_2"  # no metadata: unchanged
    origin, payload = unpack(body["content"][0]["signature"]) or ("", {})
    assert origin == "gemini" and payload["sig"] == "CiQB0e2Kb3Y1Z2FzZGZhc2RmYXNkZg=="


def test_foreign_reasoning_and_call_metadata_survive_the_client() -> None:
    """render_response, then the client echoes the turn back with a tool result: parsing it
    restores what the Gemini upstream needs on the next turn."""
    body = codec.render_response(gemini_response(), REQUEST)
    call_ids = [b["id"] for b in body["content"] if b["type"] == "tool_use"]
    echoed = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [
            {"role": "user", "content": "read a.py and b.py"},
            {"role": "assistant", "content": body["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_ids[0], "content": "print(1)"},
                    {"type": "tool_result", "tool_use_id": call_ids[1], "content": "print(2)"},
                ],
            },
        ],
    }
    history = codec.parse_request(json.loads(json.dumps(echoed)))
    reasoning, text, call, second = history.messages[1].parts
    assert reasoning == Reasoning(
        text="Thinking about the file layout.",
        signature="CiQB0e2Kb3Y1Z2FzZGZhc2RmYXNkZg==",
        origin="gemini",
        provider_metadata={"part_index": 0},
    )
    assert text == Text("Reading both files.")
    assert isinstance(call, ToolCall) and isinstance(second, ToolCall)
    assert call.id == "functions_Read_0"
    assert call.provider_metadata == {"thought_signature": "CiQB0e2Kb3Y1Z2Fz"}
    assert (second.id, second.provider_metadata) == ("call_2", None)
    results = history.messages[2].parts
    assert isinstance(results[0], ToolResult) and results[0].call_id == "functions_Read_0"
    assert isinstance(results[1], ToolResult) and results[1].call_id == "call_2"


def test_reasoning_without_signature_still_carries_its_origin() -> None:
    """DeepSeek-style reasoning text (no signature) must come back marked as foreign, so it is
    never sent to Anthropic as unsigned thinking and its own codec can echo it."""
    response = Response(
        id="m", model="deepseek-reasoner", parts=(Reasoning(text="hmm", origin="openai"),)
    )
    block = codec.render_response(response, REQUEST)["content"][0]
    parsed = (
        codec.parse_request(
            {"model": "x", "max_tokens": 5, "messages": [{"role": "assistant", "content": [block]}]}
        )
        .messages[0]
        .parts[0]
    )
    assert parsed == Reasoning(text="hmm", origin="openai")


def test_anthropic_reasoning_keeps_its_real_signature() -> None:
    response = Response(
        id="m",
        model="claude",
        parts=(
            Reasoning(text="t", signature="EqQBreal", origin="anthropic"),
            Reasoning(redacted="EmwKopaque", origin="anthropic"),
        ),
        stop_reason="context_window_exceeded",
    )
    body = codec.render_response(response, REQUEST)
    assert body["content"] == [
        {"type": "thinking", "thinking": "t", "signature": "EqQBreal"},
        {"type": "redacted_thinking", "data": "EmwKopaque"},
    ]
    assert body["stop_reason"] == "model_context_window_exceeded"


def test_parse_response_maps_tool_names_back() -> None:
    request = Request(
        model="claude-sonnet-4-5",
        messages=(),
        tools=(Tool(name="functions.shell", parameters={"type": "object"}),),
    )
    response = codec.parse_response(
        json.loads((FIXTURES / "response_tool_use.json").read_text()), request
    )
    thinking, text, call = response.parts
    assert isinstance(thinking, Reasoning)
    assert (thinking.origin, thinking.signature) == ("anthropic", "ErUBCkYIBRgCIkD2B0uZpGj3Vp")
    assert text == Text("Listing files now.")
    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == ("functions.shell", {"cmd": ["ls", "-la"]})
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(
        input_tokens=2095, output_tokens=503, cache_read_tokens=1800, cache_write_tokens=100
    )
    assert response.usage.prompt_tokens == 3995


def test_parse_response_custom_tool_and_skipped_blocks() -> None:
    request = Request(model="m", messages=(), tools=(Tool(name="apply_patch", kind="custom"),))
    body = {
        "id": "msg_1",
        "model": "m",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "apply_patch",
                "input": {"input": "*** Begin Patch"},
            },
        ],
        "stop_reason": "model_context_window_exceeded",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    response = codec.parse_response(body, request)
    assert len(response.parts) == 1
    call = response.parts[0]
    assert isinstance(call, ToolCall) and call.kind == "custom"
    assert call.arguments == {"input": "*** Begin Patch"}
    assert response.stop_reason == "context_window_exceeded"


@pytest.mark.parametrize(
    ("kind", "wire_type"),
    [
        ("invalid_request", "invalid_request_error"),
        ("authentication", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "not_found_error"),
        ("request_too_large", "request_too_large"),
        ("rate_limit", "rate_limit_error"),
        ("billing", "billing_error"),
        ("api_error", "api_error"),
        ("overloaded", "overloaded_error"),
        ("timeout", "api_error"),
        ("connection", "api_error"),
    ],
)
def test_render_error(kind: Any, wire_type: str) -> None:
    body = codec.render_error(GatewayError(kind, "it broke"))
    assert body == {"type": "error", "error": {"type": wire_type, "message": "it broke"}}


def test_parse_error_trusts_the_body_type() -> None:
    body = (
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
        b'"request_id":"req_1"}'
    )
    error = codec.parse_error(529, body)
    assert (error.kind, error.message, error.status) == ("overloaded", "Overloaded", 529)
    assert error.retryable

    error = codec.parse_error(
        400,
        b'{"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"max_tokens: 200000 > 64000"}}',
    )
    assert (error.kind, error.message, error.status) == (
        "invalid_request",
        "max_tokens: 200000 > 64000",
        400,
    )


def test_parse_error_falls_back_to_the_status() -> None:
    # OpenAI-style body from an Anthropic-compatible host, an unknown type, and plain text.
    error = codec.parse_error(
        429, b'{"error":{"message":"Rate limit reached","type":"rate_limit","code":"1302"}}'
    )
    assert (error.kind, error.message) == ("rate_limit", "Rate limit reached")
    error = codec.parse_error(502, b"<html>Bad Gateway</html>")
    assert (error.kind, error.status) == ("connection", 502)
    assert "Bad Gateway" in error.message
    error = codec.parse_error(500, b"")
    assert error.kind == "api_error" and "500" in error.message


def test_whitespace_only_text_is_not_rendered() -> None:
    response = Response(id="m", model="gpt-5", parts=(Text("\n\n"), ToolCall(id="c", name="f")))
    assert [b["type"] for b in codec.render_response(response, REQUEST)["content"]] == ["tool_use"]
