"""Many instances and many processes share what routing learnt: two gateway processes on
their own ports, on one database, as two instances behind a load balancer (or two workers of
`serve --workers 2`) would be.

- PostgreSQL + Redis: a quota mark made by one is obeyed by the other within a second, and a
  reset through one brings the provider back on both; a target one of them rests (cooldown)
  rests on the other too, within a second; and so does a refused key of `api_keys`: the
  other process never sends it while it rests, and shows it `cooling` in /v1/quota.
- One SQLite file, no Redis: a quota mark made by one is obeyed by the other within a second
  (each process reads the marks twice a second); and so among the workers of
  `serve --workers 3`, whose supervisor also shares the rests of keys and targets as Redis
  would.
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
from tests.providers.test_credentials import KeyedOpenAI

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


GOOD_KEY, BAD_KEY = "sk-shared-GOOD-0000000001", "sk-shared-BAD-00000000002"


async def ask_chat(gw: Gateway, text: str, close: bool = False) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    headers = {"content-type": "application/json"}
    if close:  # a connection of its own (see `ask`)
        headers["connection"] = "close"
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers,
    ) as resp:
        await resp.read()
        return resp.status


async def key_states(gw: Gateway, close: bool = False) -> list[str]:
    """The states /v1/quota shows for the keys of provider `keyed` (and never a key)."""
    headers = {"connection": "close"} if close else {}
    async with aiohttp.ClientSession() as session, session.get(
            gw.url + "/v1/quota", headers=headers) as resp:
        assert resp.status == 200
        raw = await resp.read()
    assert BAD_KEY.encode() not in raw and GOOD_KEY.encode() not in raw
    keyed = next(p for p in orjson.loads(raw)["providers"] if p["name"] == "keyed")
    return [key["state"] for key in keyed["keys"]]


async def keys_within(seconds: float, gw: Gateway, wanted: list[str]) -> None:
    start = time.monotonic()
    while (found := await key_states(gw)) != wanted:
        assert time.monotonic() - start < seconds, f"keys {found} on {gw.url}, not {wanted}"
        await asyncio.sleep(0.05)


async def test_a_key_refused_on_one_process_is_not_sent_by_the_other_while_it_rests(
        tmp_path: Path) -> None:
    """Two gateway processes on one database and Redis, one provider with two `api_keys`,
    an upstream that refuses the first: once one process saw it refused, the other never
    sends it while it rests, and both show it cooling; a reset through either ends the rest
    on both."""
    async with KeyedOpenAI(GOOD_KEY) as keyed:
        factory = GatewayFactory(tmp_path)
        config = {"type": "openai", "base_url": keyed.base_url,
                  "api_keys": [BAD_KEY, GOOD_KEY]}
        extra = {"storage": {"path": str(tmp_path / "shared.db")}, "redis": REDIS}
        try:
            one, two = [await factory({"keyed": config}, routes={"m": "keyed/model-k"},
                                      extra=extra) for _ in range(2)]
            # `one` sends the first key in turn, is refused, and serves with the second.
            assert await ask_chat(one, "first") == 200
            assert keyed.keys_seen() == [BAD_KEY, GOOD_KEY]
            assert await key_states(one) == ["cooling", "ok"]
            await keys_within(1.0, two, ["cooling", "ok"])

            # `two` has sent nothing yet: left to itself it would try the first key in turn
            # (and be refused once); it knows it rests.
            for n in range(4):
                assert await ask_chat(two, f"conversation {n}") == 200
            assert keyed.keys_seen()[2:] == [GOOD_KEY] * 4
            assert (401, "Incorrect API key.") in keyed.rejections
            assert len(keyed.rejections) == 1

            # A reset through `two` wakes the key on `one` as well.
            async with aiohttp.ClientSession() as session, session.post(
                two.url + "/v1/quota/reset", data=b'{"provider": "keyed"}'
            ) as resp:
                assert resp.status == 200
            await keys_within(1.0, one, ["ok", "ok"])
            keyed.keys.add(BAD_KEY)  # accepted again: `one` takes it in turn once more
            assert await ask_chat(one, "after the reset") == 200
            assert keyed.keys_seen()[-1] == BAD_KEY
        finally:
            await factory.close()
    for gw in (one, two):
        log = gw.log()
        assert "Traceback" not in log
        assert BAD_KEY not in log and GOOD_KEY not in log


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


async def serve_workers(tmp_path: Path, settings: dict[str, Any], count: int) -> Gateway:
    """`babelgate serve --workers count` with `settings`, once every worker listens."""
    config = tmp_path / "babelgate.yaml"
    config.write_text(yaml.safe_dump({**settings, "server": {"shutdown_timeout": 2},
                                      "storage": {"path": str(tmp_path / "state.db")}}))
    port = free_port()
    log_path = tmp_path / "workers.log"
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "babelgate", "serve", "--config", str(config),
             "--port", str(port), "--workers", str(count)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    gw = Gateway(f"http://127.0.0.1:{port}", {}, config, log_path, supervisor)
    try:
        await wait_healthy(gw)
        while log_path.read_text().count("listening on") < count:
            assert supervisor.poll() is None, log_path.read_text()
            await asyncio.sleep(0.1)
    except BaseException:
        await stop_process(supervisor)
        raise
    return gw


async def test_serve_workers_obey_a_quota_mark_one_of_them_made(tmp_path: Path) -> None:
    """`serve --workers 3` on one port: after one worker found the subscription used up,
    requests spread over all the workers (new connections) never ask it again."""
    async with FakeAnthropic() as sub, FakeOpenAI() as payg:
        gw = await serve_workers(tmp_path, {
            "providers": {"sub": sub.provider_config(quota={"window": "1h"}),
                          "payg": payg.provider_config()},
            "routes": ROUTES}, 3)
        try:
            sub.queue(Reply(status=402, error="Your credit balance is too low."))
            assert await ask(gw, close=True) == (200, "payg/gpt-up")
            await asyncio.sleep(1.0)
            for _ in range(12):
                assert await ask(gw, close=True) == (200, "payg/gpt-up")
            assert len(sub.requests) == 1
        finally:
            await stop_process(gw.process)


async def test_serve_workers_without_redis_share_the_rests_of_keys_and_targets(
        tmp_path: Path) -> None:
    """`serve --workers 3`, no Redis: the supervisor keeps what routing shares. A key one
    worker saw refused is sent by none while it rests, and every worker shows it cooling;
    a target one worker rests (cooldown) is asked by none."""
    async with KeyedOpenAI(GOOD_KEY) as keyed, FakeAnthropic() as sub, FakeOpenAI() as payg:
        gw = await serve_workers(tmp_path, {
            "providers": {"keyed": {"type": "openai", "base_url": keyed.base_url,
                                    "api_keys": [BAD_KEY, GOOD_KEY]},
                          "sub": sub.provider_config(), "payg": payg.provider_config()},
            "routes": {**ROUTES, "m": "keyed/model-k"},
            "cooldown": {"failures": 1, "seconds": 60}}, 3)
        try:
            assert await ask_chat(gw, "first", close=True) == 200
            assert keyed.keys_seen() == [BAD_KEY, GOOD_KEY]
            await asyncio.sleep(1.0)
            for n in range(9):  # new connections: the kernel spreads them over the workers
                assert await key_states(gw, close=True) == ["cooling", "ok"]
                assert await ask_chat(gw, f"conversation {n}", close=True) == 200
            assert keyed.keys_seen()[2:] == [GOOD_KEY] * 9
            assert len(keyed.rejections) == 1

            sub.queue(Reply(status=503, error="overloaded"))
            assert await ask(gw, close=True) == (200, "payg/gpt-up")
            await asyncio.sleep(1.0)
            for _ in range(9):
                assert await ask(gw, close=True) == (200, "payg/gpt-up")
            assert len(sub.requests) == 1
        finally:
            await stop_process(gw.process)
        log = gw.log()
        assert "Traceback" not in log and BAD_KEY not in log
