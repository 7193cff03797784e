"""Stopping the gateway while a stream is open: the client gets an error event it can retry
on, never a silent cut, and the process exits once the grace period is over."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI, Reply

pytestmark = [pytest.mark.gateway]


# Under uvicorn the grace period is its --timeout-graceful-shutdown (1 s in the tests'
# command line); granian lets open requests run to their end, so it is not held to this.
@pytest.mark.parametrize("server", ["own", "uvicorn"])
async def test_sigterm_ends_open_streams_with_an_error_event(
    fake_openai: FakeOpenAI, tmp_path: Path, server: str
) -> None:
    fake_openai.queue(Reply(text=" ".join(f"w{i}" for i in range(200)), chunk_delay=0.1))
    factory = GatewayFactory(tmp_path, server)
    try:
        await _stop_while_streaming(fake_openai, factory)
    finally:
        await factory.close()


async def _stop_while_streaming(fake_openai: FakeOpenAI, factory: GatewayFactory) -> None:
    gateway = await factory(fake_openai, extra={"server": {"shutdown_timeout": 1}})
    body = {"model": "m", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
        gateway.url + "/v1/messages", json=body
    ) as resp:
        assert resp.status == 200
        await resp.content.readuntil(b"text_delta")  # the stream is under way
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(resp.content.read(), timeout=15)
    assert b"event: error" in rest
    assert b"shutting down" in rest
    assert b"message_stop" not in rest
    for _ in range(100):
        if gateway.process.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert gateway.process.poll() is not None
    assert time.monotonic() - started < 8
