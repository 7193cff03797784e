"""An upstream that quotes its key back inside an error event of a 200 stream: the client and
the log get the error with the key masked, whether the stream is translated or passed through,
and whether the error opens the stream (an HTTP error status for the client) or ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import KEYS, Stack

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

HEADERS = {
    "/v1/messages": {"content-type": "application/json", "x-api-key": "client-key",
                     "anthropic-version": "2023-06-01"},
    "/v1/chat/completions": {"content-type": "application/json",
                             "authorization": "Bearer client-key"},
}
START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}
PARTIAL = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "text_delta", "text": "Partial"}},
]


def anthropic_events(midway: bool) -> list[Any]:
    error = {"type": "error", "error": {
        "type": "permission_error", "message": f"key {KEYS['an']} may not use this model"}}
    return [START, *PARTIAL, error] if midway else [error]


def openai_events(midway: bool) -> list[Any]:
    error = {"error": {"message": f"key {KEYS['oa']} may not use this model",
                       "type": "invalid_request_error", "code": "model_not_allowed"}}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Partial"},
                          "finish_reason": None}]}
    return [chunk, error] if midway else [error]


# client path, client model -> (the fake's name, the upstream's events)
CASES = {
    "anthropic-pass-through": ("/v1/messages", "claude-client"),
    "anthropic-to-openai": ("/v1/messages", "gpt-client"),
    "openai-pass-through": ("/v1/chat/completions", "gpt-client"),
    "openai-to-anthropic": ("/v1/chat/completions", "claude-client"),
}


async def post(stack: Stack, path: str, model: str) -> tuple[int, bytes]:
    data = {"model": model, "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + path, data=orjson.dumps(data), headers=HEADERS[path]
    ) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("midway", [False, True], ids=["opening", "midway"])
@pytest.mark.parametrize("case", list(CASES))
async def test_a_key_in_an_error_event_reaches_neither_client_nor_log(
    fresh: Stack, case: str, midway: bool
) -> None:
    path, model = CASES[case]
    key = KEYS["oa"] if model == "gpt-client" else KEYS["an"]
    events = openai_events(midway) if model == "gpt-client" else anthropic_events(midway)
    fake = fresh.oa if model == "gpt-client" else fresh.an
    logged = len(fresh.gw.log())
    fake.queue(Reply(raw=events))
    status, raw = await post(fresh, path, model)

    assert b"may not use this model" in raw, raw[:500]  # the error is told...
    assert key.encode() not in raw, raw[:500]  # ...without the key
    assert b"key *** may not" in raw
    if midway:
        assert status == 200 and b"Partial" in raw
    else:
        assert status >= 400
    await asyncio.sleep(0.3)  # the access log is written in batches every 100 ms
    log = fresh.gw.log()[logged:]
    assert "may not use this model" in log  # the attempt is logged as failed...
    assert key not in log  # ...without the key
