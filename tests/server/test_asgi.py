"""What only the ASGI adapter (server/asgi.py) does: its body limit, HEAD, starting without a
lifespan, and the factory's configuration errors. The HTTP checks it shares with our own
server run under both (`each_server` modules, tests/server/conftest.py).

uvicorn runs in this test's event loop here, so that the adapter's limit can be set small."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import uvicorn
from tests.fakes import FakeOpenAI, Reply
from tests.fakes.core import free_port

from babelgate.config import load_settings
from babelgate.server.app import create_app
from babelgate.server.asgi import AsgiApp

LIMIT = 4096
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


def body_of_size(size: int) -> bytes:
    head = b'{"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.fixture
async def served(fake_openai: FakeOpenAI, tmp_path: Path) -> AsyncIterator[str]:
    """The adapter under uvicorn without lifespan (the app starts on its first request)."""
    config = tmp_path / "babelgate.yaml"
    config.write_bytes(orjson.dumps({
        "providers": {"up": fake_openai.provider_config()},
        "routes": {"default": "up/gpt-up"},
        "storage": {"path": str(tmp_path / "state.db")},
    }))
    app = create_app(load_settings(config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        AsgiApp(app, max_body=LIMIT), host="127.0.0.1", port=port, lifespan="off",
        log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await app.stop()


async def test_a_body_over_the_limit_is_413_in_the_protocols_format(
    served: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(Reply(text="fits"))
    async with aiohttp.ClientSession() as session:
        async with session.post(served + "/v1/messages", data=body_of_size(LIMIT),
                                headers=HEADERS) as resp:
            assert resp.status == 200
            assert (await resp.json())["content"][0]["text"] == "fits"
        # Chunked, so that the limit is met while reading, not from content-length.
        async def pieces() -> AsyncIterator[bytes]:
            yield body_of_size(LIMIT + 1)

        async with session.post(served + "/v1/messages", data=pieces(),
                                headers=HEADERS) as resp:
            assert resp.status == 413
            error = await resp.json()
        async with session.post(served + "/v1/chat/completions",
                                data=body_of_size(LIMIT + 1), headers=HEADERS) as resp:
            assert resp.status == 413
            openai_error = await resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
    assert "larger than 4 KiB" in error["error"]["message"]
    assert "message" in openai_error["error"] and "type" not in openai_error
    assert len(fake_openai.requests) == 1


async def test_head_has_the_length_and_no_body(served: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(served + "/health") as resp:
            whole = await resp.read()
        async with session.head(served + "/health") as resp:
            assert resp.status == 200
            assert int(resp.headers["content-length"]) > 0
            assert await resp.read() == b""
    assert orjson.loads(whole)["status"] == "ok"


def test_the_factory_reports_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("providers: [1, 2]\n")
    result = subprocess.run(
        [sys.executable, "-c", "from babelgate.server.asgi import app_factory; app_factory()"],
        env={**os.environ, "BABELGATE_CONFIG": str(config)}, capture_output=True, timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"configuration error" in result.stderr
    assert str(config).encode() in result.stderr
    assert b"Traceback" not in result.stderr
