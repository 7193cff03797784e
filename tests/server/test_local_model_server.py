"""Claude Code's requests reaching an OpenAI-compatible local server configured as a new user
would (`type: openai`, no preset, a `max_tokens` clamp): the server must see the limit in the
field it reads, no reasoning control it never declared, and one system message. Tried with
llama-cpp-python's server, the limit sent as max_completion_tokens was ignored (431 tokens
for a clamp of 256) and a second system message broke its chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from tests.fakes import FakeOpenAI, Reply

pytestmark = [pytest.mark.gateway]

# A Claude Code turn: its system prompt, a later system reminder as Claude Code sends them
# mid-conversation, thinking on, a large max_tokens.
TURN: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16000,
    "thinking": {"type": "enabled", "budget_tokens": 8000},
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": "one word back please"},
    ],
}


@pytest.mark.parametrize("preset", [None, "llamacpp", "lmstudio"])
async def test_a_local_server_gets_what_it_reads(
    gateway_factory: Any, tmp_path: Path, preset: str | None
) -> None:
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="Hi"))
        config = fake.provider_config(max_tokens=256)
        if preset:
            config["preset"] = preset
        gateway = await gateway_factory({"local": config}, model="gemma-3-270m")
        async with AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0) as client:
            answer = await client.messages.create(**TURN)
    assert answer.content[0].text == "Hi"
    body = fake.requests[-1].body
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert not {"reasoning_effort", "thinking", "enable_thinking", "reasoning"} & set(body)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert "plan mode" in body["messages"][0]["content"]  # folded in, not lost
    assert fake.rejections == []


async def test_openai_itself_keeps_its_own_fields(gateway_factory: Any) -> None:
    """`preset: openai` (what api.openai.com gets without one): max_completion_tokens and
    reasoning_effort, as OpenAI's reasoning models require."""
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="Hi"))
        config = fake.provider_config(max_tokens=256, preset="openai")
        gateway = await gateway_factory({"oa": config}, model="gpt-5")
        async with AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0) as client:
            await client.messages.create(**TURN)
    body = fake.requests[-1].body
    assert body["max_completion_tokens"] == 256 and "max_tokens" not in body
    assert "reasoning_effort" in body
