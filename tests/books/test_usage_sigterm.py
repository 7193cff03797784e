"""A graceful stop loses no usage row: SIGTERM to a real gateway process while streams are
open; the stream that finishes within the grace period and the one cut off when it ends are
both in the usage table once the process has exited."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import Usage

from babelgate.storage.usage import read_since

pytestmark = pytest.mark.gateway

HEADERS = {"content-type": "application/json", "x-api-key": "k",
           "anthropic-version": "2023-06-01"}


def body(model: str) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": 200, "stream": True,
                         "messages": [{"role": "user", "content": "Hi"}]})


async def read_some(resp: aiohttp.ClientResponse, deltas: int) -> None:
    seen = b""
    while seen.count(b"text_delta") < deltas:
        seen += await resp.content.readany()


async def test_sigterm_mid_stream_loses_no_row(
    fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory,
    tmp_path: Path,
) -> None:
    db = tmp_path / "books.db"
    gw = await gateway_factory(
        {"slow": fake_openai, "quick": fake_anthropic},
        routes={"slow": "slow/gpt-up", "quick": "quick/claude-up"},
        # A long flush interval: the rows can only be there if the stop wrote them.
        extra={"server": {"shutdown_timeout": 1},
               "storage": {"path": str(db), "usage_flush_interval_s": 60}},
    )
    # Both streams are under way at SIGTERM: one ends within the grace period, one does not.
    fake_openai.queue(Reply(text="slow " * 500, chunk_delay=0.02))  # ~4 s
    fake_anthropic.queue(Reply(text="quick " * 40, chunk_delay=0.02,
                               usage=Usage(input_tokens=30, output_tokens=60)))  # ~0.4 s
    async with aiohttp.ClientSession() as s:
        slow = await s.post(gw.url + "/v1/messages", data=body("slow"), headers=HEADERS)
        quick = await s.post(gw.url + "/v1/messages", data=body("quick"), headers=HEADERS)
        await read_some(slow, 5)
        await read_some(quick, 2)
        gw.process.send_signal(signal.SIGTERM)
        slow_rest, quick_rest = await asyncio.gather(slow.read(), quick.read())
    assert b"message_stop" in quick_rest
    assert b"shutting down" in slow_rest  # cut off when the grace period ran out
    for _ in range(100):
        if gw.process.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert gw.process.returncode == 0, gw.log()
    found = {row["model"]: row for row in read_since(db, 0)}
    assert set(found) == {"slow", "quick"}
    assert (found["quick"]["status"], found["quick"]["output_tokens"]) == (200, 60)
    assert (found["slow"]["status"], found["slow"]["error_kind"]) == (499, "cancelled")
    assert found["slow"]["output_tokens"] > 0  # counted from the text streamed before
