"""Chat Completions client, the details: pass-through to an OpenAI upstream without a preset
(fields the gateway does not model arrive intact, streamed bytes come back identical), and
reasoning kept across a tool loop, echoed the way Chat clients echo it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI
from tests.fakes import Reply, ToolCall
from tests.fakes.core import opaque_ok
from tests.fakes.gemini import SKIP_SIGNATURE

from conftest import KEYS, Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "authorization": "Bearer client-key-stays-here"}
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]
THOUGHT = "The user wants the weather; the tool knows it."


async def post(url: str, data: Any) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=data if isinstance(data, bytes) else orjson.dumps(data), headers=HEADERS
    ) as resp:
        return resp.status, resp.headers, await resp.read()



# Fields babelgate does not model: pass-through must forward them untouched.
UNMODELLED = {
    "logit_bias": {"50256": -100},
    "seed": 7,
    "metadata": {"session": "abc"},
    "prediction": {"type": "content", "content": "def f():"},
    "service_tier": "flex",
    "store": False,
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
    "prompt_cache_key": "repo-42",
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "strict": True, "schema": {"type": "object", "properties": {},
                                                "additionalProperties": False}}},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_unmodelled_fields_arrive_intact(fresh: Stack, stream: bool) -> None:
    fresh.oa.queue(Reply(text="{}"))
    body = {"model": "gpt-client", "stream": stream,
            "messages": [{"role": "user", "content": "Hi", "name": "alice"}], **UNMODELLED}
    status, _, raw = await post(fresh.gw.url + "/v1/chat/completions", body)
    assert status == 200, raw
    got = last(fresh.oa)
    assert got.body == {**body, "model": "gpt-up"}
    assert got.headers["authorization"] == f"Bearer {KEYS['oa']}"


async def test_streamed_bytes_identical(fresh: Stack) -> None:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-up", "system_fingerprint": "fp_x"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None}], "obfuscation": "q9"},
        *({**head, "choices": [{"index": 0, "delta": {"content": f"p{i} "},
                                "finish_reason": None}]} for i in range(15)),
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 15,
                                          "total_tokens": 20}},
    ]
    frames = [fresh.oa.frame(c) for c in chunks] + [b"data: [DONE]\n\n"]
    fresh.oa.queue(Reply(raw=frames))
    status, headers, raw = await post(fresh.gw.url + "/v1/chat/completions", {
        "model": "gpt-client", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert raw == b"".join(frames)


# ---------------------------------------------------------------- reasoning in a tool loop


def echo(message: Any) -> dict[str, Any]:
    """The assistant message as a Chat client sends it back: what it received, including the
    provider's extra `reasoning_content` (DeepSeek asks for it; most clients keep extras)."""
    out = message.model_dump(exclude_none=True)
    out.pop("annotations", None)
    out.pop("refusal", None)
    return dict(out)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ["ds-client", "claude-client", "gem-client", "resp-client"])
async def test_reasoning_survives_a_tool_loop(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = getattr(fresh, {"ds-client": "ds", "claude-client": "an", "gem-client": "ge",
                           "resp-client": "rs"}[model])
    fake.queue(Reply(reasoning=THOUGHT, tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
               Reply(text="Cold in Oslo."))
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    request: dict[str, Any] = {"model": model, "tools": TOOLS, "reasoning_effort": "medium",
                               "max_completion_tokens": 16000}
    if stream:
        reasoning, calls, extra = "", {}, {}
        async for chunk in await client.chat.completions.create(
                messages=messages, stream=True, **request):
            for choice in chunk.choices:
                delta_extra = choice.delta.model_extra or {}
                reasoning += delta_extra.get("reasoning_content") or ""
                for key, value in delta_extra.items():
                    if key != "reasoning_content" and value is not None:
                        extra[key] = value
                for call in choice.delta.tool_calls or []:
                    slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = call.id or slot["id"]
                    if call.function is not None:
                        slot["name"] = call.function.name or slot["name"]
                        slot["arguments"] += call.function.arguments or ""
        assistant: dict[str, Any] = {
            "role": "assistant", "content": None, "reasoning_content": reasoning, **extra,
            "tool_calls": [{"id": c["id"], "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]}}
                           for _, c in sorted(calls.items())]}
    else:
        done = await client.chat.completions.create(messages=messages, **request)
        assistant = echo(done.choices[0].message)
        reasoning = assistant.get("reasoning_content", "")
    assert reasoning == THOUGHT
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}

    messages += [assistant, {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"],
                             "content": "-5C"}]
    done = await client.chat.completions.create(messages=messages, **request)
    assert done.choices[0].message.content == "Cold in Oslo."
    assert fake.rejections == []
    body = last(fake).body
    if model == "ds-client":
        turn = next(m for m in body["messages"] if m["role"] == "assistant")
        assert turn["reasoning_content"] == THOUGHT
    elif model == "claude-client":
        # Chat has no field for a thinking signature: the gateway cannot send the thinking
        # back, so it turns thinking off for this turn rather than get a 400.
        blocks = body["messages"][1]["content"]
        assert blocks[0]["type"] in ("thinking", "redacted_thinking") or "thinking" not in body
    elif model == "gem-client":
        # Likewise no carrier for the thought signature: the documented skip value stands in.
        turn = next(c for c in body["contents"] if c["role"] == "model")
        call = next(p for p in turn["parts"] if "functionCall" in p)
        signature = call.get("thoughtSignature")
        assert opaque_ok(signature) or signature == SKIP_SIGNATURE
    else:
        kinds = [i.get("type") for i in body["input"]]
        assert "function_call" in kinds and "function_call_output" in kinds


async def test_history_with_carried_ids_is_translated_not_passed_through(
    fresh: Stack, client: AsyncOpenAI
) -> None:
    """A conversation that was served by Claude or Gemini carries signatures inside its tool
    call ids. When it moves to a pass-through route, the ids must not reach the upstream as
    they are (OpenAI caps call ids); the gateway translates instead, which unpacks them."""
    from babelgate.canonical.carry import attach_to_id

    carried = attach_to_id("toolu_01A", {"reasoning": [{"o": "anthropic", "s": "x" * 600}]})
    fresh.oa.queue(Reply(text="Done."))
    await client.chat.completions.create(model="gpt-client", max_tokens=100, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": carried, "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": carried, "content": "sunny"},
    ])
    body = last(fresh.oa).body
    ids = [m["tool_calls"][0]["id"] for m in body["messages"] if m.get("tool_calls")]
    ids += [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert ids == ["toolu_01A", "toolu_01A"]
