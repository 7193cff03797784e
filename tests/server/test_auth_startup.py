"""How keys shape start-up, and two gateways sharing one database: `auth.required` refuses
to start open; listening beyond loopback without keys is a loud warning; a key revoked
through one database is refused by every gateway reading it within about a second."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI
from tests.fakes.core import free_port
from tests.keys_support import ROOT, create, keys_cli, storage_config

from babelgate.server.run import loopback

pytestmark = [pytest.mark.gateway]


def serve(config: Path, host: str = "127.0.0.1") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "babelgate", "serve", "--config", str(config), "--host", host,
         "--port", str(free_port())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_auth_required_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "bg.yaml"
    config.write_text(yaml.safe_dump({"auth": {"required": True},
                                      "storage": {"path": str(tmp_path / "bg.db")}}))
    process = serve(config)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 2, out
    assert "auth.required is true but no gateway key exists" in out
    assert "babelgate keys create NAME" in out and "Traceback" not in out


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "bg.yaml"
    config.write_text(yaml.safe_dump({"storage": {
        "url": f"postgresql://postgres:pw-SECRET@127.0.0.1:{free_port()}/bg"}}))
    process = serve(config)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1, out
    assert "cannot use the database postgresql://postgres:***@127.0.0.1" in out
    assert "Traceback" not in out and "pw-SECRET" not in out


async def test_auth_required_with_a_key_starts(tmp_path: Path) -> None:
    config = tmp_path / "bg.yaml"
    config.write_text(yaml.safe_dump({"auth": {"required": True},
                                      "storage": {"path": str(tmp_path / "bg.db")}}))
    create(config, "alice")
    seen = await start_up_lines(serve(config, host="0.0.0.0"))
    assert "listening on http://0.0.0.0" in seen
    assert "without gateway keys" not in seen  # keys exist: nothing to warn about


async def start_up_lines(process: subprocess.Popen[str]) -> str:
    """All the gateway printed once it was listening, then stopped. (The warning is logged
    in the same step as the "listening" line, before a SIGTERM can be handled.)"""
    assert process.stdout is not None
    seen = ""
    try:
        deadline = time.monotonic() + 15
        while "listening" not in seen and time.monotonic() < deadline:
            line = await asyncio.to_thread(process.stdout.readline)
            if not line:
                break
            seen += line
    finally:
        process.terminate()
        # read() through the same buffered pipe: communicate() would skip what readline()
        # already buffered.
        rest = await asyncio.to_thread(process.stdout.read)
        process.wait(timeout=15)
    return seen + rest


async def test_open_beyond_loopback_is_a_loud_warning(tmp_path: Path) -> None:
    config = tmp_path / "bg.yaml"
    config.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "bg.db")}}))
    seen = await start_up_lines(serve(config, host="0.0.0.0"))
    assert "WARNING" in seen and "without gateway keys" in seen, seen
    assert loopback("127.0.0.1") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("192.0.2.1") and not loopback("gw.local")


async def test_a_second_gateway_sharing_the_database_refuses_a_revoked_key(
        tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    config = storage_config(tmp_path, {"path": str(db)})
    key = create(config, "dave")
    async with FakeOpenAI() as fake:
        factory = GatewayFactory(tmp_path)
        try:
            first = await factory(fake, extra={"storage": {"path": str(db)}})
            second = await factory(fake, extra={"storage": {"path": str(db)}})
            for gw in (first, second):
                assert await models_status(gw.url, key) == 200
            assert keys_cli(config, "revoke", "dave").returncode == 0
            revoked_at = time.monotonic()
            for gw in (second, first):
                while await models_status(gw.url, key) != 401:
                    assert time.monotonic() - revoked_at < 1.0, "revoke not seen in 1 s"
                    await asyncio.sleep(0.02)
        finally:
            await factory.close()


async def models_status(url: str, key: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            url + "/v1/models", headers={"authorization": f"Bearer {key}"}) as resp:
        return resp.status

