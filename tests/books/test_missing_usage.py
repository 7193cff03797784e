"""An upstream that reports no usage (llama-cpp-python's server ignores
`stream_options.include_usage` and its answers may carry no `usage`): the gateway estimates
the counts from what went through, so clients and the books never see 0 output tokens.
Over real HTTP, with the fake OpenAI upstream in its `no_usage` mode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from openai import AsyncOpenAI
from tests.books.test_usage_records import rows, storage
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI, Reply, ToolCall

from babelgate.tokens import count_text, estimate_chars

pytestmark = pytest.mark.gateway

TEXT = ("The gateway estimates what the local model wrote, since its server never says. "
        "Counting characters is cheap and close enough for the books. ") * 6
ARGS = {"path": "/srv/app/settings.toml", "pattern": "listen_port = \\d+", "limit": 20}


async def start(factory: GatewayFactory, tmp_path: Path, fake: FakeOpenAI,
                preset: str | None = None) -> Any:
    return await factory({"local": fake}, routes={"m": "local/gemma"}, preset=preset,
                         extra={"storage": storage(tmp_path)})


def near(reported: int, text: str) -> bool:
    """`reported` is the gateway's estimate for `text` (characters / 3.6, babelgate.tokens)
    and of the order of the real cl100k count."""
    estimate = estimate_chars(len(text))
    return abs(reported - estimate) <= 2 and count_text(text) / 2 < reported < 2 * count_text(text)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_an_anthropic_client_sees_estimated_output_tokens(
    gateway_factory: GatewayFactory, tmp_path: Path, stream: bool
) -> None:
    async with FakeOpenAI(modes=("no_usage",)) as fake:
        gw = await start(gateway_factory, tmp_path, fake)
        fake.queue(Reply(text=TEXT, chunk_delay=0.001))
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k")
        request: Any = {"model": "m", "max_tokens": 500,
                        "messages": [{"role": "user", "content": "Explain the gateway. " * 20}]}
        if stream:
            async with client.messages.stream(**request) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(**request)
        assert message.content[0].text == TEXT  # type: ignore[union-attr]
        assert near(message.usage.output_tokens, TEXT), message.usage
        assert message.usage.input_tokens > 50
        [row] = await rows(tmp_path, 1)
        assert row["status"] == 200
        assert row["output_tokens"] == message.usage.output_tokens
        assert row["input_tokens"] == message.usage.input_tokens
        assert row["estimated"] == 1  # the books say these counts are babelgate's


async def test_tool_arguments_and_reasoning_count_as_output(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    async with FakeOpenAI(modes=("no_usage",)) as fake:
        gw = await start(gateway_factory, tmp_path, fake)
        reasoning = "First find where the port is configured, then read it. " * 4
        fake.queue(Reply(reasoning=reasoning, tool_calls=[ToolCall("grep", ARGS)]))
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k")
        async with client.messages.stream(
            model="m", max_tokens=500,
            messages=[{"role": "user", "content": "Which port?"}],
            tools=[{"name": "grep", "description": "Search a file",
                    "input_schema": {"type": "object", "properties": {
                        "path": {"type": "string"}, "pattern": {"type": "string"},
                        "limit": {"type": "integer"}}}}],
        ) as events:
            message = await events.get_final_message()
        assert message.stop_reason == "tool_use"
        # Reasoning and arguments both went through: more than either alone.
        assert message.usage.output_tokens > count_text(reasoning)
        [row] = await rows(tmp_path, 1)
        assert row["output_tokens"] == message.usage.output_tokens


async def test_a_chat_client_gets_a_usage_chunk_with_estimates(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # The llamacpp preset: the request is translated, so the gateway writes the usage chunk.
    async with FakeOpenAI(modes=("no_usage",), preset="llamacpp") as fake:
        gw = await start(gateway_factory, tmp_path, fake, preset="llamacpp")
        fake.queue(Reply(text=TEXT))
        client = AsyncOpenAI(base_url=gw.url + "/v1", api_key="k")
        chunks = await client.chat.completions.create(
            model="m", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Explain the gateway."}])
        usage = None
        async for chunk in chunks:
            usage = chunk.usage or usage
        assert usage is not None
        assert near(usage.completion_tokens, TEXT), usage
        assert usage.prompt_tokens > 0
        [row] = await rows(tmp_path, 1)
        assert row["output_tokens"] == usage.completion_tokens


async def test_reported_usage_is_kept_as_it_is(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    from tests.fakes.core import Usage
    gw = await start(gateway_factory, tmp_path, fake_openai)
    fake_openai.queue(Reply(text=TEXT, usage=Usage(input_tokens=321, output_tokens=7)))
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k")
    async with client.messages.stream(
        model="m", max_tokens=500, messages=[{"role": "user", "content": "Hi"}]
    ) as events:
        message = await events.get_final_message()
    assert (message.usage.input_tokens, message.usage.output_tokens) == (321, 7)
    [row] = await rows(tmp_path, 1)
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (321, 7, 0)


PROMPT = "Explain the gateway in some detail, please. " * 20


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_passed_through_answer_without_usage_is_booked_as_an_estimate(
    gateway_factory: GatewayFactory, tmp_path: Path, stream: bool
) -> None:
    """An OpenAI client to an OpenAI-compatible upstream without a preset: the bytes pass
    through untouched (the client sees no usage, as the upstream sent none), and the books
    hold an estimate of both counts, marked as one, in the usage table and the daily log."""
    async with FakeOpenAI(modes=("no_usage",)) as fake:
        logs = tmp_path / "logs"
        gw = await factory_with_logs(gateway_factory, tmp_path, fake, logs)
        fake.queue(Reply(text=TEXT, chunk_delay=0.001))
        client = AsyncOpenAI(base_url=gw.url + "/v1", api_key="k")
        request: Any = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            chunks = await client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True})
            text, usage = "", None
            async for chunk in chunks:
                usage = chunk.usage or usage
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        else:
            answer = await client.chat.completions.create(**request)
            text, usage = answer.choices[0].message.content or "", answer.usage
        assert text == TEXT
        assert usage is None  # passed through: what the upstream said, nothing added
        [row] = await rows(tmp_path, 1)
        assert row["status"] == 200 and row["estimated"] == 1
        assert near(row["output_tokens"], TEXT), row
        # The input: the request's text estimated (whole: from the parsed request; a
        # stream: from the body's size, as the request is let go of once it streams).
        assert count_text(PROMPT) / 2 < row["input_tokens"] < 2 * count_text(PROMPT) + 40, row
        line = await log_line(logs)
        assert " | estimated=true" in line
        assert f" | output_tokens={row['output_tokens']} | " in line


async def test_a_passed_through_answer_with_usage_is_not_an_estimate(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    from tests.fakes.core import Usage
    async with FakeOpenAI() as fake:
        logs = tmp_path / "logs"
        gw = await factory_with_logs(gateway_factory, tmp_path, fake, logs)
        fake.queue(Reply(text=TEXT, usage=Usage(input_tokens=11, output_tokens=5)))
        client = AsyncOpenAI(base_url=gw.url + "/v1", api_key="k")
        answer = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}])
        assert answer.usage is not None and answer.usage.completion_tokens == 5
        [row] = await rows(tmp_path, 1)
        assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (11, 5, 0)
        assert "estimated" not in await log_line(logs)


async def factory_with_logs(factory: GatewayFactory, tmp_path: Path, fake: FakeOpenAI,
                            logs: Path) -> Any:
    return await factory({"local": fake}, routes={"m": "local/gemma"},
                         extra={"storage": storage(tmp_path), "logs": {"dir": str(logs)}})


async def log_line(logs: Path, timeout: float = 5.0) -> str:
    """The daily log's one line, once written (lines are written in batches)."""
    deadline = time.monotonic() + timeout
    path = logs / f"babelgate-{time.strftime('%Y-%m-%d')}.log"
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    [line] = path.read_text().splitlines()
    return line
