"""Client-facing Chat Completions: parse_request, render_response, the stream encoder (checked
with the official `openai` SDK's own stream accumulator) and render_error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from babelgate.canonical import (
    Document,
    Event,
    GatewayError,
    Image,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
    Response,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.openai_chat import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat"


def _agent_request() -> dict[str, Any]:
    data = orjson.loads((FIXTURES / "requests" / "agent_turn.json").read_bytes())
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------ parse_request


def test_parse_agent_turn() -> None:
    request = codec.parse_request(_agent_request())
    assert request.model == "gpt-4.1"
    assert list(request.system) == [Text("You are a coding agent."), Text("Prefer small diffs.")]
    user, assistant, results, mid_system, last = request.messages
    assert list(user.parts) == [
        Text("Why does this fail?"),
        Image(media_type="image/png", data="iVBORw0KGgo=", detail="low"),
        Image(url="https://example.com/trace.png"),
        Document(media_type="application/pdf", data="JVBERi0x", filename="spec.pdf"),
    ]
    assert list(assistant.parts) == [
        Reasoning(text="Check the test first.", origin="openai"),
        ToolCall(id="call_abc", name="run_tests", arguments={"path": "tests/"}),
        ToolCall(id="call_def", name="read_file", arguments={"path": "app.py"}),
    ]
    # Consecutive tool messages join one user message.
    assert results == Message(
        "user",
        (
            ToolResult(call_id="call_abc", content=(Text("1 failed"),), name="run_tests"),
            ToolResult(call_id="call_def", content=(Text("def main(): ..."),), name="read_file"),
        ),
    )
    assert mid_system == Message("system", (Text("Budget: 3 more tool calls."),))
    assert last == Message("user", (Text("Fix it."),))
    assert [t.name for t in request.tools] == ["run_tests", "read_file", "apply_patch"]
    assert request.tools[0].strict is True
    assert request.tools[2].kind == "custom"
    assert request.tools[2].format == {
        "type": "grammar",
        "syntax": "lark",
        "definition": "start: /.+/",
    }
    assert request.tool_choice == ToolChoice(mode="tool", name="run_tests")
    assert request.parallel_tool_calls is False
    assert request.max_tokens == 4096
    assert request.reasoning == ReasoningConfig(effort="medium")
    assert list(request.stop) == ["\n\nUser:"]
    assert (request.stream, request.include_usage) == (True, True)
    assert (request.temperature, request.top_p, request.n, request.user) == (0.3, 0.95, 1, "dev-42")
    assert request.response_format == {"type": "text"}


def test_parsed_request_renders_back_to_a_valid_upstream_body() -> None:
    request = codec.parse_request(_agent_request())
    openai = Quirks(max_tokens_field="max_completion_tokens", system_anywhere=True)
    body = codec.render_request(request, openai)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "system", "user"]
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_abc",
        "content": "1 failed",
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "run_tests"}}
    assert body["reasoning_effort"] == "medium"
    assert "seed" not in body and "metadata" not in body
    patch_tool = body["tools"][2]["function"]
    assert "start: /.+/" in patch_tool["parameters"]["properties"]["input"]["description"]


def test_stream_without_options_has_no_usage_and_max_tokens_fallback() -> None:
    request = codec.parse_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 10,
            "reasoning_effort": "none",
        }
    )
    assert request.include_usage is False
    assert request.max_tokens == 10
    assert request.reasoning == ReasoningConfig(enabled=False, effort="none")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": None}, "model"),
        ({"messages": []}, "messages"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "x"}]},
            "messages[1].role",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "x"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "b"},
                            {"type": "image_url", "image_url": {}},
                        ],
                    },
                ]
            },
            "messages[1].content[1].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
                ]
            },
            "messages[0].content[0].file.file_id",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"stop": [1, 2]}, "stop"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_bad_requests_name_the_field(patch: dict[str, Any], param: str) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(patch)
    with pytest.raises(GatewayError) as caught:
        codec.parse_request(body)
    assert caught.value.kind == "invalid_request"
    assert caught.value.param == param


def test_audio_rejection_says_why() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
                ],
            }
        ],
    }
    with pytest.raises(GatewayError, match="audio"):
        codec.parse_request(body)


# ------------------------------------------------------------------ render_response


def _request(**kwargs: Any) -> Request:
    return Request(model="alias", messages=(Message("user", (Text("hi"),)),), **kwargs)


def test_render_response_is_a_valid_chat_completion() -> None:
    response = Response(
        id="chatcmpl-1",
        model="deepseek-reasoner",
        parts=(
            Reasoning(text="think", origin="openai"),
            Text("Running it."),
            ToolCall(id="toolu_01", name="run_tests", arguments={"path": "tests/"}),
        ),
        stop_reason="tool_use",
        usage=Usage(input_tokens=100, output_tokens=50, cache_read_tokens=900, reasoning_tokens=20),
        created=1761650000,
    )
    body = codec.render_response(response, _request())
    completion = ChatCompletion.model_validate(body)
    message = completion.choices[0].message
    assert message.content == "Running it."
    assert body["choices"][0]["message"]["reasoning_content"] == "think"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name) == ("toolu_01", "run_tests")
    assert orjson.loads(call.function.arguments) == {"path": "tests/"}
    assert completion.choices[0].finish_reason == "tool_calls"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 50, 1050)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 900
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 20


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("context_window_exceeded", "length"),
    ],
)
def test_render_finish_reasons(reason: str, finish: str) -> None:
    response = Response(id="x", model="m", parts=(Text("a"),), stop_reason=reason)  # type: ignore[arg-type]
    body = codec.render_response(response, _request())
    assert body["choices"][0]["finish_reason"] == finish
    assert "reasoning_content" not in body["choices"][0]["message"]


def test_render_custom_tool_call() -> None:
    response = Response(
        id="x",
        model="m",
        stop_reason="tool_use",
        parts=(
            ToolCall(
                id="call_1",
                name="apply_patch",
                kind="custom",
                arguments={"input": "*** Begin Patch\n*** End Patch"},
            ),
        ),
    )
    body = codec.render_response(response, _request())
    assert body["choices"][0]["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "custom",
            "custom": {"name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
        }
    ]
    assert ChatCompletion.model_validate(body).choices[0].finish_reason == "tool_calls"


def test_round_trip_through_both_sides() -> None:
    """A client response rendered by us and parsed as if it came from an upstream is the same
    response: nothing is lost in either direction."""
    response = Response(
        id="chatcmpl-rt",
        model="m",
        parts=(
            Reasoning(text="r", origin="openai"),
            Text("t"),
            ToolCall(id="c1", name="read_file", arguments={"path": "a"}),
        ),
        stop_reason="tool_use",
        usage=Usage(input_tokens=7, output_tokens=3, cache_read_tokens=5, reasoning_tokens=1),
        created=1,
    )
    again = codec.parse_response(codec.render_response(response, _request()), _request())
    assert again == response


# ------------------------------------------------------------------ stream encoder


def _events() -> list[Event]:
    return [
        MessageStart(id="chatcmpl-s1", model="deepseek-reasoner"),
        PartStart(0, Reasoning(text="", origin="openai")),
        _reasoning_delta(0, "Let me "),
        _reasoning_delta(0, "look."),
        PartStop(0, Reasoning(text="Let me look.", origin="openai")),
        PartStart(1, Text("")),
        TextDelta(1, "Reading "),
        TextDelta(1, "both files."),
        PartStop(1, Text("Reading both files.")),
        PartStart(2, ToolCall(id="call_a", name="read_file")),
        ToolArgsDelta(2, '{"path":'),
        ToolArgsDelta(2, '"a.py"}'),
        PartStop(2, ToolCall(id="call_a", name="read_file", arguments={"path": "a.py"})),
        PartStart(3, ToolCall(id="call_b", name="read_file")),
        ToolArgsDelta(3, '{"path":"b.py"}'),
        PartStop(3, ToolCall(id="call_b", name="read_file", arguments={"path": "b.py"})),
        MessageDelta(
            "tool_use",
            Usage(input_tokens=10, output_tokens=30, cache_read_tokens=90, reasoning_tokens=5),
        ),
        MessageStop(),
    ]


def _reasoning_delta(index: int, text: str) -> Event:
    return ReasoningDelta(index, text)


def _encode(events: list[Event], request: Request) -> bytes:
    encoder = codec.stream_encoder(request)
    return b"".join(encoder.encode(e) for e in events)


def _data_lines(raw: bytes) -> list[str]:
    assert raw.endswith(b"\n\n")
    blocks = raw.decode().split("\n\n")[:-1]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks)
    return [b[len("data: ") :] for b in blocks]


def test_stream_encoder_output_accumulates_in_the_openai_sdk() -> None:
    raw = _encode(_events(), _request(stream=True, include_usage=True))
    lines = _data_lines(raw)
    assert lines[-1] == "[DONE]"
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(line)) for line in lines[:-1]]
    for chunk in chunks:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Reading both files."
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    assert calls == [
        ("call_a", "read_file", '{"path":"a.py"}'),
        ("call_b", "read_file", '{"path":"b.py"}'),
    ]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (100, 30)
    assert final.id == "chatcmpl-s1" and final.model == "deepseek-reasoner"
    # Non-standard reasoning rides as reasoning_content deltas, in order.
    reasoning = "".join(
        c.choices[0].delta.model_extra.get("reasoning_content", "")
        for c in chunks
        if c.choices and c.choices[0].delta.model_extra
    )
    assert reasoning == "Let me look."
    # The first chunk announces the role; the usage chunk has no choices.
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    lines = _data_lines(_encode(_events(), _request(stream=True, include_usage=False)))
    chunks = [orjson.loads(line) for line in lines[:-1]]
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_first_tool_fragment_shape() -> None:
    lines = _data_lines(_encode(_events(), _request(stream=True)))
    deltas = [orjson.loads(line)["choices"][0]["delta"] for line in lines[:-2]]
    fragments = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert fragments[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "read_file", "arguments": ""},
    }
    assert fragments[1] == {"index": 0, "function": {"arguments": '{"path":'}}
    assert fragments[3]["index"] == 1


def test_stream_error_becomes_error_chunk_then_done() -> None:
    events: list[Event] = [
        MessageStart(id="chatcmpl-e", model="m"),
        PartStart(0, Text("")),
        TextDelta(0, "partial"),
        PartStop(0, Text("partial")),
        StreamError(GatewayError("overloaded", "upstream is overloaded")),
    ]
    lines = _data_lines(_encode(events, _request(stream=True)))
    assert lines[-1] == "[DONE]"
    assert orjson.loads(lines[-2]) == {
        "error": {
            "message": "upstream is overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }


def test_decoded_upstream_stream_reencodes_for_sdk() -> None:
    """Upstream chat stream -> canonical -> client chat stream, through the SDK."""
    request = _request(stream=True, include_usage=True)
    decoder = codec.stream_decoder(request)
    data = (FIXTURES / "streams" / "deepseek_reasoning_tool.sse").read_bytes()
    events = decoder.feed(data) + decoder.close()
    lines = _data_lines(_encode(events, request))
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for line in lines[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(line)))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "我来读取配置。"
    assert message.tool_calls is not None
    assert orjson.loads(message.tool_calls[0].function.arguments) == {
        "file_path": "/etc/app/配置.toml"
    }
    assert final.usage is not None and final.usage.prompt_tokens == 2100


# ------------------------------------------------------------------ render_error


@pytest.mark.parametrize(
    ("error", "expected_type"),
    [
        (
            GatewayError("invalid_request", "bad field", param="messages[2].content"),
            "invalid_request_error",
        ),
        (GatewayError("authentication", "no key"), "authentication_error"),
        (GatewayError("rate_limit", "slow down"), "rate_limit_error"),
        (GatewayError("api_error", "boom"), "server_error"),
        (GatewayError("billing", "pay"), "insufficient_quota"),
    ],
)
def test_render_error(error: GatewayError, expected_type: str) -> None:
    body = codec.render_error(error)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] == error.message
    assert body["error"]["type"] == expected_type
    assert body["error"]["param"] == error.param


def test_custom_tool_call_streams_as_custom_with_whole_input() -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    events: list[Event] = [
        MessageStart(id="chatcmpl-c", model="m"),
        PartStart(0, ToolCall(id="call_p", name="apply_patch", kind="custom")),
        ToolArgsDelta(0, orjson.dumps({"input": patch}).decode()),
        PartStop(
            0, ToolCall(id="call_p", name="apply_patch", kind="custom", arguments={"input": patch})
        ),
        MessageDelta("tool_use", Usage()),
        MessageStop(),
    ]
    lines = _data_lines(_encode(events, _request(stream=True, include_usage=False)))
    deltas = [orjson.loads(line)["choices"][0] for line in lines[:-1]]
    fragments = [d["delta"]["tool_calls"][0] for d in deltas if "tool_calls" in d["delta"]]
    assert fragments == [
        {
            "index": 0,
            "id": "call_p",
            "type": "custom",
            "custom": {"name": "apply_patch", "input": ""},
        },
        {"index": 0, "custom": {"input": patch}},
    ]
    assert deltas[-1]["finish_reason"] == "tool_calls"
