"""Checks over everything the shared gateway did in this session: its log and what it sent
clients. Named to be collected last, so that in a full run the log holds every other test's
traffic (run alone, it still makes its own requests)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import KEYS, Stack

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}


def request(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1000,
            "messages": [{"role": "user", "content": "Hi"}]}


async def post(stack: Stack, data: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + "/v1/messages", data=orjson.dumps(data), headers=HEADERS
    ) as resp:
        return resp.status, await resp.read()


async def test_provider_keys_never_leak(fresh: Stack) -> None:
    bodies = []
    # An upstream that echoes the key it was given (OpenAI does, partly masked).
    fresh.oa.queue(Reply(status=401, error=f"Incorrect API key provided: {KEYS['oa']}."))
    fresh.an.queue(Reply(status=500, error="internal"))
    for model in ("gpt-client", "claude-client", "fallback-refused", "no-such-model"):
        bodies.append((await post(fresh, request(model)))[1])
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/v1/models"):
            async with session.get(fresh.gw.url + path) as resp:
                bodies.append(await resp.read())
    await asyncio.sleep(0.2)  # let the gateway flush its log
    log = fresh.gw.log()
    assert "target=" in log  # the log does record attempts
    assert "Traceback" not in log  # no request so far hit a bug of ours
    for key in [*KEYS.values(), "sk-dead-SECRET"]:
        assert key not in log
        for raw in bodies:
            assert key.encode() not in raw
