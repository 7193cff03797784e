"""A conversation that moves between providers mid-session keeps only the reasoning the
provider serving each turn can read.

Claude Code (an Anthropic Messages client, thinking on, in a tool loop) starts on an
Anthropic subscription; its quota runs out, and the route's fallback (OpenAI-compatible,
Gemini with thought signatures, or OpenAI Responses with encrypted reasoning) serves the next
turns; the quota is reset and the conversation goes back to Anthropic. Every fake is as
strict as its provider: the Anthropic one refuses a thinking block whose signature it did not
issue, Gemini a function call that lost its thought signature, Responses a reasoning item
without the encrypted content it issued. So each turn succeeding over real HTTP is the proof
that foreign reasoning was dropped (or carried only in the client's own fields), never sent
to be rejected; the tests also read what each upstream received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from anthropic import AsyncAnthropic
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeResponses, Reply, ToolCall
from tests.fakes.core import FakeUpstream

pytestmark = [pytest.mark.gateway]

HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}
TOOLS = [{"name": "shell", "description": "Run a shell command.",
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                           "required": ["command"]}}]
SPENT = Reply(status=402, error="Your credit balance is too low to access the Anthropic API.")


def fallback(kind: str) -> FakeUpstream:
    if kind == "gemini":
        return FakeGemini(modes=("gemini3",))  # thought signatures on function calls
    if kind == "responses":
        return FakeResponses()
    return FakeOpenAI(preset="deepseek")  # reasoning_content, as DeepSeek's reasoner


async def ask(gw: Gateway, messages: list[Any], stream: bool) -> tuple[str, list[Any]]:
    """One turn through the official SDK, streamed (as Claude Code asks) or not: which
    target served it, and the assistant's content blocks as the client keeps them."""
    client = AsyncAnthropic(base_url=gw.url, api_key="client-key", max_retries=0)
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5", "max_tokens": 4000, "tools": TOOLS,
        "thinking": {"type": "enabled", "budget_tokens": 2000}, "messages": messages}
    async with client:
        if stream:
            async with client.messages.stream(**body) as answer:
                message = await answer.get_final_message()
                target = answer.response.headers["x-babelgate-target"]
        else:
            raw = await client.messages.with_raw_response.create(**body)
            message, target = await raw.parse(), raw.headers["x-babelgate-target"]
    return target, [block.model_dump(exclude_none=True) for block in message.content]


def tool_use_of(content: list[Any]) -> dict[str, Any]:
    return next(block for block in content if block["type"] == "tool_use")


def result_for(content: list[Any], output: str) -> dict[str, Any]:
    return {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tool_use_of(content)["id"], "content": output}]}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", ["openai", "gemini", "responses"])
async def test_reasoning_stays_with_the_provider_that_can_read_it(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, tmp_path: Path, kind: str,
    stream: bool,
) -> None:
    async with fallback(kind) as other:
        gw = await gateway_factory(
            {"sub": fake_anthropic.provider_config(quota={"window": "1h"}),
             "payg": other.provider_config()},
            routes={"claude-*": ["sub/claude-up", "payg/other-up"]},
            extra={"storage": {"path": str(tmp_path / "state.db")}})

        # Turn 1 on the subscription: signed thinking and a tool call.
        fake_anthropic.queue(Reply(reasoning="I should list the files.",
                                   tool_calls=[ToolCall("shell", {"command": "ls"})]))
        messages: list[Any] = [{"role": "user", "content": "What is in this folder?"}]
        target, first = await ask(gw, messages, stream)
        assert target == "sub/claude-up"
        assert first[0]["type"] == "thinking"
        messages += [{"role": "assistant", "content": first},
                     result_for(first, "a.txt b.txt")]

        # Turn 2: the subscription is used up; the fallback serves, with its own reasoning
        # and a tool call. Anthropic's signed thinking must not reach it.
        fake_anthropic.queue(SPENT)
        other.queue(Reply(reasoning="Now read the first file.",
                          tool_calls=[ToolCall("shell", {"command": "cat a.txt"})]))
        target, second = await ask(gw, messages, stream)
        assert target == "payg/other-up"
        assert not other.rejections, other.rejections
        assert fake_anthropic.rejections == [(402, SPENT.error)]  # the scripted refusal
        fake_anthropic.rejections.clear()
        sent = orjson.dumps(other.requests[-1].body)
        assert first[0]["signature"].encode() not in sent
        assert b"I should list the files." not in sent or kind == "openai"
        messages += [{"role": "assistant", "content": second},
                     result_for(second, "hello")]

        # Turn 3, still on the fallback: its own reasoning comes back to it (Gemini needs its
        # thought signature back on the call, Responses its encrypted reasoning).
        other.queue(Reply(reasoning="Answer now.",
                          tool_calls=[ToolCall("shell", {"command": "cat b.txt"})]))
        target, third = await ask(gw, messages, stream)
        assert target == "payg/other-up"
        assert not other.rejections, other.rejections
        messages += [{"role": "assistant", "content": third}, result_for(third, "world")]

        # Turn 4: the quota is back; the conversation returns to Anthropic, whose strict fake
        # refuses any thinking signature it did not issue. Its own thinking of turn 1 goes
        # back signed; the fallback's reasoning does not reach it as thinking.
        async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/quota/reset", data=b'{"provider": "sub"}', headers=HEADERS
        ) as resp:
            assert resp.status == 200, await resp.text()
        fake_anthropic.queue(Reply(reasoning="Both files read.", text="a.txt says hello."))
        target, fourth = await ask(gw, messages, stream)
        assert target == "sub/claude-up"
        assert not fake_anthropic.rejections, fake_anthropic.rejections
        assert [b["text"] for b in fourth if b["type"] == "text"] == [
            "a.txt says hello."]
        back = fake_anthropic.requests[-1].body
        thinking = [block for message in back["messages"] if message["role"] == "assistant"
                    for block in message["content"]
                    if isinstance(block, dict) and block.get("type") == "thinking"]
        assert [b["signature"] for b in thinking][:1] == [first[0]["signature"]]
        for block in thinking:
            assert block["thinking"] not in ("Now read the first file.", "Answer now.")
