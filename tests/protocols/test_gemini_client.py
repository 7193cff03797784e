"""Client-facing Gemini: Gemini-SDK request bodies -> canonical, canonical -> responses,
and foreign reasoning carried through a Gemini client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    Document,
    GatewayError,
    Image,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.gemini import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_parse_recorded_sdk_request() -> None:
    request = codec.parse_request(load("client_request.json"))
    assert request.model == ""  # the server fills it in from the URL
    assert list(request.system) == [Text("You are a coding assistant.")]
    user, model, results = request.messages
    assert user.role == "user"
    assert list(user.parts) == [
        Text("What is in this screenshot and in app.py?"),
        Image(media_type="image/png", data="iVBORw0KGgo="),
        Document(
            media_type="application/pdf",
            url="https://generativelanguage.googleapis.com/v1beta/files/abc123",
        ),
    ]
    assert model.role == "assistant"
    thought, read, listing = model.parts
    assert thought == Reasoning(
        "I should read the file.", signature="CpoBsigThought", origin="gemini"
    )
    assert isinstance(read, ToolCall) and isinstance(listing, ToolCall)
    assert read.provider_metadata == {"thought_signature": "CpoBsigCall"}
    assert listing.provider_metadata is None
    # Responses without ids are matched to their calls by name, whatever their order.
    first, second = results.parts
    assert isinstance(first, ToolResult) and isinstance(second, ToolResult)
    assert (first.call_id, first.name, first.is_error) == (listing.id, "list_dir", False)
    assert list(first.content) == [Text("app.py\nREADME.md")]
    assert (second.call_id, second.name, second.is_error) == (read.id, "read_file", True)
    assert list(second.content) == [Text("permission denied")]


def test_parse_tools_config_and_generation_settings() -> None:
    request = codec.parse_request(load("client_request.json"))
    read, listing, search = request.tools
    assert read.parameters == {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path"},
            "encoding": {
                "type": ["string", "null"],
                "enum": ["utf-8", "latin-1"],
                "format": "enum",
            },
        },
        "required": ["path"],
    }
    assert listing.parameters["additionalProperties"] is False  # raw JSON Schema kept
    assert (search.kind, search.hosted_type) == ("hosted", "web_search")
    assert request.tool_choice == ToolChoice("tool", "read_file")
    assert (request.max_tokens, request.temperature, request.top_p, request.top_k) == (
        8192,
        0.7,
        0.95,
        64,
    )
    assert list(request.stop) == ["END"]
    assert request.reasoning == ReasoningConfig(enabled=True, budget_tokens=4096)
    assert request.response_format is None


def test_snake_case_keys_read_the_same() -> None:
    camel = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"inlineData": {"mimeType": "image/jpeg", "data": "AA=="}}]},
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "s"}],
            },
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"x": 1}}}]},
        ],
        "tools": [
            {"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        "generationConfig": {
            "maxOutputTokens": 10,
            "thinkingConfig": {"thinkingLevel": "low"},
            "responseMimeType": "application/json",
        },
    }
    snake = {
        "system_instruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"inline_data": {"mime_type": "image/jpeg", "data": "AA=="}}],
            },
            {
                "role": "model",
                "parts": [{"function_call": {"name": "f", "args": {}}, "thought_signature": "s"}],
            },
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"x": 1}}}]},
        ],
        "tools": [
            {"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}
        ],
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
        "generation_config": {
            "max_output_tokens": 10,
            "thinking_config": {"thinking_level": "low"},
            "response_mime_type": "application/json",
        },
    }
    a, b = codec.parse_request(camel), codec.parse_request(snake)
    assert a == b
    assert a.tool_choice == ToolChoice("none")
    assert a.reasoning == ReasoningConfig(enabled=True, effort="low")
    assert a.response_format == {"type": "json_object"}
    result = a.messages[2].parts[0]
    assert isinstance(result, ToolResult) and list(result.content) == [Text('{"x":1}')]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": [1]}, "contents[0]"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        # found by tests/server/test_gw_fuzz.py: a list here was a 502 when translated
        ({"contents": [], "generationConfig": {"candidateCount": [1]}},
         "generationConfig.candidateCount"),
        # found by test_gw_fuzz.py at 1,000 bodies: a 500 where a Gemini upstream's
        # countTokens body was rendered from it
        ({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": {"a": 1}}}]}]},
         "contents"),
        ({"contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": True}}]}]}, "contents"),
    ],
)
def test_malformed_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        codec.parse_request(body)
    assert caught.value.kind == "invalid_request"
    assert caught.value.param == param


def test_render_response_for_sdk_clients() -> None:
    call = ToolCall("toolu_1", "read_file", {"path": "a.py"})
    response = Response(
        id="msg_1",
        model="claude-sonnet-4-5",
        parts=(Text("Reading."), call),
        stop_reason="tool_use",
        usage=Usage(input_tokens=100, output_tokens=50, cache_read_tokens=900, reasoning_tokens=20),
    )
    body = codec.render_response(response, Request(model="claude-sonnet-4-5", messages=()))
    assert body == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Reading."},
                        {
                            "functionCall": {
                                "name": "read_file",
                                "args": {"path": "a.py"},
                                "id": "toolu_1",
                            }
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "candidatesTokenCount": 30,
            "totalTokenCount": 1050,
            "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 900,
        },
        "modelVersion": "claude-sonnet-4-5",
        "responseId": "msg_1",
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY"), ("end_turn", "STOP")],
)
def test_render_finish_reasons(stop: Any, finish: str) -> None:
    response = Response(id="r", model="m", parts=(), stop_reason=stop)
    body = codec.render_response(response, Request(model="m", messages=()))
    assert body["candidates"][0]["finishReason"] == finish


def test_foreign_reasoning_survives_a_gemini_client() -> None:
    """Anthropic upstream, Gemini client: the thinking signature rides in thoughtSignature and
    comes back as Anthropic reasoning, while the client's ids match results to calls."""
    thinking = Reasoning("Let me check.", signature="EqQBClaude==", origin="anthropic")
    redacted = Reasoning("", redacted="opaque-redacted", origin="anthropic")
    call = ToolCall("toolu_9", "read_file", {"path": "a.py"})
    response = Response(id="msg", model="claude", parts=(thinking, redacted, call))
    rendered = codec.render_response(response, Request(model="claude", messages=()))
    model_content = rendered["candidates"][0]["content"]
    echoed = {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            model_content,
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "toolu_9",
                            "name": "read_file",
                            "response": {"output": "x"},
                        }
                    }
                ],
            },
        ]
    }
    parsed = codec.parse_request(echoed)
    assert list(parsed.messages[1].parts[:2]) == [thinking, redacted]
    result = parsed.messages[2].parts[0]
    assert isinstance(result, ToolResult) and result.call_id == "toolu_9"
    # Going to Gemini upstream, that foreign reasoning is dropped.
    rendered = codec.render_request(replace(parsed, model="gemini-2.5-pro"), Quirks())
    upstream = rendered["contents"][1]["parts"]
    assert all("thought" not in p for p in upstream)


def test_render_error_body() -> None:
    body = codec.render_error(GatewayError("invalid_request", "bad field", param="contents"))
    assert body == {"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}}
    body = codec.render_error(GatewayError("overloaded", "busy"))
    assert body["error"]["status"] == "UNAVAILABLE"


def test_request_round_trip_through_canonical() -> None:
    """A Gemini client's request, sent on to Gemini, keeps its content and signatures."""
    request = replace(codec.parse_request(load("client_request.json")), model="gemini-2.5-pro")
    body = codec.render_request(request, Quirks())
    original = load("client_request.json")
    assert body["contents"][1]["parts"] == original["contents"][1]["parts"]
    # Responses are re-ordered into call order (read_file was called first).
    names = [p["functionResponse"]["name"] for p in body["contents"][2]["parts"]]
    assert names == ["read_file", "list_dir"]
    assert body["contents"][0]["parts"] == original["contents"][0]["parts"]
    assert body["systemInstruction"] == original["systemInstruction"]
    assert body["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 4096,
    }
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[1]["parameters"] == {"type": "object", "properties": {"path": {"type": "string"}}}
    assert decls[0]["parameters"]["properties"]["encoding"] == {
        "type": "string",
        "nullable": True,
        "enum": ["utf-8", "latin-1"],
        "format": "enum",
    }
