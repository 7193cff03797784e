"""Many instances: two gateway processes on their own ports share one PostgreSQL database (made
for the test) and the machine's Redis, as two instances behind a load balancer would.

- a key of 10 requests a minute gets 10 requests through the pair, not 20, and once revoked
  through one is refused by both within a second;
- 200 concurrent requests across both leave each of their usage rows in the database once;
- an instance whose Redis goes away (one the test starts from `redis-server` and kills) keeps
  serving on its own counts and says so in /health.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI
from tests.keys_support import create, keys_cli, storage_config
from tests.pg_support import fresh_database

pytestmark = [pytest.mark.gateway]

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    async with fresh_database() as dsn:
        yield storage_config(tmp_path, {"url": dsn}), dsn


def key_id(config: Path, name: str) -> str:
    listed = json.loads(keys_cli(config, "list", "--json").stdout)
    return next(k["id"] for k in listed if k["name"] == name)


async def forget_in_redis(url: str, *key_ids: str) -> None:
    """What the gateways counted for the test's keys (random ids) in the shared Redis."""
    client = Redis.from_url(url)
    for kid in key_ids:
        names = [n async for n in client.scan_iter(match=f"babelgate:*{kid}*")]
        if names:
            await client.delete(*names)
    await client.aclose()


async def chat(session: aiohttp.ClientSession, gw: Gateway, key: str) -> tuple[int, str]:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]}
    async with session.post(gw.url + "/v1/chat/completions", json=body,
                            headers={"authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-request-id", "")


async def health(gw: Gateway) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/health") as resp:
        data: dict[str, object] = await resp.json()
        return data


async def test_a_key_of_10_a_minute_gets_10_through_the_pair(
        pg: tuple[Path, str], tmp_path: Path) -> None:
    config, dsn = pg
    key = create(config, "ten", "--rpm", "10")
    kid = key_id(config, "ten")
    async with FakeOpenAI() as fake:
        factory = GatewayFactory(tmp_path)
        try:
            pair = [await factory(fake, extra={"storage": {"url": dsn}, "redis": REDIS})
                    for _ in range(2)]
            for gw in pair:
                assert (await health(gw))["redis"] == "ok"
            async with aiohttp.ClientSession() as session:
                statuses = [(await chat(session, pair[n % 2], key))[0] for n in range(20)]
                # Revoked through the shared database: both refuse it within a second.
                assert keys_cli(config, "revoke", "ten").returncode == 0
                revoked = time.monotonic()
                for gw in pair:
                    while (await chat(session, gw, key))[0] != 401:
                        assert time.monotonic() - revoked < 1.0, "revocation not seen in 1 s"
                        await asyncio.sleep(0.02)
        finally:
            await factory.close()
            await forget_in_redis(REDIS, kid)
    assert statuses.count(200) == 10 and statuses.count(429) == 10, statuses
    # Both gateways served: the count was shared, not each one's own ten.
    assert statuses[:10] == [200] * 10


async def test_every_usage_row_of_200_concurrent_requests_is_there_once(
        pg: tuple[Path, str], tmp_path: Path) -> None:
    config, dsn = pg
    key = create(config, "busy", "--rpm", "1000", "--concurrency", "200")
    kid = key_id(config, "busy")
    async with FakeOpenAI() as fake:
        factory = GatewayFactory(tmp_path)
        try:
            pair = [await factory(fake, extra={"storage": {"url": dsn}, "redis": REDIS})
                    for _ in range(2)]
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                answers = await asyncio.gather(
                    *(chat(session, pair[n % 2], key) for n in range(200)))
        finally:
            await factory.close()  # a graceful stop writes every queued row
            await forget_in_redis(REDIS, kid)
    assert [status for status, _ in answers] == [200] * 200
    ids = {rid for _, rid in answers}
    assert len(ids) == 200
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT request_id, COUNT(*) FROM usage WHERE key = $1 "
                                "GROUP BY request_id", kid)
    finally:
        await conn.close()
    assert {row[0]: row[1] for row in rows} == dict.fromkeys(ids, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of the test's own, started from the installed binary on a free port."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make test installs it)"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


async def test_redis_gone_keeps_serving_on_local_limits(
        pg: tuple[Path, str], tmp_path: Path,
        own_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    config, dsn = pg
    url, redis_process = own_redis
    key = create(config, "steady", "--rpm", "4")
    async with FakeOpenAI() as fake:
        factory = GatewayFactory(tmp_path)
        try:
            gw = await factory(fake, extra={"storage": {"url": dsn}, "redis": url})
            assert (await health(gw))["redis"] == "ok"
            async with aiohttp.ClientSession() as session:
                assert (await chat(session, gw, key))[0] == 200
                assert (await chat(session, gw, key))[0] == 200
                redis_process.kill()
                redis_process.wait()
                # Served on: the local counts start afresh, and still hold the key's limit.
                statuses = [(await chat(session, gw, key))[0] for _ in range(6)]
            assert statuses == [200] * 4 + [429] * 2
            assert (await health(gw))["redis"] == "unreachable, local limits"
        finally:
            await factory.close()
    log = gw.log()
    assert log.count("is unreachable") == 1
    assert "WARNING" in next(line for line in log.splitlines() if "is unreachable" in line)
    assert "Traceback" not in log
