"""`babelgate serve` with no configuration at all still starts, and answers every request with
an error that says how to configure a provider, in the client's own format."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
from tests.fakes.core import free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_starts_without_providers_and_says_how_to_configure(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "babelgate", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                try:
                    async with session.get(url + "/health") as resp:
                        health = await resp.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            assert health["providers"] == []
            body = {"model": "claude-x", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url + "/v1/messages", json=body) as resp:
                anthropic = await resp.json()
            chat = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url + "/v1/chat/completions", json=chat) as resp:
                openai = await resp.json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert anthropic["type"] == "error"
    assert "ANTHROPIC_API_KEY" in anthropic["error"]["message"]
    assert "babelgate.yaml" in anthropic["error"]["message"]
    assert "ANTHROPIC_API_KEY" in openai["error"]["message"]
