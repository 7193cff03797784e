"""`babelgate serve --workers N` as a user runs it: N worker processes answer on one port,
SIGHUP and POST /admin/reload reach every one of them, and SIGTERM to the supervisor stops
them all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.conftest import ROOT, stop_process
from tests.fakes import FakeOpenAI
from tests.fakes.core import free_port

pytestmark = [pytest.mark.gateway]

WORKERS = 3
WAIT = 20.0


async def test_workers_share_the_port_reload_together_and_stop_together(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "babelgate.yaml"
    config.write_text(yaml.safe_dump({
        "providers": {"up": fake_openai.provider_config()},
        "routes": {"default": "up/model-a"},
        "server": {"reload_poll": 0, "shutdown_timeout": 2},
        "storage": {"path": str(tmp_path / "state.db")},
    }))
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "babelgate", "serve", "--config", str(config),
             "--port", str(port), "--workers", str(WORKERS)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        pids = await _every_worker(url, supervisor, log_path, lambda h: True)
        assert len(pids) == WORKERS
        assert supervisor.pid not in pids
        for pid in pids:
            assert _parent_of(pid) == supervisor.pid

        # Every worker serves requests (answers come from all of them over new connections).
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(6):
                async with session.post(url + "/v1/chat/completions", json=body,
                                        headers={"Connection": "close"}) as resp:
                    assert resp.status == 200
                    assert resp.headers["x-babelgate-target"] == "up/model-a"

        # SIGHUP to the supervisor: every worker reloads.
        supervisor.send_signal(signal.SIGHUP)
        reloaded = await _every_worker(url, supervisor, log_path, lambda h: h["reloads"] == 1)
        assert reloaded == pids

        # POST /admin/reload reaches one worker, which has the supervisor reload the others.
        config.write_text(config.read_text().replace("up/model-a", "up/model-b"))
        async with aiohttp.ClientSession() as session, session.post(
            url + "/admin/reload"
        ) as resp:
            assert resp.status == 200
        followed = await _every_worker(url, supervisor, log_path, lambda h: h["reloads"] >= 2)
        assert followed == pids
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(6):
                async with session.post(url + "/v1/chat/completions", json=body,
                                        headers={"Connection": "close"}) as resp:
                    assert resp.headers["x-babelgate-target"] == "up/model-b"

        # SIGTERM to the supervisor: all of them stop, then the supervisor.
        supervisor.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while supervisor.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert supervisor.returncode == 0, log_path.read_text()
        for pid in pids:
            assert not _alive(pid), f"worker {pid} still running"
        text = log_path.read_text()
        assert "all workers stopped" in text
        assert text.count("listening on") == WORKERS
    finally:
        await stop_process(supervisor)


def test_workers_on_a_port_in_use_exit_1(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "babelgate", "serve", "--port", str(port), "--workers", "2"],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                 "PYTHONPATH": str(ROOT / "src")},
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


async def _every_worker(url: str, supervisor: subprocess.Popen[bytes], log_path: Path,
                        ready: Any) -> set[int]:
    """The pids of WORKERS distinct workers whose /health satisfies `ready`, asked over new
    connections (the kernel spreads them over the workers)."""
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    async with aiohttp.ClientSession() as session:
        while len(seen) < WORKERS:
            assert supervisor.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, (seen, log_path.read_text())
            try:
                async with session.get(url + "/health", headers={"Connection": "close"}) as r:
                    health = await r.json()
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
                continue
            if ready(health):
                seen.add(health["pid"])
            else:
                await asyncio.sleep(0.02)
    return seen


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
