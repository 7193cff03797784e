"""The processes of one claude-code provider: at most `max_processes` at once.

- A request takes a process for its turn (`acquire`) and gives it back (`release`). A
  session's process stays after its turn, idle, for the session's next turn; it is stopped
  after `idle_timeout` seconds unused, or earlier when a request needs its slot (the least
  recently used idle one goes first). The session then resumes with `--resume`.
- When every slot holds a busy process a request waits up to `queue_timeout` seconds for
  one, then gets a 429 (`rate_limit`, in the client's protocol).
- Every process started is watched until it exits: its exit is reaped (no zombie) and
  counted (`reaped`), and its slot freed, whatever ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from babelgate.canonical import GatewayError

from .process import CliProcess

Spawn = Callable[[], Awaitable[CliProcess]]


class ProcessPool:
    def __init__(self, name: str, max_processes: int, idle_timeout: float,
                 queue_timeout: float) -> None:
        self.name = name
        self.max_processes = max_processes
        self.idle_timeout = idle_timeout
        self.queue_timeout = queue_timeout
        self.live: set[CliProcess] = set()
        self.idle: dict[str, CliProcess] = {}  # session -> its idle process
        self.reaped = 0
        self._starting = 0  # slots taken by processes being started
        self._freed = asyncio.Event()
        self._timers: dict[CliProcess, asyncio.TimerHandle] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def busy(self) -> int:
        return len(self.live) - len(self.idle)

    async def acquire(self, key: str | None, model: str, spawn: Spawn) -> CliProcess:
        """A process for one turn: the session's idle one (for the same model), else a new
        one from `spawn` once a slot is free."""
        if key is not None:
            process = self.idle.pop(key, None)
            if process is not None:
                self._untime(process)
                if process.alive and process.model == model:
                    process.last_used = time.monotonic()
                    return process
                await process.stop()
        deadline = time.monotonic() + self.queue_timeout
        while len(self.live) + self._starting >= self.max_processes:
            if self.idle:
                await self._evict_one()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._full()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), left)
        self._starting += 1
        try:
            process = await spawn()
        finally:
            self._starting -= 1
        self.live.add(process)
        watcher = asyncio.create_task(self._watch(process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return process

    def release(self, process: CliProcess, keep: bool) -> None:
        """The turn is over: keep the process for its session's next turn, or end it now."""
        process.last_used = time.monotonic()
        if keep and process.key is not None and process.alive and not self._closed:
            self.idle[process.key] = process
            loop = asyncio.get_running_loop()
            self._timers[process] = loop.call_later(self.idle_timeout, self._expire, process)
            self._freed.set()  # an idle process can be evicted for a waiting request
            return
        if keep and process.alive:  # a one-off's turn is done: let it finish and exit
            task = asyncio.create_task(process.stop())
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
            return
        process.kill()

    def drop(self, key: str) -> None:
        """Stop the idle process of a session that is going away."""
        process = self.idle.pop(key, None)
        if process is not None:
            self._untime(process)
            process.kill()

    def _expire(self, process: CliProcess) -> None:
        self._timers.pop(process, None)
        if process.key is not None and self.idle.get(process.key) is process:
            del self.idle[process.key]
            task = asyncio.create_task(process.stop())
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def _evict_one(self) -> None:
        key = min(self.idle, key=lambda k: self.idle[k].last_used)
        process = self.idle.pop(key)
        self._untime(process)
        await process.stop()
        self.live.discard(process)  # its watcher may not have run yet

    def _untime(self, process: CliProcess) -> None:
        timer = self._timers.pop(process, None)
        if timer is not None:
            timer.cancel()

    async def _watch(self, process: CliProcess) -> None:
        try:
            await process.exited()
        finally:
            self.reaped += 1
            self.live.discard(process)
            if process.key is not None and self.idle.get(process.key) is process:
                del self.idle[process.key]
            self._untime(process)
            self._freed.set()

    def _full(self) -> GatewayError:
        return GatewayError(
            "rate_limit", f"all {self.max_processes} Claude Code processes of provider "
            f"{self.name} are busy (its `max_processes`); try again shortly",
            retry_after=max(1.0, self.queue_timeout), upstream=self.name)

    async def close(self) -> None:
        """Stop every process and wait until each has exited."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.idle.clear()
        processes = list(self.live)
        await asyncio.gather(*(p.stop(grace=2.0) for p in processes), return_exceptions=True)
        if self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)

    def retire(self) -> None:
        """A reload replaced the provider: idle processes end now, busy ones when their
        turn is over (a request in flight finishes on the configuration it began with)."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for process in list(self.idle.values()):
            process.kill()
        self.idle.clear()

    def stats(self) -> dict[str, int]:
        return {"active": len(self.live), "busy": self.busy, "idle": len(self.idle),
                "reaped": self.reaped, "max": self.max_processes}
