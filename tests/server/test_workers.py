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
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import ROOT, stop_process
from tests.fakes import FakeOpenAI
from tests.fakes.core import free_port
from tests.keys_support import create

pytestmark = [pytest.mark.gateway]

WORKERS = 3
WAIT = 20.0


async def test_workers_share_the_port_reload_together_and_stop_together(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = _config(tmp_path, fake_openai)
    supervisor, log_path, url = _supervise(config, WORKERS)
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


def _config(tmp_path: Path, fake: FakeOpenAI, **extra: Any) -> Path:
    config = tmp_path / "babelgate.yaml"
    config.write_text(yaml.safe_dump({
        "providers": {"up": fake.provider_config()},
        "routes": {"default": "up/model-a"},
        "server": {"reload_poll": 0, "shutdown_timeout": 2},
        "storage": {"path": str(tmp_path / "state.db")},
        **extra,
    }))
    return config


def _supervise(config: Path, workers: int) -> tuple[subprocess.Popen[bytes], Path, str]:
    """`babelgate serve --workers N` on a free port: the supervisor, its log, its URL."""
    port = free_port()
    log_path = config.parent / "gateway.log"
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "babelgate", "serve", "--config", str(config),
             "--port", str(port), "--workers", str(workers)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return supervisor, log_path, f"http://127.0.0.1:{port}"


async def _every_worker(url: str, supervisor: subprocess.Popen[bytes], log_path: Path,
                        ready: Any, count: int = WORKERS) -> set[int]:
    """The pids of WORKERS distinct workers whose /health satisfies `ready`, asked over new
    connections (the kernel spreads them over the workers)."""
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    async with aiohttp.ClientSession() as session:
        while len(seen) < count:
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



async def test_a_limited_key_is_counted_once_across_workers(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Without Redis the supervisor keeps the counts: a 10 requests/minute key gets exactly 10
    through two workers that both answered some of its requests, not 10 each."""
    config = _config(tmp_path, fake_openai, metrics=True)
    key = create(config, "alice", "--rpm", "10")
    admin = create(config, "ops", "--admin")
    supervisor, log_path, url = _supervise(config, 2)
    try:
        await _every_worker(url, supervisor, log_path, lambda h: h["limits"] == "workers",
                            count=2)
        statuses: list[int] = []
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            for _ in range(24):  # new connections: the kernel spreads them over both
                async with session.post(
                    url + "/v1/chat/completions", json=body,
                    headers={"Connection": "close", "Authorization": f"Bearer {key}"},
                ) as resp:
                    answer = await resp.json()
                    statuses.append(resp.status)
                    if resp.status == 429:
                        assert answer["error"]["code"] == "rate_limit_exceeded"
                        assert "10 requests per minute" in answer["error"]["message"]
        assert statuses.count(200) == 10, statuses
        assert statuses.count(429) == 14, statuses
        # /metrics is whole whichever worker answers it: each says 10 answered, 14 refused
        # (with the process metrics of both workers, each with its own label).
        scrapes = await _metrics_of_each_worker(url, admin)
        assert len(scrapes) == 2, scrapes
        for samples in scrapes.values():
            assert requests_by_status(samples) == {"200": 10.0, "429": 14.0}, samples
            assert samples[("babelgate_metrics_workers", ())] == 2
            assert {dict(labels)["worker"] for name, labels in samples
                    if name == "process_resident_memory_bytes"} == {"0", "1"}
        # ...and both workers answered some (their own counts, asked on their sockets), so
        # neither counted alone.
        own = [requests_by_status(w) for w in _each_workers_own(scrapes)]
        assert len(own) == 2 and all(sum(by.values()) for by in own), own
        assert sum(by.get("200", 0) for by in own) == 10, own
    finally:
        await stop_process(supervisor)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _metrics_of_each_worker(url: str, admin: str) -> dict[int, Samples]:
    """Per worker pid, its answer to /metrics: /health and /metrics asked on one kept-alive
    connection (so of one worker), over new connections until both are seen."""
    seen: dict[int, Samples] = {}
    deadline = time.monotonic() + WAIT
    while len(seen) < 2:
        assert time.monotonic() < deadline, seen
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(url + "/health") as resp:
                pid = (await resp.json())["pid"]
            async with session.get(url + "/metrics",
                                   headers={"Authorization": f"Bearer {admin}"}) as resp:
                assert resp.status == 200, await resp.text()
                seen[pid] = _samples(await resp.text())
    return seen


def _samples(text: str) -> Samples:
    """Every sample of a Prometheus text, parsed by prometheus_client's own parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def requests_by_status(samples: Samples) -> dict[str, float]:
    found: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "babelgate_requests_total":
            status = dict(labels)["status"]
            found[status] = found.get(status, 0) + value
    return found


def _each_workers_own(scrapes: dict[int, Samples]) -> list[Samples]:
    """Each worker's own counts, read from its metrics socket in the supervisor's private
    directory (named on its command line), as the worker answering /metrics reads them."""
    own = []
    for pid in scrapes:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        directory = args[args.index(b"--metrics-dir") + 1].decode()
        worker = args[args.index(b"--worker") + 1].decode()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(os.path.join(directory, f"metrics-{worker}.sock"))
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
        samples: Samples = {}
        for _, _, _, _, listed in orjson.loads(raw)["metrics"]:
            for name, labels, value in listed:
                samples[(name, tuple(sorted(labels.items())))] = value
        own.append(samples)
    return own
