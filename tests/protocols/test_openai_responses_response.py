"""OpenAI Responses codec: response bodies both ways, errors, and carrying other upstreams'
signatures through a Responses client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai.types.responses as oai
import pytest

from babelgate.canonical import (
    GatewayError,
    Message,
    Reasoning,
    Request,
    Response,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)
from babelgate.protocols import get_codec
from babelgate.protocols.base import Quirks

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses"
codec = get_codec("openai-responses")

GEMINI_SIGNATURE = "CiQB0e2Kb5+dX3ZsQpTUMrr6N4Q6d8pXx9u4Qm2aVb0kYvq1cU8="
ANTHROPIC_SIGNATURE = "EqQBCkgIARABGAIiQL7dXlGPL5m0cZ3Xr0h2vQ1g0d3cR+Ym8qFj9xV0bYkC3tHq2c"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def codex_request(**extra: Any) -> Request:
    body = {
        "model": "claude-sonnet-4-5",
        "input": "fix it",
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
        ],
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high", "summary": "auto"},
        **extra,
    }
    return codec.parse_request(body)


def mixed_response() -> Response:
    return Response(
        id="msg_01XyZ",
        model="claude-sonnet-4-5-20250929",
        parts=(
            Reasoning(
                text="The user wants the test fixed.",
                signature=ANTHROPIC_SIGNATURE,
                origin="anthropic",
            ),
            Text("Running the tests."),
            ToolCall(
                "toolu_01",
                "shell",
                {"command": ["pytest", "-q"]},
                provider_metadata={"thought_signature": GEMINI_SIGNATURE},
            ),
            ToolCall(
                "toolu_02",
                "apply_patch",
                {"input": "*** Begin Patch\n*** End Patch\n"},
                kind="custom",
            ),
        ),
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=120,
            output_tokens=80,
            cache_read_tokens=3000,
            cache_write_tokens=500,
            reasoning_tokens=30,
        ),
        created=1763712000,
    )


# ---------------------------------------------------------------- render_response


def test_render_response_is_a_valid_sdk_response() -> None:
    body = codec.render_response(mixed_response(), codex_request())
    parsed = oai.Response.model_validate(body)  # the SDK's own type accepts it
    assert parsed.id.startswith("resp_")
    assert parsed.object == "response"
    assert parsed.status == "completed"
    assert parsed.created_at == 1763712000
    assert parsed.parallel_tool_calls is False
    assert [t.type for t in parsed.tools] == ["function", "custom"]
    assert parsed.output_text == "Running the tests."


def test_render_response_items() -> None:
    body = codec.render_response(mixed_response(), codex_request())
    reasoning, message, call, custom = body["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [
        {"type": "summary_text", "text": "The user wants the test fixed."}
    ]
    assert reasoning["encrypted_content"].startswith("bg1.")
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["status"] == "completed"
    assert message["content"][0]["type"] == "output_text"
    assert message["content"][0]["annotations"] == []
    assert call["type"] == "function_call" and call["name"] == "shell"
    assert json.loads(call["arguments"]) == {"command": ["pytest", "-q"]}
    assert call["call_id"].startswith("toolu_01") and call["call_id"] != "toolu_01"
    assert custom == {
        "id": custom["id"],
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "toolu_02",
        "name": "apply_patch",
        "input": "*** Begin Patch\n*** End Patch\n",
    }


def test_render_response_usage_counts_cached_inside_input() -> None:
    usage = codec.render_response(mixed_response(), codex_request())["usage"]
    assert usage == {
        "input_tokens": 3620,
        "input_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 500},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 3700,
    }


@pytest.mark.parametrize(
    ("stop", "reason"),
    [("max_tokens", "max_output_tokens"), ("refusal", "content_filter")],
)
def test_render_response_incomplete(stop: Any, reason: str) -> None:
    response = Response(id="x", model="m", parts=(Text("cut"),), stop_reason=stop)
    body = codec.render_response(response, codex_request())
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": reason}
    oai.Response.model_validate(body)


def test_openai_reasoning_passes_through_unwrapped() -> None:
    part = Reasoning(
        text="sum", origin="openai-responses", redacted="gAAAAABopaque", summary=("sum",)
    )
    response = Response(id="resp_abc", model="gpt-5", parts=(part,))
    body = codec.render_response(response, codex_request())
    assert body["id"] == "resp_abc"
    assert body["output"][0]["encrypted_content"] == "gAAAAABopaque"


# ---------------------------------------------------------------- round trips through Codex


def next_turn_from(output: list[dict[str, Any]]) -> Request:
    """What Codex sends next: its history (the output items as it stored them, without ids,
    as Codex serializes them), the tool results, and a new user message."""
    history = [{k: v for k, v in item.items() if k not in ("id", "status")} for item in output]
    calls = [item for item in output if item["type"] in ("function_call", "custom_tool_call")]
    results = [
        {
            "type": "function_call_output"
            if c["type"] == "function_call"
            else "custom_tool_call_output",
            "call_id": c["call_id"],
            "output": "ok",
        }
        for c in calls
    ]
    body = {"model": "m", "input": [{"role": "user", "content": "fix it"}, *history, *results]}
    return codec.parse_request(body)


def test_anthropic_signature_round_trips_through_encrypted_content() -> None:
    output = codec.render_response(mixed_response(), codex_request())["output"]
    request = next_turn_from(output)
    assistant = request.messages[1]
    assert assistant.parts[0] == Reasoning(
        text="The user wants the test fixed.", signature=ANTHROPIC_SIGNATURE, origin="anthropic"
    )


def test_gemini_thought_signature_round_trips_through_call_id() -> None:
    output = codec.render_response(mixed_response(), codex_request())["output"]
    request = next_turn_from(output)
    call = request.messages[1].parts[2]
    assert isinstance(call, ToolCall)
    assert call.id == "toolu_01"
    assert call.provider_metadata == {"thought_signature": GEMINI_SIGNATURE}
    results = request.messages[2].parts
    assert [r.call_id for r in results if isinstance(r, ToolResult)] == ["toolu_01", "toolu_02"]


def test_gemini_thought_on_reasoning_and_redacted_thinking_round_trip() -> None:
    parts: tuple[Any, ...] = (
        Reasoning(
            text="", origin="gemini", provider_metadata={"thought_signature": GEMINI_SIGNATURE}
        ),
        Reasoning(origin="anthropic", redacted="EmwKAhgBEgy3va3pzix/LafPsn4a"),
        Reasoning(text="deepseek thoughts", origin="openai"),
        Reasoning(
            text="long thinking", summary=("short", "summary"), origin="anthropic", signature="sig"
        ),
    )
    output = codec.render_response(Response(id="r", model="m", parts=parts), codex_request())[
        "output"
    ]
    assert output[1]["summary"] == []  # redacted thinking shows nothing
    assert [s["text"] for s in output[3]["summary"]] == ["short", "summary"]
    request = next_turn_from(output)
    assert request.messages[1].parts == parts


# ---------------------------------------------------------------- parse_response (upstream)


def upstream_request() -> Request:
    return Request(
        model="gpt-5.1",
        messages=(Message("user", (Text("change the settings"),)),),
        tools=(Tool(name="read_file"), Tool(name="mcp__search__find.text.in.files")),
    )


def test_parse_response_reasoning_text_and_calls() -> None:
    response = codec.parse_response(load("upstream_response_tool_call.json"), upstream_request())
    assert response.id == "resp_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert response.model == "gpt-5.1-2025-11-13"
    assert response.created == 1763712000
    assert response.stop_reason == "tool_use"
    reasoning, text, read, search = response.parts
    assert isinstance(reasoning, Reasoning)
    assert reasoning.origin == "openai-responses"
    assert reasoning.redacted is not None and reasoning.redacted.startswith("gAAAAABpIAx7")
    assert reasoning.summary is not None and len(reasoning.summary) == 2
    assert reasoning.text == "\n\n".join(reasoning.summary)
    assert text == Text("I'll read the config first.")
    assert read == ToolCall(
        "call_Xy7Zq1Wv2Ut3Sr4Q", "read_file", {"path": "config/settings.yaml", "max_lines": 200}
    )
    assert isinstance(search, ToolCall)
    assert search.name == "mcp__search__find.text.in.files"  # mapped back to the client's name
    assert response.usage == Usage(
        input_tokens=1225, output_tokens=412, cache_read_tokens=4096, reasoning_tokens=320
    )


def test_parse_response_incomplete() -> None:
    response = codec.parse_response(load("upstream_response_incomplete.json"), upstream_request())
    assert response.stop_reason == "max_tokens"
    reasoning, text = response.parts
    assert isinstance(reasoning, Reasoning) and reasoning.text == "" and reasoning.summary is None
    assert reasoning.redacted == "gAAAAABpIAxTruncatedReasoningOpaqueBlob=="
    assert text == Text("The three main causes are: first, the")
    assert response.usage.input_tokens == 88 and response.usage.output_tokens == 64


def test_parse_response_failed_body_raises() -> None:
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "failed",
        "error": {"code": "server_error", "message": "The model failed to generate a response."},
        "output": [],
    }
    with pytest.raises(GatewayError) as info:
        codec.parse_response(body, upstream_request())
    assert info.value.kind == "api_error"
    assert "failed to generate" in info.value.message


def test_openai_reasoning_survives_a_full_loop_to_the_upstream() -> None:
    """OpenAI upstream -> Codex -> back to OpenAI: the encrypted reasoning is what goes back."""
    response = codec.parse_response(load("upstream_response_tool_call.json"), upstream_request())
    output = codec.render_response(response, upstream_request())["output"]
    request = next_turn_from(output)
    body = codec.render_request(request, Quirks())
    reasoning = next(i for i in body["input"] if i["type"] == "reasoning")
    assert (
        reasoning["encrypted_content"]
        == load("upstream_response_tool_call.json")["output"][0]["encrypted_content"]
    )
    assert len(reasoning["summary"]) == 2


# ---------------------------------------------------------------- errors


def test_render_error_shape() -> None:
    error = GatewayError(
        "invalid_request", "input[3].call_id is required", param="input[3].call_id"
    )
    assert codec.render_error(error) == {
        "error": {
            "message": "input[3].call_id is required",
            "type": "invalid_request_error",
            "param": "input[3].call_id",
            "code": None,
        }
    }
    rate = codec.render_error(GatewayError("rate_limit", "slow down"))
    assert rate["error"]["code"] == "rate_limit_exceeded"


def test_parse_error_reads_openai_bodies() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "Rate limit reached for gpt-5 on tokens per min (TPM).",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    ).encode()
    error = codec.parse_error(429, body)
    assert error.kind == "rate_limit" and error.status == 429 and error.retryable
    assert error.message.startswith("Rate limit reached")
    quota = codec.parse_error(
        429,
        b'{"error":{"message":"You exceeded your quota","type":"insufficient_quota",'
        b'"code":"insufficient_quota"}}',
    )
    assert quota.kind == "billing" and not quota.retryable
    bad = codec.parse_error(
        400,
        b'{"error":{"message":"Invalid value: \'input_text\'.","type":"invalid_request_error",'
        b'"param":"input[2].content[0]","code":"invalid_value"}}',
    )
    assert bad.kind == "invalid_request" and bad.param == "input[2].content[0]"
    html = codec.parse_error(502, b"<html>Bad gateway</html>")
    assert html.kind == "connection" and "Bad gateway" in html.message


def test_namespaced_call_goes_back_with_its_namespace() -> None:
    request = codec.parse_request(
        {
            "model": "m",
            "input": "delegate",
            "tools": [
                {
                    "type": "namespace",
                    "name": "collaboration",
                    "description": "Sub-agents.",
                    "tools": [{"type": "function", "name": "spawn_agent", "parameters": {}}],
                }
            ],
        }
    )
    response = Response(
        id="r", model="m", parts=(ToolCall("c1", "collaboration__spawn_agent", {"message": "go"}),)
    )
    (item,) = codec.render_response(response, request)["output"]
    assert item["namespace"] == "collaboration"
    assert item["name"] == "spawn_agent"
    assert json.loads(item["arguments"]) == {"message": "go"}
    # Codex sends it back the same way, and it parses to the same flat call
    history = {k: item[k] for k in ("type", "namespace", "name", "arguments", "call_id")}
    again = codec.parse_request({"model": "m", "input": [history]})
    assert list(again.messages[0].parts) == [response.parts[0]]
