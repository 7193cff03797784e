"""What the gateway writes to its log and sends clients on the paths that carry provider
keys: an upstream that echoes the key in its error, an upstream failure, a refused
connection in a fallback list, an unknown model. The test looks only at the log lines its
own requests wrote, so it means the same run alone, first or last; the whole session's log
is checked once the shared gateway stops (conftest.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import KEYS, Stack

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}
# model -> the upstream attempts it makes (one access-log line each)
ATTEMPTS = {"gpt-client": 1, "claude-client": 1, "fallback-refused": 2}


def request(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1000,
            "messages": [{"role": "user", "content": "Hi"}]}


async def post(stack: Stack, data: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + "/v1/messages", data=orjson.dumps(data), headers=HEADERS
    ) as resp:
        return resp.status, await resp.read()


async def written_since(stack: Stack, offset: int, lines: int) -> str:
    """The log from `offset` on, once it holds `lines` attempt lines (the access log is
    written in batches) or two seconds have passed."""
    deadline = time.monotonic() + 2.0
    while True:
        with stack.gw.log_path.open("rb") as log:
            log.seek(offset)
            new = log.read().decode(errors="replace")
        if new.count("target=") >= lines or time.monotonic() > deadline:
            return new
        await asyncio.sleep(0.05)


async def test_provider_keys_never_leak(fresh: Stack) -> None:
    offset = fresh.gw.log_path.stat().st_size
    bodies = []
    # An upstream that echoes the key it was given (OpenAI does, partly masked).
    fresh.oa.queue(Reply(status=401, error=f"Incorrect API key provided: {KEYS['oa']}."))
    fresh.an.queue(Reply(status=500, error="internal"))
    for model in (*ATTEMPTS, "no-such-model"):
        bodies.append((await post(fresh, request(model)))[1])
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/v1/models"):
            async with session.get(fresh.gw.url + path) as resp:
                bodies.append(await resp.read())
    log = await written_since(fresh, offset, sum(ATTEMPTS.values()))
    assert log.count("target=") >= sum(ATTEMPTS.values()), log  # the attempts were logged
    assert "Traceback" not in log
    for key in [*KEYS.values(), "sk-dead-SECRET"]:
        assert key not in log
        for raw in bodies:
            assert key.encode() not in raw
