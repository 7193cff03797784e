"""A Chat Completions client (the official `openai` SDK) in a two-turn tool loop keeps the
upstream's reasoning signatures, which Chat has no field for: they ride in the tool call ids
the client echoes. Anthropic must get its signed thinking block back (so thinking stays on);
Gemini 3 must get its own thoughtSignature on the functionCall, not Google's skip
placeholder. Both fakes reject a forged or altered signature."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from tests.fakes import Reply, ToolCall
from tests.fakes.core import opaque_ok, sign
from tests.fakes.gemini import SKIP_SIGNATURE

from babelgate.canonical.carry import split_id
from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]
THOUGHT = "The user asks about the weather in two cities; I will call the tool for each."
THINK: dict[str, Any] = {"reasoning_effort": "medium", "max_completion_tokens": 8000}


async def first_turn(client: AsyncOpenAI, model: str, stream: bool) -> dict[str, Any]:
    """The assistant message as a client rebuilds it: content, reasoning_content, tool_calls."""
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    if not stream:
        done = await client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, **THINK)
        message = done.choices[0].message
        calls = [{"id": c.id, "type": "function",
                  "function": {"name": c.function.name, "arguments": c.function.arguments}}
                 for c in message.tool_calls or []]  # type: ignore[union-attr]
        reasoning = (message.model_extra or {}).get("reasoning_content")
        return {"role": "assistant", "content": message.content, "tool_calls": calls,
                "reasoning_content": reasoning}
    reasoning, slots = "", {}
    async for chunk in await client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, stream=True, **THINK):
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            for call in choice.delta.tool_calls or []:
                slot = slots.setdefault(call.index, {"ids": [], "name": "", "args": ""})
                if call.id is not None:
                    slot["ids"].append(call.id)
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["args"] += call.function.arguments or ""
    # The id appears once per call, in its first fragment, already carrying everything.
    assert all(len(s["ids"]) == 1 for s in slots.values()), slots
    calls = [{"id": s["ids"][0], "type": "function",
              "function": {"name": s["name"], "arguments": s["args"]}}
             for _, s in sorted(slots.items())]
    return {"role": "assistant", "content": None, "tool_calls": calls,
            "reasoning_content": reasoning or None}


async def second_turn(client: AsyncOpenAI, model: str, assistant: dict[str, Any]) -> str | None:
    ids = [c["id"] for c in assistant["tool_calls"]]
    messages: list[Any] = [
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        assistant,
        {"role": "tool", "tool_call_id": ids[0], "content": "sunny, 24C"},
        {"role": "tool", "tool_call_id": ids[1], "content": "sunny, 26C"},
    ]
    done = await client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, **THINK)
    return done.choices[0].message.content


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_anthropic_thinking_signature_survives_the_tool_loop(
    fresh: Stack, client: AsyncOpenAI, stream: bool
) -> None:
    fresh.an.queue(
        Reply(reasoning=THOUGHT, tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                             ToolCall("get_weather", {"city": "Lyon"})]),
        Reply(text="Sunny in both."))
    assistant = await first_turn(client, "claude-client", stream)
    assert assistant["reasoning_content"] == THOUGHT
    assert len(assistant["tool_calls"]) == 2

    assert await second_turn(client, "claude-client", assistant) == "Sunny in both."
    assert fresh.an.rejections == []
    body = last(fresh.an).body
    assert body["thinking"]["type"] in ("enabled", "adaptive")  # not turned off for this turn
    turn = next(m for m in body["messages"] if m["role"] == "assistant")
    first = turn["content"][0]
    assert first == {"type": "thinking", "thinking": THOUGHT, "signature": sign(THOUGHT)}
    # The upstream sees its own ids, and each result answers its own call.
    uses = [b["id"] for b in turn["content"] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for b in body["messages"][-1]["content"]
               if b["type"] == "tool_result"]
    assert uses == results == [split_id(c["id"])[0] for c in assistant["tool_calls"]]
    assert all("__bg1_" not in u for u in uses)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_gemini3_thought_signature_survives_the_tool_loop(
    fresh: Stack, client: AsyncOpenAI, stream: bool
) -> None:
    fresh.ge.queue(
        Reply(reasoning=THOUGHT, tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                             ToolCall("get_weather", {"city": "Lyon"})]),
        Reply(text="Sunny in both."))
    assistant = await first_turn(client, "gem-client", stream)
    carried = split_id(assistant["tool_calls"][0]["id"])[1]
    assert carried is not None, "the first call id carries nothing"
    signature = carried["m"]["thought_signature"]

    assert await second_turn(client, "gem-client", assistant) == "Sunny in both."
    assert fresh.ge.rejections == []
    body = last(fresh.ge).body
    model_turn = next(c for c in body["contents"] if c["role"] == "model")
    calls = [p for p in model_turn["parts"] if "functionCall" in p]
    assert [json.dumps(p["functionCall"]["args"]) for p in calls] == [
        json.dumps({"city": "Paris"}), json.dumps({"city": "Lyon"})]
    assert calls[0].get("thoughtSignature") == signature
    assert signature != SKIP_SIGNATURE and opaque_ok(signature)
