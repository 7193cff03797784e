"""Same protocol in and out (Anthropic client -> Anthropic upstream), and count_tokens for
every upstream type, over raw HTTP so bodies, headers and bytes can be checked exactly."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply
from tests.fakes.core import estimate_tokens

from conftest import KEYS, Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

BETA = "context-management-2025-06-27,interleaved-thinking-2025-05-14"
CLIENT_HEADERS = {
    "content-type": "application/json",
    "x-api-key": "client-key-must-stay-here",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETA,
}


def body(stream: bool) -> dict[str, Any]:
    return {
        "model": "claude-client",
        "max_tokens": 2000,
        "stream": stream,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
        # Fields a translation would not know: they must arrive as the client sent them.
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "metadata": {"user_id": "user-123"},
        "service_tier": "auto",
    }


async def post(url: str, data: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=orjson.dumps(data), headers=headers
    ) as resp:
        return resp.status, resp.headers, await resp.read()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_body_forwarded_with_only_the_model_changed(fresh: Stack, stream: bool) -> None:
    fresh.an.queue(Reply(text="Hello."))
    sent = body(stream)
    status, _, raw = await post(fresh.gw.url + "/v1/messages", sent, CLIENT_HEADERS)
    assert status == 200, raw
    got = last(fresh.an)
    assert got.body == {**sent, "model": "claude-up"}


async def test_headers_beta_forwarded_client_key_not(fresh: Stack) -> None:
    fresh.an.queue(Reply(text="Hello."))
    status, _, raw = await post(fresh.gw.url + "/v1/messages", body(False), CLIENT_HEADERS)
    assert status == 200, raw
    headers = last(fresh.an).headers
    assert headers["anthropic-beta"] == BETA
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-api-key"] == KEYS["an"]
    assert "client-key-must-stay-here" not in orjson.dumps(headers).decode()


async def test_streamed_bytes_identical_to_the_upstream(fresh: Stack) -> None:
    events = [
        {"type": "message_start", "message": {
            "id": "msg_01abc", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        }},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0,
           "delta": {"type": "text_delta", "text": f"piece {i} "}} for i in range(20)),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 40}},
        {"type": "message_stop"},
    ]
    fresh.an.queue(Reply(raw=events))
    status, headers, raw = await post(fresh.gw.url + "/v1/messages", body(True), CLIENT_HEADERS)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert raw == b"".join(fresh.an.frame(e) for e in events)


async def test_upstream_error_keeps_status_and_message(fresh: Stack) -> None:
    fresh.an.queue(Reply(status=400, error="messages.0.content: Field required"))
    status, _, raw = await post(fresh.gw.url + "/v1/messages", body(False), CLIENT_HEADERS)
    assert status == 400
    error = orjson.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "messages.0.content: Field required" in error["error"]["message"]


# ---------------------------------------------------------------- count_tokens


async def count(stack: Stack, model: str) -> tuple[int, Any, dict[str, Any]]:
    data = {
        "model": model,
        "system": "You are a coding agent.",
        "messages": [{"role": "user", "content": "Count the tokens of this sentence, please."}],
        "tools": [{"name": "Bash", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}}}}],
    }
    status, headers, raw = await post(
        stack.gw.url + "/v1/messages/count_tokens", data, CLIENT_HEADERS
    )
    return status, headers, orjson.loads(raw)


async def test_count_tokens_anthropic_asks_the_upstream(fresh: Stack) -> None:
    status, headers, answer = await count(fresh, "claude-client")
    assert status == 200
    got = last(fresh.an)
    assert got.path == "/v1/messages/count_tokens"
    assert got.body["model"] == "claude-up"
    assert answer == {"input_tokens": estimate_tokens(got.body)}  # the fake's own number
    assert headers["x-babelgate-token-count"] == "upstream"


async def test_count_tokens_gemini_uses_count_tokens(fresh: Stack) -> None:
    status, headers, answer = await count(fresh, "gem-client")
    assert status == 200
    got = last(fresh.ge)
    assert got.path == "/v1beta/models/gemini-up:countTokens"
    inner = got.body.get("generateContentRequest") or got.body
    assert answer == {"input_tokens": estimate_tokens(inner)}
    assert headers["x-babelgate-token-count"] == "upstream"


async def test_count_tokens_openai_is_a_local_estimate(fresh: Stack) -> None:
    status, headers, answer = await count(fresh, "gpt-client")
    assert status == 200
    assert answer["input_tokens"] > 10
    assert headers["x-babelgate-token-count"] == "estimate"
    assert fresh.oa.requests == []


async def test_stream_cut_inside_an_event_ends_with_an_error_not_a_broken_event(
    fresh: Stack,
) -> None:
    """Pass-through forwards whole events only: when the upstream dies in the middle of one,
    the client gets every whole event, then an error event, and no half-written JSON."""
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 0}}}
    block = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}
    fresh.an.queue(Reply(raw=[
        start,
        block,
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":',
        '{"type":"text_delta","text":"never finished"}}\n\n',
    ], cut_stream_after=3))
    status, _, raw = await post(fresh.gw.url + "/v1/messages", body(True), CLIENT_HEADERS)
    assert status == 200
    frames = [f for f in raw.split(b"\n\n") if f.strip()]
    for frame in frames:  # every event the client got is whole JSON
        data = frame.split(b"data: ", 1)[1]
        orjson.loads(data)
    assert b"never finished" not in raw
    assert b"content_block_delta" not in raw
    assert frames[-1].startswith(b"event: error")
