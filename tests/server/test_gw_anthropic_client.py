"""Claude Code's protocol (Anthropic Messages) against every upstream type, through the real
gateway, with the official `anthropic` SDK as the client: text, usage, model names, tool calls
over two turns, images."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from anthropic import AsyncAnthropic
from tests.fakes import FakeUpstream, Reply, ToolCall, Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

# Client model name -> the fake behind it (attribute of Stack).
UPSTREAMS = {
    "gpt-client": "oa",
    "ds-client": "ds",
    "claude-client": "an",
    "gem-client": "ge",
}
MODELS = list(UPSTREAMS)

# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
IMAGE_URL = "https://example.com/cat.png"

READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}


@pytest_asyncio.fixture(loop_scope="session")
async def client(fresh: Stack) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=fresh.gw.url, api_key="client-key", max_retries=0) as c:
        yield c


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def expected_model(model: str) -> str:
    """The model name a client sees: its own, except through anthropic -> anthropic
    pass-through, where the upstream's answer comes back byte for byte (its own model name)."""
    return "claude-up" if model == "claude-client" else model


def fake_for(stack: Stack, model: str) -> FakeUpstream:
    fake: FakeUpstream = getattr(stack, UPSTREAMS[model])
    return fake


# ---------------------------------------------------------------- text


@pytest.mark.parametrize("model", MODELS)
async def test_text(fresh: Stack, client: AsyncAnthropic, model: str) -> None:
    fake = fake_for(fresh, model)
    fake.queue(Reply(text="Hello from the fake.", usage=Usage(input_tokens=42, output_tokens=7)))
    message = await client.messages.create(
        model=model, max_tokens=1000, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.model == expected_model(model)
    # Gemini 3 may sign a text part: that comes back as an empty signed thinking block.
    assert [b.type for b in message.content if b.type != "thinking"] == ["text"]
    assert text_of(message) == "Hello from the fake."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 7
    # Anthropic's input_tokens excludes cache reads; nothing is cached here.
    assert message.usage.input_tokens == 42
    assert len(fake.requests) == 1


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_text(fresh: Stack, client: AsyncAnthropic, model: str) -> None:
    fake = fake_for(fresh, model)
    text = "Streaming works, piece by piece, across several deltas."
    fake.queue(Reply(text=text, usage=Usage(input_tokens=42, output_tokens=11)))
    events = []
    stream = await client.messages.create(
        model=model,
        max_tokens=1000,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
    )
    async for event in stream:
        events.append(event)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "error" not in kinds
    start = events[0].message
    assert start.model == expected_model(model)
    assert start.usage.input_tokens > 0  # Claude Code needs it at the start
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == 11
    assert delta.delta.stop_reason == "end_turn"
    streamed = "".join(
        e.delta.text for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert streamed == text


@pytest.mark.parametrize("model", MODELS)
async def test_stream_helper_final_message(
    fresh: Stack, client: AsyncAnthropic, model: str
) -> None:
    usage = Usage(input_tokens=30, output_tokens=2)
    fake_for(fresh, model).queue(Reply(text="Final.", usage=usage))
    async with client.messages.stream(
        model=model, max_tokens=1000, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.model == expected_model(model)
    assert text_of(final) == "Final."
    assert final.usage.output_tokens == 2
    assert final.usage.input_tokens == 30  # the upstream's count, not the start estimate


# ---------------------------------------------------------------- tools over two turns


def tool_result_turns(first: Any, result: Any) -> list[dict[str, Any]]:
    """The conversation after the assistant's tool call: history + a user tool_result."""
    call = next(b for b in first.content if b.type == "tool_use")
    return [
        {"role": "user", "content": "Read /etc/hostname"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": result},
        ]},
    ]


def upstream_tool_result(fake: FakeUpstream, body: dict[str, Any]) -> dict[str, Any]:
    """The tool call and its result as the upstream saw them, in neutral terms."""
    if fake.protocol == "openai":
        msgs = body["messages"]
        tool = next(m for m in msgs if m["role"] == "tool")
        assistant = next(m for m in msgs if m["role"] == "assistant" and m.get("tool_calls"))
        call = assistant["tool_calls"][0]
        return {
            "call_id": call["id"],
            "name": call["function"]["name"],
            "args": json.loads(call["function"]["arguments"]),
            "result_id": tool["tool_call_id"],
            "result": tool["content"],
            "later": msgs[msgs.index(tool) + 1 :],
        }
    if fake.protocol == "anthropic":
        msgs = body["messages"]
        use = next(b for m in msgs if m["role"] == "assistant" for b in m["content"]
                   if isinstance(b, dict) and b["type"] == "tool_use")
        res = next(b for m in msgs if m["role"] == "user" and isinstance(m["content"], list)
                   for b in m["content"] if b["type"] == "tool_result")
        return {"call_id": use["id"], "name": use["name"], "args": use["input"],
                "result_id": res["tool_use_id"], "result": res["content"], "later": []}
    contents = body["contents"]
    call = next(p["functionCall"] for c in contents if c["role"] == "model"
                for p in c["parts"] if "functionCall" in p)
    user = next(c for c in contents if any("functionResponse" in p for p in c["parts"]))
    response = next(p["functionResponse"] for p in user["parts"] if "functionResponse" in p)
    return {"call_id": call.get("id"), "name": call["name"], "args": call["args"],
            "result_id": response.get("id"), "result": response,
            "later": [p for p in user["parts"] if "functionResponse" not in p],
            "user_parts": user["parts"]}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_tool_call_two_turns(
    fresh: Stack, client: AsyncAnthropic, model: str, stream: bool
) -> None:
    fake = fake_for(fresh, model)
    args = {"file_path": "/etc/hostname"}
    # deepseek-reasoner always thinks, and wants that reasoning back on tool-call turns.
    thought = "I should read the file." if model == "ds-client" else None
    call = Reply(text="Let me read it.", tool_calls=[ToolCall("Read", args)], reasoning=thought)
    fake.queue(*([call] * (2 if stream else 1)), Reply(text="The hostname is box."))
    request: dict[str, Any] = {
        "model": model, "max_tokens": 1000, "tools": [READ_TOOL],
        "messages": [{"role": "user", "content": "Read /etc/hostname"}],
    }
    if stream:
        raw = await client.messages.create(**request, stream=True)
        partial_json = []
        async for event in raw:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial_json.append(event.delta.partial_json)
        assert json.loads("".join(partial_json)) == args
        async with client.messages.stream(**request) as helper:
            first = await helper.get_final_message()
    else:
        first = await client.messages.create(**request)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "Read" and uses[0].input == args

    request["messages"] = tool_result_turns(first, "box\n")
    final = await client.messages.create(**request)
    assert text_of(final) == "The hostname is box."
    seen = upstream_tool_result(fake, last(fake).body)
    assert seen["name"] == "Read" and seen["args"] == args
    if fake.protocol != "gemini":
        assert seen["result_id"] == seen["call_id"]
    result = seen["result"]
    text = json.dumps(result) if not isinstance(result, str) else result
    assert "box" in text


@pytest.mark.parametrize("model", ["gpt-client", "claude-client", "gem-client"])
async def test_tool_result_with_an_image(
    fresh: Stack, client: AsyncAnthropic, model: str
) -> None:
    fake = fake_for(fresh, model)
    args = {"file_path": "/tmp/shot.png"}
    fake.queue(Reply(tool_calls=[ToolCall("Read", args)]), Reply(text="A single pixel."))
    request: dict[str, Any] = {
        "model": model, "max_tokens": 1000, "tools": [READ_TOOL],
        "messages": [{"role": "user", "content": "Read /etc/hostname"}],
    }
    first = await client.messages.create(**request)
    request["messages"] = tool_result_turns(first, [
        {"type": "text", "text": "screenshot attached"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ])
    final = await client.messages.create(**request)
    assert text_of(final) == "A single pixel."
    body = last(fake).body
    raw = json.dumps(body)
    assert PNG in raw  # the image reached the upstream
    seen = upstream_tool_result(fake, body)
    if fake.protocol == "openai":
        # Chat tool messages take text only: the image follows in a user message.
        assert "screenshot attached" in json.dumps(seen["result"])
        images = [p for m in seen["later"] if m["role"] == "user" and isinstance(m["content"], list)
                  for p in m["content"] if p.get("type") == "image_url"]
        assert images and images[0]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    elif fake.protocol == "anthropic":
        kinds = [b["type"] for b in seen["result"]]
        assert kinds == ["text", "image"]
        assert seen["result"][1]["source"]["data"] == PNG
    else:
        inline = [p for p in seen["user_parts"] if "inlineData" in p]
        inline += [p for p in seen["result"].get("parts", []) if "inlineData" in p]
        assert inline and inline[0]["inlineData"]["data"] == PNG
        assert inline[0]["inlineData"]["mimeType"] == "image/png"


# ---------------------------------------------------------------- images in user messages


@pytest.mark.parametrize("model", ["gpt-client", "claude-client", "gem-client"])
async def test_user_images_base64_and_url(
    fresh: Stack, client: AsyncAnthropic, model: str
) -> None:
    fake = fake_for(fresh, model)
    fake.queue(Reply(text="Two images."))
    message = await client.messages.create(
        model=model, max_tokens=1000,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Compare these"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
        ]}],
    )
    assert text_of(message) == "Two images."
    body = last(fake).body
    if fake.protocol == "openai":
        parts = body["messages"][-1]["content"]
        urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        assert urls == [f"data:image/png;base64,{PNG}", IMAGE_URL]
    elif fake.protocol == "anthropic":
        blocks = body["messages"][-1]["content"]
        assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
        assert blocks[2]["source"] == {"type": "url", "url": IMAGE_URL}
    else:
        parts = body["contents"][-1]["parts"]
        assert {"inlineData": {"mimeType": "image/png", "data": PNG}} in parts
        files = [p["fileData"] for p in parts if "fileData" in p]
        assert files == [{"mimeType": "image/png", "fileUri": IMAGE_URL}]


async def test_deepseek_images_do_not_reach_a_text_only_upstream(
    fresh: Stack, client: AsyncAnthropic
) -> None:
    fresh.ds.queue(Reply(text="I cannot see images."))
    await client.messages.create(
        model="ds-client", max_tokens=1000,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        ]}],
    )
    raw = last(fresh.ds).raw.decode()
    assert PNG not in raw and "image_url" not in raw
    assert "What is this?" in raw
