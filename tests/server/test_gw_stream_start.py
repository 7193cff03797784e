"""How a stream starts for the client: the input-token count its first event carries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from anthropic import AsyncAnthropic
from tests.fakes import Reply, ToolCall
from tests.fakes.core import Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

BASH = {"name": "Bash", "description": "Run a shell command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
LONG_PROMPT = "Read this carefully. " * 800  # ~16,000 characters, some 4,000 tokens


GEMINI_REQUEST: dict[str, Any] = {
    "model": "gem-client", "max_tokens": 2000,
    "messages": [{"role": "user", "content": LONG_PROMPT}]}


async def input_counts(client: AsyncAnthropic,
                       request: dict[str, Any]) -> tuple[list[int], list[int | None]]:
    """The input tokens a streamed answer to `request` reports: in its message_start, and in
    each message_delta."""
    starts, deltas = [], []
    async with client.messages.stream(**request) as stream:
        async for event in stream:
            if event.type == "message_start":
                starts.append(event.message.usage.input_tokens)
            elif event.type == "message_delta":
                deltas.append(event.usage.input_tokens)
    return starts, deltas


@pytest_asyncio.fixture(loop_scope="session")
async def client(fresh: Stack) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=fresh.gw.url, api_key="client-key", max_retries=0) as c:
        yield c


async def test_an_anthropic_upstream_that_reports_no_input_tokens_gets_an_estimate(
    fresh: Stack, client: AsyncAnthropic
) -> None:
    # A turn served by Gemini leaves our envelope (bg1.) in the history, so the next turn to
    # an Anthropic-compatible upstream is translated, not passed through...
    fresh.ge.queue(Reply(reasoning="Gemini thinks.", tool_calls=[ToolCall("Bash", {})]))
    request: dict[str, Any] = {
        "model": "gem-client", "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": [BASH],
        "messages": [{"role": "user", "content": LONG_PROMPT}],
    }
    first = await client.messages.create(**request)
    call = next(b for b in first.content if b.type == "tool_use")
    follow = {**request, "model": "claude-client", "messages": [
        *request["messages"],
        {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                          for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "a.txt"}]},
    ]}
    # ... and that upstream (as some Anthropic-compatible ones do) says 0 input tokens.
    fresh.an.queue(Reply(text="Done.", usage=Usage(input_tokens=0, output_tokens=2)))
    starts, deltas = await input_counts(client, follow)
    assert b"bg1." not in last(fresh.an).raw  # it was translated
    # Claude Code's context meter reads message_start: an estimate of the real request
    # (~4,000 tokens), not of an empty one.
    assert starts and starts[0] > 3000, starts
    assert deltas and deltas[-1] == starts[0], deltas


async def test_a_gemini_upstream_that_counts_no_input_gets_an_estimate(
    fresh: Stack, client: AsyncAnthropic
) -> None:
    # Gemini counts the prompt in each chunk's usageMetadata, so the gateway makes no
    # estimate in advance; when it says 0, one is made before the stream's start goes out.
    fresh.ge.queue(Reply(text="Done.", usage=Usage(input_tokens=0, output_tokens=2)))
    starts, deltas = await input_counts(client, GEMINI_REQUEST)
    assert starts and starts[0] > 3000, starts
    assert deltas and deltas[-1] == starts[0], deltas


async def test_a_gemini_upstream_that_counts_the_input_is_taken_at_its_word(
    fresh: Stack, client: AsyncAnthropic
) -> None:
    fresh.ge.queue(Reply(text="Done.", usage=Usage(input_tokens=1234, output_tokens=2)))
    starts, deltas = await input_counts(client, GEMINI_REQUEST)
    assert starts == [1234]
    assert deltas and deltas[-1] == 1234, deltas
