"""What real traffic does that the happy path does not: concurrent streams, big bodies,
upstreams that answer a stream request with a whole body or fail inside a 200 stream."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}
BASH = {"name": "Bash", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}


async def post(stack: Stack, data: dict[str, Any], path: str = "/v1/messages") -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + path, data=orjson.dumps(data), headers=HEADERS
    ) as resp:
        return resp.status, await resp.read()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in lines and lines["data"] != "[DONE]":
            out.append((lines.get("event", ""), orjson.loads(lines["data"])))
    return out


@pytest.mark.parametrize("model", ["gpt-client", "claude-client", "gem-client"])
async def test_concurrent_streams_do_not_mix(fresh: Stack, model: str) -> None:
    # No scripted replies: the fakes' brain calls the shell tool with the marked command, so
    # every answer names its own request.
    async def one(i: int) -> str:
        status, raw = await post(fresh, {
            "model": model, "max_tokens": 500, "stream": True, "tools": [BASH],
            "messages": [{"role": "user", "content": f"Please RUN<<echo request-{i}>>"}],
        })
        assert status == 200
        return "".join(d["delta"]["partial_json"] for e, d in sse_events(raw)
                       if e == "content_block_delta"
                       and d["delta"]["type"] == "input_json_delta")

    answers = await asyncio.gather(*(one(i) for i in range(12)))
    for i, args in enumerate(answers):
        assert orjson.loads(args)["command"] == f"echo request-{i}"


async def test_large_request_body(fresh: Stack) -> None:
    image = base64.b64encode(os.urandom(6 * 1024 * 1024)).decode()  # ~8 MB of base64
    fresh.oa.queue(Reply(text="Big picture."))
    status, raw = await post(fresh, {
        "model": "gpt-client", "max_tokens": 500,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": image}},
        ]}],
    })
    assert status == 200, raw[:300]
    assert orjson.loads(raw)["content"][0]["text"] == "Big picture."
    parts = last(fresh.oa).body["messages"][-1]["content"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{image}"


async def test_stream_request_answered_with_a_whole_body(fresh: Stack) -> None:
    # Some OpenAI-compatible servers ignore `stream: true`.
    fresh.oa.queue(Reply(raw={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Whole body."}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }))
    status, raw = await post(fresh, {"model": "gpt-client", "max_tokens": 500, "stream": True,
                                     "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200
    events = sse_events(raw)
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    text = "".join(d["delta"].get("text", "") for e, d in events if e == "content_block_delta")
    assert text == "Whole body."
    delta = next(d for e, d in events if e == "message_delta")
    assert delta["usage"]["output_tokens"] == 2


async def test_anthropic_error_event_inside_a_200_stream_reaches_an_openai_client(
    fresh: Stack,
) -> None:
    fresh.an.queue(Reply(raw=[
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Partial"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]))
    status, raw = await post(fresh, {"model": "claude-client", "stream": True,
                                     "messages": [{"role": "user", "content": "Hi"}]},
                             path="/v1/chat/completions")
    assert status == 200
    events = [d for _, d in sse_events(raw)]
    assert any("Partial" in orjson.dumps(d).decode() for d in events)
    assert "error" in events[-1], events[-1]
    assert "Overloaded" in events[-1]["error"]["message"]


async def test_trailing_slash_and_wrong_method(fresh: Stack) -> None:
    fresh.oa.queue(Reply(text="Slash."))
    status, raw = await post(fresh, {"model": "gpt-client", "max_tokens": 50,
                                     "messages": [{"role": "user", "content": "Hi"}]},
                             path="/v1/messages/")
    assert status == 200, raw
    async with aiohttp.ClientSession() as session, session.get(
        fresh.gw.url + "/v1/messages"
    ) as resp:
        assert resp.status == 404  # GET is not served; the message says what is
        body = await resp.json()
    assert body["type"] == "error" and "GET /v1/messages" in body["error"]["message"]
