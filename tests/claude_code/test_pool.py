"""The process pool with real processes (`cat` stands in for the CLI: it runs until its
stdin closes, as `claude -p --input-format stream-json` does)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from babelgate.canonical import GatewayError
from babelgate.claude_code.pool import ProcessPool, Spawn
from babelgate.claude_code.process import CliProcess

CAT = shutil.which("cat") or "/bin/cat"


def spawn(tmp_path: Path, key: str | None, model: str = "m") -> Spawn:
    return partial(CliProcess.start, [CAT], dict(os.environ), str(tmp_path), key, model, "cat")


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_a_full_pool_answers_429_after_queue_timeout(tmp_path: Path) -> None:
    pool = ProcessPool("cc", max_processes=1, idle_timeout=60, queue_timeout=0.2)
    busy = await pool.acquire("s1", "m", spawn(tmp_path, "s1"))
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await pool.acquire("s2", "m", spawn(tmp_path, "s2"))
    assert caught.value.status == 429 and "max_processes" in caught.value.message
    assert time.monotonic() - started >= 0.2
    # Once the first turn is over, its idle process gives its place up.
    pool.release(busy, keep=True)
    other = await pool.acquire("s2", "m", spawn(tmp_path, "s2"))
    await until(lambda: pool.reaped == 1)
    assert not busy.alive and pool.stats()["active"] == 1
    await pool.close()
    assert not other.alive and pool.stats()["active"] == 0 and pool.reaped == 2


async def test_a_sessions_process_is_kept_then_stopped_when_idle(tmp_path: Path) -> None:
    pool = ProcessPool("cc", max_processes=2, idle_timeout=0.3, queue_timeout=0)
    first = await pool.acquire("s1", "m", spawn(tmp_path, "s1"))
    pool.release(first, keep=True)
    again = await pool.acquire("s1", "m", spawn(tmp_path, "s1"))
    assert again is first  # the session's next turn: the same process
    pool.release(again, keep=True)
    await until(lambda: pool.reaped == 1)
    assert pool.stats() == {"active": 0, "busy": 0, "idle": 0, "reaped": 1, "max": 2}


async def test_a_retired_pool_lets_busy_turns_finish(tmp_path: Path) -> None:
    pool = ProcessPool("cc", max_processes=2, idle_timeout=60, queue_timeout=0)
    idle = await pool.acquire("s1", "m", spawn(tmp_path, "s1"))
    pool.release(idle, keep=True)
    busy = await pool.acquire("s2", "m", spawn(tmp_path, "s2"))
    pool.retire()  # a reload replaced the provider
    await until(lambda: not idle.alive)
    assert busy.alive
    pool.release(busy, keep=True)  # its turn ended: not kept by a retired pool
    await until(lambda: pool.reaped == 2)
    assert pool.stats()["active"] == 0


async def test_a_client_that_leaves_gets_its_process_killed(tmp_path: Path) -> None:
    pool = ProcessPool("cc", max_processes=1, idle_timeout=60, queue_timeout=0)
    process = await pool.acquire("s1", "m", spawn(tmp_path, "s1"))
    pool.release(process, keep=False)
    await until(lambda: pool.reaped == 1)
    assert process.process.returncode == -9


async def test_a_request_waits_for_a_busy_process_to_end_then_gets_its_place(
        tmp_path: Path) -> None:
    pool = ProcessPool("cc", max_processes=1, idle_timeout=60, queue_timeout=5)
    busy = await pool.acquire(None, "m", spawn(tmp_path, None))
    waiting = asyncio.create_task(pool.acquire("s2", "m", spawn(tmp_path, "s2")))
    await asyncio.sleep(0.3)
    assert not waiting.done() and pool.stats()["active"] == 1  # it waits, no second process
    pool.release(busy, keep=True)  # the one-off's turn is over: its process ends
    served = await asyncio.wait_for(waiting, 5)
    assert served.alive and not busy.alive and pool.reaped == 1
    await pool.close()
