"""The official Google GenAI Python SDK (`google-genai`) as a client of the gateway, its
base_url pointed at babelgate: plain and streamed generation, a function-calling loop, token
counting, models, and errors, against each upstream family."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types
from tests.fakes import Reply, ToolCall, Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

UPSTREAMS = {"gem-client": "ge", "claude-client": "an", "gpt-client": "oa",
             "resp-client": "rs"}
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters=types.Schema(type=types.Type.OBJECT,
                            properties={"city": types.Schema(type=types.Type.STRING)},
                            required=["city"]),
)])
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


@pytest_asyncio.fixture(loop_scope="session")
async def sdk(fresh: Stack) -> AsyncIterator[genai.Client]:
    client = genai.Client(api_key="AIza-sdk-client-key",
                          http_options=types.HttpOptions(base_url=fresh.gw.url))
    try:
        yield client
    finally:
        await client.aio.aclose()


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_generate(fresh: Stack, sdk: genai.Client, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text="Hi there.", usage=Usage(input_tokens=20, output_tokens=3)))
    answer = await sdk.aio.models.generate_content(
        model=model, contents="Hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.2,
                                           max_output_tokens=200))
    assert answer.text == "Hi there."
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP
    usage = answer.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (20, 3)
    assert "Be brief." in str(last(fake).body)


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_generate_stream(fresh: Stack, sdk: genai.Client, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    text = "A streamed answer in several pieces."
    fake.queue(Reply(text=text, usage=Usage(input_tokens=20, output_tokens=8)))
    pieces, finish, usage = [], None, None
    async for chunk in await sdk.aio.models.generate_content_stream(model=model,
                                                                    contents="Hello"):
        pieces.append(chunk.text or "")
        if chunk.candidates and chunk.candidates[0].finish_reason:
            finish = chunk.candidates[0].finish_reason
        usage = chunk.usage_metadata or usage
    assert "".join(pieces) == text
    assert finish == types.FinishReason.STOP
    assert usage is not None and usage.candidates_token_count == 8


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_function_calling_loop(fresh: Stack, sdk: genai.Client, model: str) -> None:
    """The SDK's chat keeps the model's turn (signatures included) and sends the function's
    response back; the upstream gets it as its own tool result."""
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(reasoning="Use the tool.",
                     tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
               Reply(text="Sunny in Paris."))
    config = types.GenerateContentConfig(
        tools=[WEATHER], automatic_function_calling=NO_AUTO_CALLS,
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048),
        max_output_tokens=8192)
    chat = sdk.aio.chats.create(model=model, config=config)
    first = await chat.send_message("Weather in Paris?")
    assert first.function_calls is not None and len(first.function_calls) == 1
    call = first.function_calls[0]
    assert call.name == "get_weather" and call.args == {"city": "Paris"}
    second = await chat.send_message(types.Part.from_function_response(
        name="get_weather", response={"output": "sunny, 24C"}))
    assert second.text == "Sunny in Paris."
    assert "sunny, 24C" in str(last(fake).body)
    assert fake.rejections == []
    if model == "claude-client":
        # The SDK holds thoughtSignature as bytes and re-encodes it: Anthropic's signed
        # thinking still came back whole (the fake verifies the signature).
        turn = [m for m in last(fake).body["messages"] if m["role"] == "assistant"][-1]
        assert turn["content"][0]["type"] == "thinking", turn


async def test_count_tokens_and_models(fresh: Stack, sdk: genai.Client) -> None:
    counted = await sdk.aio.models.count_tokens(model="claude-client", contents="Hello there")
    assert counted.total_tokens is not None and counted.total_tokens > 0
    model = await sdk.aio.models.get(model="gem-client")
    assert model.name == "models/gem-client"
    names = [m.name async for m in await sdk.aio.models.list()]
    assert "models/claude-client" in names


async def test_errors_raise_the_sdks_exceptions(fresh: Stack, sdk: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as missing:
        await sdk.aio.models.generate_content(model="no-such-model", contents="Hello")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    fresh.an.queue(Reply(status=400, error="max_tokens: too large"))
    with pytest.raises(errors.ClientError) as refused:
        await sdk.aio.models.generate_content(model="claude-client", contents="Hello")
    assert refused.value.code == 400 and "max_tokens: too large" in str(refused.value.message)
    fresh.oa.queue(Reply(status=503, error="overloaded"))
    with pytest.raises(errors.ServerError) as busy:
        await sdk.aio.models.generate_content(model="gpt-client", contents="Hello")
    assert busy.value.code == 503
