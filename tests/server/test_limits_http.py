"""Limits and budgets over real HTTP, with the official SDKs as clients: their RateLimitError
(and what it carries: the status, the body's type and code, retry-after) proves each
protocol's shape. Keys are made with `babelgate keys` (a real subprocess); counts live in the
gateway process (no `redis:`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.core import Reply
from tests.keys_support import create, storage_config

from babelgate.storage.usage import read_since

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="module")]

ROUTES = {"claude-a": "an/claude-up", "gpt-5-chat": "oa/gpt-up"}
# $10,000 per million tokens: one cent a token, so one small request spends a cent budget.
PRICES = {"an/claude-up": {"input": 10000, "output": 10000},
          "oa/gpt-up": {"input": 10000, "output": 10000}}


@dataclass
class Limited:
    gw: Gateway
    an: FakeAnthropic
    keys: dict[str, str]
    db: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Limited]:
    workdir = tmp_path_factory.mktemp("limits")
    db = workdir / "bg.db"
    config = storage_config(workdir, {"path": str(db)})
    keys = {
        "rpm": create(config, "rpm", "--rpm", "2"),
        "daily": create(config, "daily", "--budget", "0.01", "--per", "day"),
        "monthly": create(config, "monthly", "--budget", "0.01", "--per", "month"),
        "one": create(config, "one", "--concurrency", "1"),
        "gem": create(config, "gem", "--rpm", "1"),
        "gauged": create(config, "gauged", "--budget", "1", "--per", "day"),
    }
    async with FakeAnthropic() as an, FakeOpenAI() as oa:
        factory = GatewayFactory(workdir)
        try:
            gw = await factory({"an": an, "oa": oa}, routes=ROUTES,
                               extra={"storage": {"path": str(db),
                                                  "usage_flush_interval_s": 0.1},
                                      "prices": PRICES, "metrics": True})
            yield Limited(gw, an, keys, db)
        finally:
            await factory.close()
    log = gw.log()
    assert "Traceback" not in log
    assert not any(key in log for key in keys.values())


def claude(gw: Gateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)


def gpt(gw: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


async def ask_claude(client: anthropic.AsyncAnthropic) -> None:
    await client.messages.create(model="claude-a", max_tokens=50,
                                 messages=[{"role": "user", "content": "Hi"}])


async def ask_chat(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="gpt-5-chat",
                                         messages=[{"role": "user", "content": "Hi"}])


async def usage_row(db: Path, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The usage row of `request_id`, once written (the rows go in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [row for row in read_since(db, 0) if row["request_id"] == request_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no usage row for {request_id}"
        await asyncio.sleep(0.05)


async def test_requests_per_minute_in_both_protocols(limited: Limited) -> None:
    key = limited.keys["rpm"]
    await ask_claude(claude(limited.gw, key))
    await ask_chat(gpt(limited.gw, key))  # one key, one count, whatever the protocol
    with pytest.raises(anthropic.RateLimitError) as refused:
        await ask_claude(claude(limited.gw, key))
    error = refused.value
    assert error.status_code == 429
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "rate_limit_error"
    assert "2 requests per minute" in error.message
    assert 1 <= float(error.response.headers["retry-after"]) <= 120
    # Refused before any upstream, like a model no route serves: a row with no provider.
    row = await usage_row(limited.db, error.response.headers["x-request-id"])
    assert (row["model"], row["provider"], row["status"], row["error_kind"], row["cost"]) == (
        "claude-a", "", 429, "rate_limit", None)
    assert row["key"]
    with pytest.raises(openai.RateLimitError) as refused_chat:
        await ask_chat(gpt(limited.gw, key))
    assert refused_chat.value.code == "rate_limit_exceeded"
    assert float(refused_chat.value.response.headers["retry-after"]) >= 1


async def test_a_spent_daily_budget_is_the_quota_error(limited: Limited) -> None:
    key = limited.keys["daily"]
    await ask_chat(gpt(limited.gw, key))  # a few cents: more than the whole budget
    with pytest.raises(openai.RateLimitError) as refused:
        await ask_chat(gpt(limited.gw, key))
    error = refused.value
    assert error.status_code == 429 and error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    # Claude Code shows Anthropic's rate_limit_error message: it says when the budget resets.
    with pytest.raises(anthropic.RateLimitError) as refused_claude:
        await ask_claude(claude(limited.gw, key))
    message = refused_claude.value.message
    assert "budget of $0.01 for today" in message and "resets at" in message


async def test_a_spent_monthly_budget_waits_for_the_month(limited: Limited) -> None:
    key = limited.keys["monthly"]
    await ask_claude(claude(limited.gw, key))
    with pytest.raises(anthropic.RateLimitError, match="for this month") as refused:
        await ask_claude(claude(limited.gw, key))
    assert float(refused.value.response.headers["retry-after"]) > 60


async def test_concurrency_slot_comes_back_when_the_client_leaves(limited: Limited) -> None:
    key = limited.keys["one"]
    limited.an.queue(Reply(text="one two three four five six", chunk_delay=0.5))
    body = {"model": "claude-a", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session:
        streaming = await session.post(limited.gw.url + "/v1/messages", json=body,
                                       headers=headers)
        assert streaming.status == 200
        await streaming.content.readline()  # the stream is open
        with pytest.raises(anthropic.RateLimitError, match="1 concurrent requests"):
            await ask_claude(claude(limited.gw, key))
        streaming.close()  # the client leaves mid-stream
    deadline = time.monotonic() + 5
    while True:
        try:
            await ask_claude(claude(limited.gw, key))
            break
        except anthropic.RateLimitError:
            assert time.monotonic() < deadline, "the slot was not given back"
            await asyncio.sleep(0.05)


async def test_gemini_clients_get_resource_exhausted(limited: Limited) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    headers = {"x-goog-api-key": limited.keys["gem"]}
    url = limited.gw.url + "/v1beta/models/claude-a:generateContent"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as first:
            assert first.status == 200, await first.text()
        async with session.post(url, json=body, headers=headers) as second:
            assert second.status == 429
            error = (await second.json())["error"]
            assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
            assert "1 requests per minute" in error["message"]
            assert float(second.headers["retry-after"]) >= 1


async def test_health_says_limits_are_local(limited: Limited) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            limited.gw.url + "/health") as resp:
        assert (await resp.json())["redis"] is None


async def budget_gauge(limited: Limited, name: str) -> float | None:
    headers = {"authorization": f"Bearer {limited.keys[name]}"}  # a keyed gateway's /metrics
    async with aiohttp.ClientSession() as session, session.get(
            limited.gw.url + "/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == "babelgate_budget_remaining_usd":
            for sample in family.samples:
                if sample.labels.get("key") == name:
                    return float(sample.value)
    return None


async def test_metrics_show_the_budget_left(limited: Limited) -> None:
    # Set at start-up from the usage table (nothing spent yet), then at each settlement.
    assert await budget_gauge(limited, "gauged") == 1.0
    client = gpt(limited.gw, limited.keys["gauged"])
    answer = await client.chat.completions.with_raw_response.create(
        model="gpt-5-chat", messages=[{"role": "user", "content": "Hi"}])
    cost = (await usage_row(limited.db, answer.headers["x-request-id"]))["cost"]
    assert 0 < cost < 1
    deadline = time.monotonic() + 5
    while await budget_gauge(limited, "gauged") != pytest.approx(1 - cost):
        assert time.monotonic() < deadline, await budget_gauge(limited, "gauged")
        await asyncio.sleep(0.05)
