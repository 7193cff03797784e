"""Many instances and many processes share what routing learnt: two gateway processes on
their own ports, on one database, as two instances behind a load balancer (or two workers of
`serve --workers 2`) would be.

- PostgreSQL + Redis: a quota mark made by one is obeyed by the other within a second, and a
  reset through one brings the provider back on both; a target one of them rests (cooldown)
  rests on the other too, within a second.
- One SQLite file, no Redis: a quota mark made by one is obeyed by the other within a second
  (each process reads the marks twice a second); and so among the workers of
  `serve --workers 3`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from tests.conftest import ROOT, Gateway, GatewayFactory, stop_process, wait_healthy
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import free_port
from tests.pg_support import fresh_database

pytestmark = [pytest.mark.gateway]

REDIS = "redis://127.0.0.1:6379/0"
ROUTES: dict[str, Any] = {"claude-*": ["sub/claude-up", "payg/gpt-up"]}


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


async def ask(gw: Gateway, close: bool = False) -> tuple[int, str]:
    """One request; `close`: on a connection of its own (under `--workers`, the kernel
    hands each new connection to any worker)."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if close:
        headers["connection"] = "close"
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/messages", data=orjson.dumps(body), headers=headers,
    ) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-babelgate-target", "")


async def states(gw: Gateway) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/v1/quota") as resp:
        assert resp.status == 200
        return {p["name"]: p["state"] for p in (await resp.json())["providers"]}


async def reset(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/quota/reset", data=b'{"provider": "sub"}'
    ) as resp:
        assert resp.status == 200


async def within(seconds: float, gw: Gateway, provider: str, state: str) -> float:
    """How long until `gw` shows `provider` in `state` (fails after `seconds`)."""
    start = time.monotonic()
    while (await states(gw))[provider] != state:
        assert time.monotonic() - start < seconds, f"{provider} not {state} on {gw.url}"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def pair(factory: GatewayFactory, sub: FakeAnthropic, payg: FakeOpenAI,
               extra: dict[str, Any]) -> list[Gateway]:
    upstreams = {"sub": sub.provider_config(quota={"window": "1h"}),
                 "payg": payg.provider_config()}
    return [await factory(upstreams, routes=ROUTES, extra=extra) for _ in range(2)]


async def test_a_quota_mark_and_a_rest_made_by_one_instance_hold_on_the_other(
        dsn: str, tmp_path: Path) -> None:
    async with FakeAnthropic() as sub, FakeOpenAI() as payg:
        factory = GatewayFactory(tmp_path)
        try:
            one, two = await pair(factory, sub, payg, {
                "storage": {"url": dsn}, "redis": REDIS,
                "cooldown": {"failures": 1, "seconds": 60}})

            # The subscription's quota is used up, as `one` learns.
            sub.queue(Reply(status=402, error="Your credit balance is too low."))
            assert await ask(one) == (200, "payg/gpt-up")
            assert await within(1.0, two, "sub", "exhausted") < 1.0
            asked = len(sub.requests)
            assert await ask(two) == (200, "payg/gpt-up")
            assert len(sub.requests) == asked  # `two` does not ask it either

            # A reset through `two` brings it back on `one` too.
            await reset(two)
            assert await within(1.0, one, "sub", "ok") < 1.0
            assert await ask(one) == (200, "sub/claude-up")

            # `one` rests the subscription after a failure (cooldown): `two` rests it too.
            sub.queue(Reply(status=503, error="overloaded"))
            assert await ask(one) == (200, "payg/gpt-up")
            assert await within(1.0, two, "sub", "cooling") < 1.0
            asked = len(sub.requests)
            assert await ask(two) == (200, "payg/gpt-up")
            assert len(sub.requests) == asked

            # Reset through `one`: the rest ends on `two` as well.
            await reset(one)
            assert await within(1.0, two, "sub", "ok") < 1.0
            assert await ask(two) == (200, "sub/claude-up")
        finally:
            await factory.close()
    for gw in (one, two):
        assert "Traceback" not in gw.log()


async def test_without_redis_processes_on_one_database_read_the_marks_every_second(
        tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with FakeAnthropic() as sub, FakeOpenAI() as payg:
        factory = GatewayFactory(tmp_path)
        try:
            one, two = await pair(factory, sub, payg, {"storage": {"path": str(db)}})
            sub.queue(Reply(status=402, error="Your credit balance is too low."))
            assert await ask(one) == (200, "payg/gpt-up")
            assert await within(1.0, two, "sub", "exhausted") < 1.0
            asked = len(sub.requests)
            assert await ask(two) == (200, "payg/gpt-up")
            assert len(sub.requests) == asked
            await reset(two)
            assert await within(1.0, one, "sub", "ok") < 1.0
        finally:
            await factory.close()


async def test_serve_workers_obey_a_quota_mark_one_of_them_made(tmp_path: Path) -> None:
    """`serve --workers 3` on one port: after one worker found the subscription used up,
    requests spread over all the workers (new connections) never ask it again."""
    async with FakeAnthropic() as sub, FakeOpenAI() as payg:
        config = tmp_path / "babelgate.yaml"
        config.write_text(yaml.safe_dump({
            "providers": {"sub": sub.provider_config(quota={"window": "1h"}),
                          "payg": payg.provider_config()},
            "routes": ROUTES, "server": {"shutdown_timeout": 2},
            "storage": {"path": str(tmp_path / "state.db")}}))
        port = free_port()
        log_path = tmp_path / "workers.log"
        with log_path.open("wb") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", "babelgate", "serve", "--config", str(config),
                 "--port", str(port), "--workers", "3"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        gw = Gateway(f"http://127.0.0.1:{port}", {}, config, log_path, supervisor)
        try:
            await wait_healthy(gw)
            while log_path.read_text().count("listening on") < 3:
                assert supervisor.poll() is None, log_path.read_text()
                await asyncio.sleep(0.1)
            sub.queue(Reply(status=402, error="Your credit balance is too low."))
            assert await ask(gw, close=True) == (200, "payg/gpt-up")
            await asyncio.sleep(1.0)
            for _ in range(12):
                assert await ask(gw, close=True) == (200, "payg/gpt-up")
            assert len(sub.requests) == 1
        finally:
            await stop_process(supervisor)
