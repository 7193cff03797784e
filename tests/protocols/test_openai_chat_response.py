"""Upstream chat.completion bodies and error bodies -> canonical values."""
# ruff: noqa: RUF001 - the DeepSeek fixtures hold Chinese text with full-width punctuation

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from babelgate.canonical import GatewayError, Message, Reasoning, Request, Text, Tool, ToolCall
from babelgate.protocols.openai_chat import codec
from babelgate.protocols.openai_chat.names import wire_name

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat"
GITHUB_TOOL = "mcp__github__search_issues.v2"


def _body(name: str) -> dict[str, object]:
    data = orjson.loads((FIXTURES / "responses" / name).read_bytes())
    assert isinstance(data, dict)
    return data


def _request(*tools: Tool) -> Request:
    return Request(model="alias", messages=(Message("user", (Text("hi"),)),), tools=tuple(tools))


def test_openai_parallel_tools_and_cached_usage() -> None:
    body = _body("openai_parallel_tools.json")
    # The fixture calls the shortened name a previous render would have sent.
    body["choices"][0]["message"]["tool_calls"][1]["function"]["name"] = wire_name(GITHUB_TOOL)  # type: ignore[index]
    response = codec.parse_response(body, _request(Tool(name="Read"), Tool(name=GITHUB_TOOL)))
    assert response.id == "chatcmpl-CXk2pQ7bH1vX0s9Tz4aF3mN8eR6uY"
    assert response.model == "gpt-4.1-2025-04-14"
    assert response.created == 1761650000
    assert list(response.parts) == [
        ToolCall(
            id="call_q3Xw8nVb2LkP0sYtR5mZ1aJd",
            name="Read",
            arguments={"file_path": "/repo/src/app.py"},
        ),
        ToolCall(
            id="call_H7uE2cNf9WqT4xKo6bLs3pVg",
            name=GITHUB_TOOL,
            arguments={"query": "crash on start"},
        ),
    ]
    assert response.stop_reason == "tool_use"
    usage = response.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (256, 4864, 61)
    assert usage.prompt_tokens == 5120


def test_deepseek_reasoning_and_cache_hit_tokens() -> None:
    response = codec.parse_response(_body("deepseek_reasoner.json"), _request())
    assert list(response.parts) == [
        Reasoning(text="用户问为什么会崩溃。看代码：items[0] 在空列表上会失败……", origin="openai"),
        Text("这个函数在列表为空时会抛出 IndexError，先检查长度即可。"),
    ]
    assert response.stop_reason == "end_turn"
    usage = response.usage
    assert (usage.input_tokens, usage.cache_read_tokens) == (264, 1536)
    assert (usage.output_tokens, usage.reasoning_tokens) == (420, 380)


def test_kimi_ids_made_safe() -> None:
    response = codec.parse_response(_body("kimi_tool_call.json"), _request(Tool(name="Bash")))
    text, call = response.parts
    assert text == Text("I'll run the tests first.")
    assert isinstance(call, ToolCall)
    assert call.id == "functions_Bash_0"
    assert call.arguments == {"command": "pytest -q", "description": "Run tests"}
    assert response.usage.cache_read_tokens == 2048
    assert response.usage.input_tokens == 252


def test_openrouter_reasoning_details_empty_content_and_stop_with_calls() -> None:
    response = codec.parse_response(_body("openrouter_reasoning_details.json"), _request())
    reasoning, call = response.parts  # the empty content is skipped
    assert reasoning == Reasoning(
        text="The user wants a haiku. Five, seven, five.", origin="openai"
    )
    assert call == ToolCall(id="toolu_01AbCdEf", name="Write", arguments={})
    assert response.stop_reason == "tool_use"  # finish_reason "stop" with a call


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "end_turn"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reasons_without_calls(finish: str | None, expected: str) -> None:
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    # tool_calls with no call in the message: nothing to run, so the turn simply ended.
    assert codec.parse_response(body, _request()).stop_reason == expected


def test_length_with_partial_call_stays_max_tokens() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "tool_calls": [
                        {"id": "c", "function": {"name": "Bash", "arguments": '{"command": "ec'}}
                    ]
                },
                "finish_reason": "length",
            }
        ]
    }
    response = codec.parse_response(body, _request())
    assert response.stop_reason == "max_tokens"
    assert list(response.parts) == [ToolCall(id="c", name="Bash", arguments={"command": "ec"})]


def test_legacy_function_call_refusal_and_vllm_stop_string() -> None:
    legacy = {
        "choices": [
            {
                "message": {"function_call": {"name": "Read", "arguments": "{}"}},
                "finish_reason": "function_call",
            }
        ]
    }
    response = codec.parse_response(legacy, _request())
    assert response.stop_reason == "tool_use"
    assert isinstance(response.parts[0], ToolCall) and response.parts[0].id.startswith("call_")
    refusal = {
        "choices": [
            {
                "message": {"content": None, "refusal": "I can't help with that."},
                "finish_reason": "content_filter",
            }
        ]
    }
    refused = codec.parse_response(refusal, _request())
    assert list(refused.parts) == [Text("I can't help with that.")]
    assert refused.stop_reason == "refusal"
    request = Request(model="m", messages=(), stop=("</answer>",))
    vllm = {
        "choices": [
            {"message": {"content": "42"}, "finish_reason": "stop", "stop_reason": "</answer>"}
        ]
    }
    stopped = codec.parse_response(vllm, request)
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "</answer>")


def test_missing_id_model_and_usage_get_defaults() -> None:
    response = codec.parse_response({"choices": [{"message": {"content": "hi"}}]}, _request())
    assert response.id.startswith("chatcmpl-") and response.model == "alias"
    assert response.usage.prompt_tokens == 0


# ------------------------------------------------------------------ errors


def _error(name: str) -> bytes:
    return (FIXTURES / "errors" / name).read_bytes()


def test_context_length_error_keeps_message_and_param() -> None:
    error = codec.parse_error(400, _error("openai_context_length.json"))
    assert error.kind == "invalid_request" and error.status == 400
    assert error.message.startswith("This model's maximum context length is 128000 tokens")
    assert error.param == "messages"


def test_quota_429_is_billing_not_rate_limit() -> None:
    error = codec.parse_error(429, _error("openai_insufficient_quota.json"))
    assert error.kind == "billing" and error.status == 429
    assert not error.retryable


def test_deepseek_and_vllm_and_glm_variants() -> None:
    deepseek = codec.parse_error(400, _error("deepseek_missing_reasoning.json"))
    assert "reasoning_content" in deepseek.message and deepseek.kind == "invalid_request"
    vllm = codec.parse_error(400, _error("vllm_error.json"))
    assert vllm.message.startswith("This model's maximum context length is 32768")
    assert vllm.kind == "invalid_request"
    glm = codec.parse_error(429, _error("glm_rate_limit.json"))
    assert glm.kind == "rate_limit" and glm.message.startswith("您当前使用该API的并发数过高")
    assert glm.retryable


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            502,
            b"<html><body>502 Bad Gateway</body></html>",
            "connection",
            "<html><body>502 Bad Gateway</body></html>",
        ),
        (503, b"", "overloaded", "upstream returned HTTP 503"),
        (401, b'{"error":"invalid api key"}', "authentication", "invalid api key"),
        (
            404,
            b'[{"error":{"code":404,"message":"model not found","status":"NOT_FOUND"}}]',
            "not_found",
            "model not found",
        ),
        (500, b'{"detail":"Internal Server Error"}', "api_error", "Internal Server Error"),
        (400, b'{"error":{"message":"bad","type":"rate_limit_error"}}', "rate_limit", "bad"),
    ],
)
def test_error_shapes(status: int, body: bytes, kind: str, message: str) -> None:
    error = codec.parse_error(status, body)
    assert (error.kind, error.message, error.status) == (kind, message, status)


def test_error_body_with_status_200_raises() -> None:
    body = {"error": {"message": "No endpoints found for model", "code": 404}}
    with pytest.raises(GatewayError) as caught:
        codec.parse_response(body, _request())
    assert caught.value.kind == "not_found"
    assert caught.value.message == "No endpoints found for model"
