"""An OpenAI Chat Completions client (the official `openai` SDK) through the gateway, against
an OpenAI upstream (same protocol: passed through) and an Anthropic one (translated)."""

from __future__ import annotations

import json

import pytest
from openai import AsyncOpenAI, BadRequestError
from tests.fakes import Reply, ToolCall, Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

UPSTREAMS = {"gpt-client": "oa", "claude-client": "an"}


def expected_model(model: str) -> str:
    """openai -> openai passes through: the upstream's answer (its model name) comes back as
    it was sent; translated answers carry the name the client asked for."""
    return "gpt-up" if model == "gpt-client" else model
TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]



@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_chat_completion(fresh: Stack, client: AsyncOpenAI, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text="Hi there.", usage=Usage(input_tokens=20, output_tokens=3)))
    done = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=500
    )
    assert done.choices[0].message.content == "Hi there."
    assert done.choices[0].finish_reason == "stop"
    assert done.model == expected_model(model)
    assert done.usage is not None
    assert done.usage.prompt_tokens == 20 and done.usage.completion_tokens == 3
    assert last(fake).body["model"] == ("gpt-up" if model == "gpt-client" else "claude-up")


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_chat_completion_stream(fresh: Stack, client: AsyncOpenAI, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    text = "A streamed answer in several pieces."
    fake.queue(Reply(text=text, usage=Usage(input_tokens=20, output_tokens=8)))
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=500,
        stream=True, stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        assert chunk.model == expected_model(model)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 8 and usage.prompt_tokens == 20


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_tool_call_two_turns(fresh: Stack, client: AsyncOpenAI, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
               Reply(text="Sunny in Paris."))
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    stream = await client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, stream=True  # type: ignore[arg-type]
    )
    call_id, name, args, finish = "", "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                call_id = call.id or call_id
                if call.function is not None:
                    name = call.function.name or name
                    args += call.function.arguments or ""
    assert finish == "tool_calls"
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 24C"},
    ]
    done = await client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS  # type: ignore[arg-type]
    )
    assert done.choices[0].message.content == "Sunny in Paris."
    assert "sunny, 24C" in json.dumps(last(fake).body)


async def test_upstream_error_in_openai_shape(fresh: Stack, client: AsyncOpenAI) -> None:
    fresh.an.queue(Reply(status=400, error="max_tokens: too large"))
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(
            model="claude-client", messages=[{"role": "user", "content": "Hello"}]
        )
    assert "max_tokens: too large" in str(caught.value)
    body = caught.value.body
    assert isinstance(body, dict) and "message" in body
