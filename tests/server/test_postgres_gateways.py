"""Keys on PostgreSQL end to end: `babelgate keys` (a real subprocess) writes them, two
gateways sharing the database obey them, and a key revoked through one database is refused
by both within a second."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI
from tests.keys_support import create, keys_cli, storage_config
from tests.pg_support import fresh_database

pytestmark = [pytest.mark.gateway]


@pytest.fixture
async def pg_config(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    async with fresh_database() as dsn:
        yield storage_config(tmp_path, {"url": dsn}), dsn


async def test_keys_cli_on_postgres(pg_config: tuple[Path, str]) -> None:
    config, _ = pg_config
    key = create(config, "alice", "--models", "claude-*", "--rpm", "60")
    listed = json.loads(keys_cli(config, "list", "--json").stdout)
    assert [(k["name"], k["models"], k["rpm"]) for k in listed] == [("alice", ["claude-*"], 60)]
    assert key[:10] == listed[0]["prefix"]
    assert keys_cli(config, "create", "alice").returncode == 1
    assert keys_cli(config, "revoke", "alice").returncode == 0
    assert json.loads(keys_cli(config, "list", "--json").stdout) == []


async def test_two_gateways_on_postgres_refuse_a_revoked_key_within_a_second(
        pg_config: tuple[Path, str], tmp_path: Path) -> None:
    config, dsn = pg_config
    key = create(config, "erin")
    create(config, "frank")
    async with FakeOpenAI() as fake:
        factory = GatewayFactory(tmp_path)
        try:
            pair = [await factory(fake, extra={"storage": {"url": dsn}}) for _ in range(2)]
            answered = 0  # requests made with erin's key that were served
            for gw in pair:
                assert await chat_status(gw.url, key) == 200
                answered += 1
                assert await chat_status(gw.url, "bg-wrong") == 401
            assert keys_cli(config, "revoke", "erin").returncode == 0
            revoked_at = time.monotonic()
            for gw in pair:
                while await chat_status(gw.url, key) != 401:
                    answered += 1
                    assert time.monotonic() - revoked_at < 1.0, "revoke not seen in 1 s"
                    await asyncio.sleep(0.02)
        finally:
            await factory.close()
    for gw in pair:
        assert key not in gw.log() and "Traceback" not in gw.log()
    # Both gateways stopped gracefully: the usage row of each request served with erin's key
    # is in the shared database, once; refused ones leave none.
    report = subprocess.run(
        [sys.executable, "-m", "babelgate", "usage", "--by", "key", "--json", "--config",
         str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert report.returncode == 0, report.stderr
    by_key = {g["name"]: g["requests"] for g in json.loads(report.stdout)["groups"]}
    assert by_key == {"erin (revoked)": answered}  # usage rows name the key by id


async def chat_status(url: str, key: str) -> int:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/chat/completions", json=body,
            headers={"authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        return resp.status
