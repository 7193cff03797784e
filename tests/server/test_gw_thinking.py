"""Thinking round trips through the gateway, over two turns with a tool call in between:
what the upstream needs back on the next turn must reach it, and what it would reject must
not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from anthropic import AsyncAnthropic
from tests.fakes import Reply, ToolCall
from tests.fakes.core import opaque_ok, sign

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}
ARGS = {"command": "ls"}
THOUGHT = "The user wants a listing; I will run ls."


@pytest_asyncio.fixture(loop_scope="session")
async def client(fresh: Stack) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=fresh.gw.url, api_key="client-key", max_retries=0) as c:
        yield c


def first_request(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [BASH],
        "messages": [{"role": "user", "content": "List the files"}],
    }


async def ask(client: AsyncAnthropic, request: dict[str, Any], stream: bool) -> Any:
    if not stream:
        return await client.messages.create(**request)
    async with client.messages.stream(**request) as helper:
        return await helper.get_final_message()


def second_request(request: dict[str, Any], first: Any) -> dict[str, Any]:
    """The client's next turn: the assistant message echoed as received, plus the result."""
    call = next(b for b in first.content if b.type == "tool_use")
    return {**request, "messages": [
        *request["messages"],
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "a.txt\nb.txt"},
        ]},
    ]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_deepseek_reasoning_round_trip(
    fresh: Stack, client: AsyncAnthropic, stream: bool
) -> None:
    fresh.ds.queue(Reply(reasoning=THOUGHT, tool_calls=[ToolCall("Bash", ARGS)]),
                   Reply(text="Two files."))
    request = first_request("ds-client")
    first = await ask(client, request, stream)
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "tool_use"]
    assert first.content[0].thinking == THOUGHT
    assert first.content[0].signature  # something the client must echo
    assert first.content[1].input == ARGS

    final = await ask(client, second_request(request, first), stream)
    assert [b.text for b in final.content if b.type == "text"] == ["Two files."]
    # The fake (deepseek_thinking mode) rejects a tool-call turn without reasoning_content.
    sent = last(fresh.ds).body
    assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
    assert assistant["reasoning_content"] == THOUGHT
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == ARGS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_gemini_thought_signature_round_trip(
    fresh: Stack, client: AsyncAnthropic, stream: bool
) -> None:
    fresh.ge.queue(Reply(text="Listing.", tool_calls=[ToolCall("Bash", ARGS)]),
                   Reply(text="Two files."))
    request = first_request("gem-client")
    first = await ask(client, request, stream)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [ARGS]

    final = await ask(client, second_request(request, first), stream)
    assert [b.text for b in final.content if b.type == "text"] == ["Two files."]
    # The fake (gemini3 mode) rejects a functionCall that lost its thoughtSignature; check it
    # came back, on the call, as the very token the fake issued.
    sent = last(fresh.ge).body
    model_turn = next(c for c in sent["contents"] if c["role"] == "model")
    call_part = next(p for p in model_turn["parts"] if "functionCall" in p)
    assert call_part["functionCall"]["name"] == "Bash"
    signature = call_part.get("thoughtSignature") or call_part.get("thought_signature")
    assert opaque_ok(signature)
    assert fresh.ge.rejections == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_signature_passes_through(
    fresh: Stack, client: AsyncAnthropic, stream: bool
) -> None:
    fresh.an.queue(Reply(reasoning=THOUGHT, tool_calls=[ToolCall("Bash", ARGS)]),
                   Reply(text="Two files."))
    request = first_request("claude-client")
    first = await ask(client, request, stream)
    thinking = first.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == THOUGHT
    assert thinking.signature == sign(THOUGHT)  # the fake's own, untouched

    final = await ask(client, second_request(request, first), stream)
    assert [b.text for b in final.content if b.type == "text"] == ["Two files."]
    sent = last(fresh.an).body
    block = sent["messages"][1]["content"][0]
    assert block == {"type": "thinking", "thinking": THOUGHT, "signature": sign(THOUGHT)}


async def test_foreign_thinking_is_not_sent_to_anthropic(
    fresh: Stack, client: AsyncAnthropic
) -> None:
    # A turn served by Gemini carries our envelope (bg1.) in its thinking signature...
    fresh.ge.queue(Reply(reasoning="Gemini thinks.", tool_calls=[ToolCall("Bash", ARGS)]))
    request = first_request("gem-client")
    first = await client.messages.create(**request)
    signatures = [b.signature for b in first.content if b.type == "thinking"]
    assert signatures and all(s.startswith("bg1.") for s in signatures)

    # ... and the conversation continues on Claude, which rejects signatures it did not issue.
    fresh.an.queue(Reply(text="Two files."))
    follow = second_request({**request, "model": "claude-client"}, first)
    final = await client.messages.create(**follow)
    assert [b.text for b in final.content if b.type == "text"] == ["Two files."]
    assert fresh.an.rejections == []
    sent = last(fresh.an)
    assert b"bg1." not in sent.raw
    assistant = sent.body["messages"][1]
    assert [b["type"] for b in assistant["content"] if b["type"] != "text"] == ["tool_use"]
