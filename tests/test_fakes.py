"""The fake upstreams themselves: they must be as strict as the real providers and render
scripted replies in a form the official SDKs accept. A fake that accepts anything would hide
gateway bugs, so each rule gets a test that shows it refusing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from tests.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeResponses,
    Reply,
    ToolCall,
    Usage,
    sign,
)
from tests.fakes.core import free_port

BASH: Any = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=orjson.dumps(body), headers={"content-type": "application/json", **headers}
        ) as resp,
    ):
        raw = await resp.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        return resp.status, parsed, raw


def sse_data(raw: bytes) -> list[Any]:
    return [
        orjson.loads(line[6:])
        for line in raw.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


# ================================================================ OpenAI Chat


def oai(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0)


async def test_openai_text_reply_and_recorded_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(
        Reply(text="Hello there", usage=Usage(input_tokens=50, output_tokens=3, cached_tokens=20))
    )
    out = await oai(fake_openai).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "Hello there"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 50
    assert out.usage.prompt_tokens_details.cached_tokens == 20  # type: ignore[union-attr]
    rec = fake_openai.requests[-1]
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer test-key"
    assert rec.body["messages"][0]["content"] == "hi"


async def test_openai_stream_tool_calls_and_usage_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(
        Reply(
            text="Running",
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris, France"}, id="call_1"),
                ToolCall("get_time", {"zone": "Europe/Paris"}),
            ],
        )
    )
    client = oai(fake_openai)
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish, usage, text = None, None, ""
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names[call.index] = call.function.name
                piece = call.function.arguments if call.function else None
                args[call.index] = args.get(call.index, "") + (piece or "")
    assert text == "Running"
    assert names == {0: "get_weather", 1: "get_time"}
    assert orjson.loads(args[0]) == {"city": "Paris, France"}
    assert finish == "tool_calls"
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    # The raw stream ends with [DONE]; without include_usage there is no usage chunk.
    fake_openai.queue(Reply(text="x"))
    _, _, raw = await post(
        fake_openai.base_url + "/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": "Bearer test-key"},
    )
    assert raw.decode().rstrip().endswith("data: [DONE]")
    assert all(not c.get("usage") for c in sse_data(raw))


async def test_openai_rejects_unknown_fields_unless_preset_allows(fake_openai: FakeOpenAI) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled"},
    }
    status, err, _ = await post(
        fake_openai.base_url + "/chat/completions", body, {"Authorization": "Bearer test-key"}
    )
    assert status == 400
    assert err["error"]["message"] == "Unrecognized request argument supplied: thinking"
    async with FakeOpenAI(preset="deepseek") as deepseek:
        status, _, _ = await post(
            deepseek.base_url + "/chat/completions", body, {"Authorization": "Bearer test-key"}
        )
        assert status == 200


async def test_openai_auth(fake_openai: FakeOpenAI) -> None:
    bad = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


CALL = {"id": "call_a", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (
            [
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
            ],
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "user", "content": "next"},
            ],
            "did not have response messages: call_a",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
            ],
            "string too short",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
                {"role": "tool", "tool_call_id": "call_a", "content": "again"},
            ],
            "must be a response to a preceeding message",
        ),
        ([{"role": "model", "content": "x"}], "Invalid value: 'model'"),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {**CALL, "function": {"name": "functions.Bash:0", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
            ],
            "does not match pattern",
        ),
    ],
)
async def test_openai_message_rules(
    fake_openai: FakeOpenAI, messages: list[Any], needle: str
) -> None:
    status, err, _ = await post(
        fake_openai.base_url + "/chat/completions",
        {"model": "m", "messages": messages},
        {"Authorization": "Bearer test-key"},
    )
    assert status == 400, err
    assert needle in err["error"]["message"]


async def test_openai_valid_tool_round_accepted(fake_openai: FakeOpenAI) -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_a", "content": "r"},
    ]
    status, body, _ = await post(
        fake_openai.base_url + "/chat/completions",
        {"model": "m", "messages": messages},
        {"Authorization": "Bearer test-key"},
    )
    assert status == 200, body


async def test_deepseek_thinking_requires_reasoning_content() -> None:
    async with FakeOpenAI(preset="deepseek", modes=["deepseek_thinking"]) as fake:
        client = oai(fake)
        tools: Any = [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
                },
            }
        ]
        first = await client.chat.completions.create(
            model="deepseek-chat",
            tools=tools,
            messages=[{"role": "user", "content": "RUN<<echo hi>>"}],
            extra_body={"thinking": {"type": "enabled"}},
        )
        msg = first.choices[0].message
        calls: Any = msg.tool_calls
        assert calls and calls[0].function.arguments == '{"command":"echo hi"}'
        reasoning = msg.model_extra["reasoning_content"]  # type: ignore[index]
        assert reasoning
        history: list[Any] = [
            {"role": "user", "content": "RUN<<echo hi>>"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [c.model_dump() for c in calls],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "hi"},
        ]
        with pytest.raises(openai.BadRequestError, match="Missing reasoning_content field"):
            await client.chat.completions.create(
                model="deepseek-chat",
                tools=tools,
                messages=history,
                extra_body={"thinking": {"type": "enabled"}},
            )
        history[1]["reasoning_content"] = reasoning
        second = await client.chat.completions.create(
            model="deepseek-chat",
            tools=tools,
            messages=history,
            extra_body={"thinking": {"type": "enabled"}},
        )
        assert second.choices[0].message.content == "The command printed: hi"


async def test_openai_brain_uses_array_command_shape(fake_openai: FakeOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "shell",
                "parameters": {
                    "type": "object",
                    "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                },
            },
        }
    ]
    out = await oai(fake_openai).chat.completions.create(
        model="m",
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "please RUN<<cat marker.txt>> now"}],
    )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert orjson.loads(call.function.arguments) == {  # type: ignore[union-attr]
        "command": ["bash", "-lc", "cat marker.txt"]
    }
    assert out.choices[0].finish_reason == "tool_calls"


async def test_scripted_error_and_cut_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(Reply(status=429, error="Slow down", headers={"retry-after": "1"}))
    with pytest.raises(openai.RateLimitError, match="Slow down"):
        await oai(fake_openai).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    fake_openai.queue(Reply(text="a long answer that will be cut", cut_stream_after=2))
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(
            fake_openai.base_url + "/chat/completions",
            {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            {"Authorization": "Bearer test-key"},
        )


async def test_raw_stream_escape_hatch(fake_openai: FakeOpenAI) -> None:
    broken = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": '{"command": "l'},
                        }
                    ]
                },
            }
        ]
    }
    fake_openai.queue(Reply(raw=[broken, "data: [DONE]\n\n"]))
    _, _, raw = await post(
        fake_openai.base_url + "/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        {"Authorization": "Bearer test-key"},
    )
    assert raw == b"data: " + orjson.dumps(broken) + b"\n\ndata: [DONE]\n\n"


# ================================================================ Anthropic


def ant(fake: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key="test-key", max_retries=0)


async def test_anthropic_stream_helper_accumulates(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.queue(
        Reply(
            reasoning="Think first.",
            text="Let me look.",
            tool_calls=[ToolCall("Bash", {"command": "ls -la"}, id="toolu_1")],
            usage=Usage(input_tokens=1200, cached_tokens=1000),
        )
    )
    async with ant(fake_anthropic).messages.stream(
        model="claude-test",
        max_tokens=4096,
        tools=[BASH],
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "list files"}],
    ) as stream:
        final = await stream.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text", "tool_use"]
    thinking, text, tool = final.content
    assert thinking.thinking == "Think first."  # type: ignore[union-attr]
    assert thinking.signature == sign("Think first.")  # type: ignore[union-attr]
    assert text.text == "Let me look."  # type: ignore[union-attr]
    assert tool.input == {"command": "ls -la"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 200 and final.usage.cache_read_input_tokens == 1000
    assert final.usage.output_tokens > 1


async def test_anthropic_event_order(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.queue(Reply(text="hi", tool_calls=[ToolCall("Bash", {"command": "x"})]))
    _, _, raw = await post(
        fake_anthropic.url + "/v1/messages",
        {
            "model": "c",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        {"x-api-key": "test-key", "anthropic-version": "2023-06-01"},
    )
    events = sse_data(raw)
    names = [e["type"] for e in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert events[0]["message"]["usage"]["input_tokens"] > 0
    # Each block closes before the next opens.
    open_blocks = 0
    for event in events:
        open_blocks += {"content_block_start": 1, "content_block_stop": -1}.get(event["type"], 0)
        assert open_blocks in (0, 1)
    event_lines = [line for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert event_lines[0] == "event: message_start"


async def test_anthropic_rejects_empty_text_block(fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="text content blocks must be non-empty"):
        await ant(fake_anthropic).messages.create(
            model="c",
            max_tokens=100,
            messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}],
        )


async def test_anthropic_thinking_signature_round_trip(fake_anthropic: FakeAnthropic) -> None:
    client = ant(fake_anthropic)
    thinking: Any = {"type": "enabled", "budget_tokens": 2000}
    first = await client.messages.create(
        model="c",
        max_tokens=4000,
        thinking=thinking,
        tools=[BASH],
        messages=[{"role": "user", "content": "RUN<<echo 7>>"}],
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    tool_id = first.content[1].id  # type: ignore[union-attr]
    good: Any = [b.model_dump(exclude_none=True) for b in first.content]
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "7"}],
    }

    def history(blocks: Any) -> Any:
        return [
            {"role": "user", "content": "RUN<<echo 7>>"},
            {"role": "assistant", "content": blocks},
            result,
        ]

    ok = await client.messages.create(
        model="c",
        max_tokens=4000,
        thinking=thinking,
        tools=[BASH],
        messages=history(good),
    )
    assert ok.content[-1].text == "The command printed: 7"  # type: ignore[union-attr]
    cases = [
        ([{**good[0], "thinking": good[0]["thinking"] + " "}, good[1]], "Invalid `signature`"),
        ([{**good[0], "cache_control": {"type": "ephemeral"}}, good[1]], "cache_control"),
        ([good[1]], "must start with a thinking block"),
    ]
    for blocks, needle in cases:
        with pytest.raises(anthropic.BadRequestError, match=needle):
            await client.messages.create(
                model="c",
                max_tokens=4000,
                thinking=thinking,
                tools=[BASH],
                messages=history(blocks),
            )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10},
            "model: Field required",
        ),
        (
            {"model": "c", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (
            {
                "model": "c",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "client_metadata": {},
            },
            "client_metadata: Extra inputs are not permitted",
        ),
        (
            {
                "model": "c",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "tool_use",
                                "id": "functions.Bash:0",
                                "name": "Bash",
                                "input": {},
                            }
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "functions.Bash:0",
                                "content": "r",
                            }
                        ],
                    },
                ],
            },
            "String should match pattern",
        ),
        (
            {
                "model": "c",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "without `tool_result` blocks",
        ),
        (
            {
                "model": "c",
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "r"}],
                    }
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": "c",
                "max_tokens": 2000,
                "thinking": {"type": "enabled", "budget_tokens": 500},
                "messages": [{"role": "user", "content": "x"}],
            },
            "greater than or equal to 1024",
        ),
        (
            {
                "model": "c",
                "max_tokens": 2000,
                "thinking": {"type": "enabled", "budget_tokens": 2000},
                "messages": [{"role": "user", "content": "x"}],
            },
            "must be greater than",
        ),
    ],
)
async def test_anthropic_request_rules(
    fake_anthropic: FakeAnthropic, body: Any, needle: str
) -> None:
    status, err, _ = await post(
        fake_anthropic.url + "/v1/messages",
        body,
        {"x-api-key": "test-key", "anthropic-version": "2023-06-01"},
    )
    assert status == 400, err
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]


async def test_anthropic_headers_required(fake_anthropic: FakeAnthropic) -> None:
    body = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    status, err, _ = await post(
        fake_anthropic.url + "/v1/messages", body, {"x-api-key": "test-key"}
    )
    assert status == 400 and "anthropic-version" in err["error"]["message"]
    status, err, _ = await post(
        fake_anthropic.url + "/v1/messages", body, {"anthropic-version": "2023-06-01"}
    )
    assert status == 401 and err["error"]["type"] == "authentication_error"
    assert len(fake_anthropic.rejections) == 2


async def test_anthropic_count_tokens(fake_anthropic: FakeAnthropic) -> None:
    client = ant(fake_anthropic)
    counted = await client.messages.count_tokens(
        model="c", messages=[{"role": "user", "content": "hello " * 400}]
    )
    assert 500 < counted.input_tokens < 1000
    status, err, _ = await post(
        fake_anthropic.url + "/v1/messages/count_tokens",
        {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        {"x-api-key": "test-key", "anthropic-version": "2023-06-01"},
    )
    assert status == 400 and "max_tokens" in err["error"]["message"]


async def test_anthropic_brain_without_tools_answers_text(fake_anthropic: FakeAnthropic) -> None:
    out = await ant(fake_anthropic).messages.create(
        model="claude-haiku",
        max_tokens=100,
        messages=[{"role": "user", "content": "Generate a title"}],
    )
    assert out.content[0].type == "text" and out.stop_reason == "end_turn"


# ================================================================ Gemini


GEMINI_HEADERS = {"x-goog-api-key": "test-key"}


def gemini_url(fake: FakeGemini, action: str = "generateContent", model: str = "gemini-t") -> str:
    return f"{fake.url}/v1beta/models/{model}:{action}"


def decl(parameters: Any) -> Any:
    return [{"functionDeclarations": [{"name": "run", "parameters": parameters}]}]


@pytest.mark.parametrize(
    "key",
    [
        "$schema",
        "additionalProperties",
        "exclusiveMinimum",
        "const",
        "propertyNames",
        "$ref",
        "$defs",
    ],
)
async def test_gemini_rejects_unsupported_schema_keys(fake_gemini: FakeGemini, key: str) -> None:
    params = {"type": "object", "properties": {"n": {"type": "integer", key: 1}}}
    status, err, _ = await post(
        gemini_url(fake_gemini),
        {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": decl(params)},
        GEMINI_HEADERS,
    )
    assert status == 400
    assert err["error"]["status"] == "INVALID_ARGUMENT"
    assert f'Unknown name "{key}"' in err["error"]["message"]


async def test_gemini_accepts_property_named_like_keyword(fake_gemini: FakeGemini) -> None:
    params = {"type": "object", "properties": {"const": {"type": "string"}}}
    status, body, _ = await post(
        gemini_url(fake_gemini),
        {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": decl(params)},
        GEMINI_HEADERS,
    )
    assert status == 200, body


def call_turn(*names: str) -> Any:
    return {"role": "model", "parts": [{"functionCall": {"name": n, "args": {}}} for n in names]}


def answer_turn(*names: str) -> Any:
    return {
        "role": "user",
        "parts": [{"functionResponse": {"name": n, "response": {"r": 1}}} for n in names],
    }


USER = {"role": "user", "parts": [{"text": "go"}]}


@pytest.mark.parametrize(
    ("contents", "needle"),
    [
        ([USER, call_turn("a", "b"), answer_turn("a"), answer_turn("b")], "number of function"),
        ([USER, call_turn("a"), answer_turn("zzz")], "number of function"),
        ([USER, {"role": "model", "parts": [{"text": "hi"}]}], "end with a user turn"),
        ([{"role": "assistant", "parts": [{"text": "x"}]}], "valid role"),
        ([{"role": "user", "parts": [{"text": ""}]}], "empty text parameter"),
        ([USER, call_turn("a"), USER], "function call turn"),
    ],
)
async def test_gemini_history_rules(fake_gemini: FakeGemini, contents: Any, needle: str) -> None:
    status, err, _ = await post(gemini_url(fake_gemini), {"contents": contents}, GEMINI_HEADERS)
    assert status == 400, err
    assert needle in err["error"]["message"]


async def test_gemini_parallel_answers_in_one_turn_accepted(fake_gemini: FakeGemini) -> None:
    contents = [USER, call_turn("a", "b"), answer_turn("b", "a")]
    status, body, _ = await post(gemini_url(fake_gemini), {"contents": contents}, GEMINI_HEADERS)
    assert status == 200, body


async def test_gemini3_thought_signatures() -> None:
    async with FakeGemini(modes=["gemini3"]) as fake:
        tools = decl({"type": "object", "properties": {"command": {"type": "string"}}})
        tools[0]["functionDeclarations"][0]["name"] = "shell"
        user = {"role": "user", "parts": [{"text": "RUN<<echo 5>>"}]}
        status, first, _ = await post(
            gemini_url(fake), {"contents": [user], "tools": tools}, GEMINI_HEADERS
        )
        assert status == 200
        parts = first["candidates"][0]["content"]["parts"]
        assert parts[0]["functionCall"] == {"name": "shell", "args": {"command": "echo 5"}}
        assert parts[0]["thoughtSignature"]
        answer = answer_turn("shell")
        history = [user, {"role": "model", "parts": parts}, answer]
        status, second, _ = await post(
            gemini_url(fake), {"contents": history, "tools": tools}, GEMINI_HEADERS
        )
        assert status == 200, second
        unsigned = [user, call_turn("shell"), answer]
        status, err, _ = await post(
            gemini_url(fake), {"contents": unsigned, "tools": tools}, GEMINI_HEADERS
        )
        assert status == 400
        assert "Function call is missing a thought_signature" in err["error"]["message"]


async def test_gemini_sse_and_array_streams(fake_gemini: FakeGemini) -> None:
    body = {"contents": [USER], "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    fake_gemini.queue(Reply(text="Hello from a longer streamed answer", reasoning="Hmm."))
    status, _, raw = await post(
        gemini_url(fake_gemini, "streamGenerateContent") + "?alt=sse", body, GEMINI_HEADERS
    )
    assert status == 200
    chunks = sse_data(raw)
    assert len(chunks) >= 2
    assert all(c["usageMetadata"]["promptTokenCount"] > 0 for c in chunks)
    assert chunks[0]["candidates"][0]["content"]["parts"][0]["thought"] is True
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["thoughtsTokenCount"] > 0
    text = "".join(
        p["text"]
        for c in chunks
        for p in c["candidates"][0]["content"]["parts"]
        if not p.get("thought")
    )
    assert text == "Hello from a longer streamed answer"
    status, array, _ = await post(
        gemini_url(fake_gemini, "streamGenerateContent"), {"contents": [USER]}, GEMINI_HEADERS
    )
    assert status == 200 and isinstance(array, list)


async def test_gemini_auth_count_and_snake_case(fake_gemini: FakeGemini) -> None:
    status, err, _ = await post(gemini_url(fake_gemini), {"contents": [USER]}, {})
    assert status == 401 and err["error"]["status"] == "UNAUTHENTICATED"
    status, body, _ = await post(
        gemini_url(fake_gemini, "countTokens"), {"contents": [USER]}, GEMINI_HEADERS
    )
    assert status == 200 and body["totalTokens"] > 0
    status, body, _ = await post(
        gemini_url(fake_gemini),
        {"contents": [USER], "generation_config": {"max_output_tokens": 5}},
        GEMINI_HEADERS,
    )
    assert status == 200, body
    status, err, _ = await post(
        gemini_url(fake_gemini),
        {"contents": [USER], "generationConfig": {"maxTokens": 5}},
        GEMINI_HEADERS,
    )
    assert status == 400 and 'Unknown name "maxTokens"' in err["error"]["message"]


# ================================================================ Responses


async def test_responses_stream_sequence_and_sdk(fake_responses: FakeResponses) -> None:
    fake_responses.queue(
        Reply(reasoning="Plan.", text="Done.", tool_calls=[ToolCall("shell", {"command": ["ls"]})])
    )
    client = openai.AsyncOpenAI(base_url=fake_responses.base_url, api_key="test-key", max_retries=0)
    async with client.responses.stream(
        model="gpt-test",
        input="hi",
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low", "summary": "auto"},
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "Done."
    assert final.usage is not None and final.usage.input_tokens > 0


async def test_responses_rules(fake_responses: FakeResponses) -> None:
    url = fake_responses.base_url + "/responses"
    auth = {"Authorization": "Bearer test-key"}
    orphan = {
        "model": "m",
        "input": [
            {"role": "user", "content": "x"},
            {"type": "function_call_output", "call_id": "call_zz", "output": "r"},
        ],
    }
    status, err, _ = await post(url, orphan, auth)
    assert status == 400 and "No tool call found" in err["error"]["message"]
    status, err, _ = await post(url, {"model": "m", "input": "x", "thinking": {}}, auth)
    assert status == 400 and "thinking" in err["error"]["message"]
    nested = {
        "model": "m",
        "input": "x",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    status, err, _ = await post(url, nested, auth)
    assert status == 400 and "tools[0].name" in err["error"]["message"]
    status, _, _ = await post(url, {"model": "m", "input": "x"}, {"Authorization": "Bearer no"})
    assert status == 401
    paired = {
        "model": "m",
        "input": [
            {"role": "user", "content": "x"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "r"},
        ],
    }
    status, body, _ = await post(url, paired, auth)
    assert status == 200, body
    assert body["output"][0]["content"][0]["text"] == "The command printed: r"


async def test_anthropic_system_messages_need_the_beta(fake_anthropic: FakeAnthropic) -> None:
    body = {
        "model": "c",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "system", "content": "# Environment"},
        ],
    }
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    status, err, _ = await post(fake_anthropic.url + "/v1/messages", body, headers)
    assert status == 400 and "messages.1.role" in err["error"]["message"]
    beta = {**headers, "anthropic-beta": "claude-code-20250219,per-turn-control-2026-07-01"}
    status, _, _ = await post(fake_anthropic.url + "/v1/messages", body, beta)
    assert status == 200


async def test_anthropic_omitted_thinking_display(fake_anthropic: FakeAnthropic) -> None:
    out = await ant(fake_anthropic).messages.create(
        model="c",
        max_tokens=100,
        thinking={"type": "adaptive", "display": "omitted"},
        messages=[{"role": "user", "content": "hi"}],
    )
    thinking = out.content[0]
    assert thinking.type == "thinking" and thinking.thinking == ""
    assert thinking.signature == sign("")


async def test_responses_encrypted_reasoning_must_be_ours(fake_responses: FakeResponses) -> None:
    url = fake_responses.base_url + "/responses"
    auth = {"Authorization": "Bearer test-key"}
    first_body = {
        "model": "m",
        "input": "x",
        "store": False,
        "reasoning": {"effort": "low"},
        "include": ["reasoning.encrypted_content"],
    }
    status, first, _ = await post(url, first_body, auth)
    assert status == 200
    reasoning = first["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"]
    history = [{"role": "user", "content": "x"}, reasoning, {"role": "user", "content": "y"}]
    status, _, _ = await post(url, {**first_body, "input": history}, auth)
    assert status == 200
    forged = {**reasoning, "encrypted_content": "gAAAA-not-ours"}
    status, err, _ = await post(url, {**first_body, "input": [history[0], forged]}, auth)
    assert status == 404 and "not persisted" in err["error"]["message"]


async def test_gemini3_accepts_documented_skip_signature() -> None:
    async with FakeGemini(modes=["gemini3"]) as fake:
        turn = call_turn("a")
        turn["parts"][0]["thoughtSignature"] = "skip_thought_signature_validator"
        status, body, _ = await post(
            gemini_url(fake), {"contents": [USER, turn, answer_turn("a")]}, GEMINI_HEADERS
        )
        assert status == 200, body


async def test_fake_runs_as_a_process(tmp_path: Path) -> None:
    """`python -m tests.fakes` serves the brain and can dump what it received."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes",
        "--protocol",
        "openai",
        "--port",
        str(port),
        "--dump",
        str(tmp_path),
        cwd=str(Path(__file__).resolve().parent.parent),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 15)
        assert f"127.0.0.1:{port}/v1" in line.decode()
        status, body, _ = await post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            {"Authorization": "Bearer test-key"},
        )
        assert status == 200 and body["choices"][0]["message"]["content"] == "Fake reply."
        for _ in range(50):
            if list(tmp_path.glob("*.json")):
                break
            await asyncio.sleep(0.1)
        dumped = orjson.loads((tmp_path / "001.json").read_bytes())
        assert dumped["body"]["messages"][0]["content"] == "hi"
    finally:
        process.terminate()
        await process.wait()
