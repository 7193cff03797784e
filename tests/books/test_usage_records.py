"""The books over real HTTP: a gateway process in front of fake upstreams writes one usage row
per attempt, read back from its SQLite file as `babelgate usage` reads it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import Usage

from babelgate.storage.usage import read_since

pytestmark = pytest.mark.gateway

# Priced on purpose, so every cost below is computed by hand: $ per million tokens.
PRICES = {
    "up/gpt-up": {"input": 2.0, "output": 10.0, "cache_read": 0.5},
    "an/claude-up": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
}
CLAUDE_HEADERS = {"content-type": "application/json", "x-api-key": "k",
                  "anthropic-version": "2023-06-01",
                  "user-agent": "claude-cli/2.0.14 (external, cli)"}


def storage(tmp_path: Path) -> dict[str, Any]:
    return {"path": str(tmp_path / "books.db"), "usage_flush_interval_s": 0.1}


async def start(factory: GatewayFactory, tmp_path: Path, upstreams: Any,
                routes: dict[str, Any]) -> Gateway:
    return await factory(upstreams, routes=routes,
                         extra={"storage": storage(tmp_path), "prices": PRICES})


async def rows(tmp_path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The usage rows, once there are `count` of them (they are written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_since(tmp_path / "books.db", 0)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def messages(model: str, stream: bool = False) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": 200, "stream": stream,
                         "messages": [{"role": "user", "content": "Hi there"}]})


async def test_a_whole_answer_is_one_row(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start(gateway_factory, tmp_path, {"up": fake_openai}, {"gpt": "up/gpt-up"})
    fake_openai.queue(Reply(text="Hello!", usage=Usage(
        input_tokens=1200, output_tokens=50, cached_tokens=1000, reasoning_tokens=20)))
    async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/messages", data=messages("gpt"), headers=CLAUDE_HEADERS) as resp:
        assert resp.status == 200
        request_id = resp.headers["x-request-id"]
        await resp.read()
    [row] = await rows(tmp_path, 1)
    assert row["request_id"] == request_id
    assert (row["client"], row["protocol"], row["endpoint"]) == (
        "claude-code", "anthropic", "/v1/messages")
    assert (row["model"], row["provider"], row["target_model"]) == ("gpt", "up", "gpt-up")
    assert (row["stream"], row["status"], row["error_kind"], row["final"]) == (0, 200, None, 1)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"],
            row["reasoning_tokens"]) == (200, 1000, 50, 20)
    # 200 x $2 + 1,000 x $0.5 + 50 x $10 (reasoning priced as output) = 1,400 per million
    assert row["cost"] == pytest.approx(0.0014)
    assert row["key"] is None  # the open gateway
    assert row["latency_ms"] > 0 and row["ttft_ms"] is None
    assert abs(row["time"] - time.time()) < 60


@pytest.mark.parametrize("route", ["an/claude-up", "up/gpt-up"], ids=["passed", "translated"])
async def test_a_streamed_answer_is_one_row_with_time_to_first_token(
    fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory,
    tmp_path: Path, route: str,
) -> None:
    gw = await start(gateway_factory, tmp_path, {"up": fake_openai, "an": fake_anthropic},
                     {"m": route})
    usage = Usage(input_tokens=900, output_tokens=40, cached_tokens=600)
    fake = fake_anthropic if route.startswith("an/") else fake_openai
    fake.queue(Reply(text="Streaming along " * 5, usage=usage, chunk_delay=0.01))
    async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/messages", data=messages("m", stream=True),
            headers=CLAUDE_HEADERS) as resp:
        request_id = resp.headers["x-request-id"]
        body = await resp.read()
    assert b"message_stop" in body
    [row] = await rows(tmp_path, 1)
    assert row["request_id"] == request_id
    assert (row["stream"], row["status"], row["final"]) == (1, 200, 1)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (
        300, 600, 40)
    prices = PRICES[route]
    expected = (300 * prices["input"] + 600 * prices["cache_read"]
                + 40 * prices["output"]) / 1e6
    assert row["cost"] == pytest.approx(expected)
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


async def test_a_failed_attempt_then_a_fallback_are_two_rows(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    async with FakeOpenAI() as fa, FakeOpenAI() as fb:
        gw = await start(gateway_factory, tmp_path, {"fa": fa, "fb": fb},
                         {"m": ["fa/model-a", "fb/model-b"]})
        fa.queue(Reply(status=503, error="a is overloaded"))
        fb.queue(Reply(text="from b", usage=Usage(input_tokens=10, output_tokens=3)))
        async with aiohttp.ClientSession() as s, s.post(
                gw.url + "/v1/chat/completions", headers={"user-agent": "OpenAI/Python 1.0"},
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]}) as resp:
            assert resp.status == 200
            request_id = resp.headers["x-request-id"]
        failed, answered = await rows(tmp_path, 2)
    assert failed["request_id"] == answered["request_id"] == request_id
    assert (failed["provider"], failed["status"], failed["error_kind"], failed["final"]) == (
        "fa", 503, "api_error", 0)
    assert (answered["provider"], answered["status"], answered["error_kind"],
            answered["final"]) == ("fb", 200, None, 1)
    assert answered["client"] == failed["client"] == "openai-sdk"
    assert answered["protocol"] == "openai" and answered["input_tokens"] == 10
    assert answered["cost"] is None  # fb/model-b has no price: unknown, not zero


async def test_a_request_refused_before_any_upstream_is_a_row(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start(gateway_factory, tmp_path, {"up": fake_openai}, {"gpt": "up/gpt-up"})
    async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/messages", data=messages("no-such-model"),
            headers=CLAUDE_HEADERS) as resp:
        assert resp.status == 404
        request_id = resp.headers["x-request-id"]
    [row] = await rows(tmp_path, 1)
    assert (row["request_id"], row["model"], row["provider"], row["status"],
            row["error_kind"], row["final"]) == (request_id, "no-such-model", "", 404,
                                                 "not_found", 1)
    assert row["input_tokens"] == row["output_tokens"] == 0
    assert not fake_openai.requests


async def test_a_stream_the_client_abandons_records_what_was_used(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start(gateway_factory, tmp_path, {"up": fake_openai}, {"gpt": "up/gpt-up"})
    # The upstream reports usage only at the end, which the client never waits for.
    fake_openai.queue(Reply(text="word " * 400, chunk_delay=0.02))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(gw.url + "/v1/messages", data=messages("gpt", stream=True),
                            headers=CLAUDE_HEADERS)
        seen = b""
        while seen.count(b"text_delta") < 10:
            seen += await resp.content.readany()
        resp.close()  # the client goes away mid-stream
    [row] = await rows(tmp_path, 1)
    assert (row["status"], row["error_kind"], row["final"], row["stream"]) == (
        499, "cancelled", 1, 1)
    assert row["input_tokens"] > 0  # the estimate the stream's start carried
    # At least the ten deltas seen (12 characters each, ~3 tokens), at most the whole text.
    assert 10 * 12 / 3.6 * 0.9 <= row["output_tokens"] < 2000 / 3.6
    assert row["cost"] == pytest.approx(
        (row["input_tokens"] * 2.0 + row["output_tokens"] * 10.0) / 1e6)


async def test_no_row_lost_under_200_concurrent_requests(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start(gateway_factory, tmp_path, {"up": fake_openai}, {"gpt": "up/gpt-up"})
    count = 200
    fake_openai.queue(*[Reply(text=f"answer {n}", delay=0.05) for n in range(count)])

    async def one(s: aiohttp.ClientSession, n: int) -> str:
        stream = n % 2 == 0
        async with s.post(gw.url + "/v1/messages", data=messages("gpt", stream),
                          headers=CLAUDE_HEADERS) as resp:
            assert resp.status == 200
            await resp.read()
            return resp.headers["x-request-id"]

    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector) as s:
        ids = await asyncio.gather(*(one(s, n) for n in range(count)))
    assert len(set(ids)) == count
    found = await rows(tmp_path, count)
    assert sorted(r["request_id"] for r in found) == sorted(ids)
    assert all(r["status"] == 200 for r in found)
