"""`babelgate serve --workers N`: N processes serving one port, and the supervisor that runs
them.

What this module promises:
- Each worker is a full `babelgate serve` process (the same command line, plus `--worker I`
  and `--supervisor-fd FD`) that binds the port with SO_REUSEPORT: the kernel spreads new
  connections over the workers' own accept queues, with no process in between on the request
  path.
- The port is checked free before any worker starts (a plain bind), so the workers never join
  an unrelated group of SO_REUSEPORT sockets that happens to hold it.
- SIGTERM or SIGINT to the supervisor stops every worker gracefully (each lets its open
  requests finish for `server.shutdown_timeout`), then the supervisor exits; a worker still
  running `kill_after` seconds later is killed. SIGHUP is forwarded to every worker: each
  reloads its configuration (server/reload.py). A worker that reloaded on POST /admin/reload
  writes `reload I` to the pipe FD, and the supervisor sends SIGHUP to the other workers, so
  one request reloads them all.
- A worker that exits within `settle` seconds of starting (the port, the configuration)
  stops them all with status 1; one that dies later is started again.
- A worker whose supervisor is gone stops by itself (server/run.py).
- Without `redis:` the supervisor keeps the keys' limit counts for all its workers
  (limits/hosted.py) on a unix socket it passes as `--limits-socket`, so a 10 requests/minute
  key gets 10 through N workers; with `redis:` the workers share Redis's counts instead.
- With `metrics: true`, GET /metrics answered by any worker holds every worker's counts:
  each worker listens on a socket of its own in the supervisor's private directory, and the
  one that answers asks the others (server/metrics_peers.py).
What workers do not share yet: each keeps its own in-memory state (reuse tables, routing
health); usage across workers is the business of the shared storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence

from babelgate.limits.hosted import CountServer

from .run import configure_logging, ignore_hangup

log = logging.getLogger("babelgate")

RESTART_DELAY = 1.0  # seconds before a worker that died is started again


def port_is_free(host: str, port: int) -> OSError | None:
    """None if host:port can be bound now, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


class Supervisor:
    """Starts `count` workers running `command` + ["--worker", I] and keeps them running until
    it is told to stop."""

    def __init__(self, command: Sequence[str], count: int, *, grace: float,
                 settle: float = 5.0, kill_after: float = 10.0) -> None:
        self.command = list(command)
        self.count = count
        self.grace = grace  # the workers' server.shutdown_timeout
        self.settle = settle
        self.kill_after = kill_after
        self.workers: dict[int, asyncio.subprocess.Process] = {}
        self._started: dict[int, float] = {}
        self._stop = asyncio.Event()
        # The workers' messages to us (one line each, written whole: shorter than PIPE_BUF).
        self._from_workers, self._to_us = os.pipe()
        self._heard = b""
        self.counts = CountServer()  # the limits of every worker (without Redis)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status for the supervisor."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.signal_all, signal.SIGHUP)
        loop.add_reader(self._from_workers, self._hear)
        await self.counts.start()
        for index in range(self.count):
            await self._start(index)
        log.info("babelgate supervisor: %d workers started (pids %s)", self.count,
                 ", ".join(str(p.pid) for p in self.workers.values()))
        try:
            return await self._watch()
        finally:
            loop.remove_reader(self._from_workers)
            await self._stop_all()
            await self.counts.stop()
            os.close(self._from_workers)
            os.close(self._to_us)

    def signal_all(self, signum: int, but: int | None = None) -> None:
        """Send `signum` to every running worker (except number `but`)."""
        for index, process in self.workers.items():
            if process.returncode is None and index != but:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def _hear(self) -> None:
        """A worker's lines: `reload I` (worker I reloaded on request: the others follow)."""
        self._heard += os.read(self._from_workers, 4096)
        *lines, self._heard = self._heard.split(b"\n")
        for line in lines:
            word, _, index = line.decode("ascii", "replace").partition(" ")
            if word == "reload" and index.isdigit():
                self.signal_all(signal.SIGHUP, but=int(index))

    async def _start(self, index: int) -> None:
        self.workers[index] = await asyncio.create_subprocess_exec(
            *self.command, "--worker", str(index), "--supervisor-fd", str(self._to_us),
            "--limits-socket", self.counts.path,
            # The same private directory: each worker's metrics socket (metrics_peers.py).
            "--metrics-dir", os.path.dirname(self.counts.path), pass_fds=(self._to_us,))
        self._started[index] = time.monotonic()

    async def _watch(self) -> int:
        stopping = asyncio.ensure_future(self._stop.wait())
        exits = {asyncio.ensure_future(p.wait()): i for i, p in self.workers.items()}
        try:
            while True:
                done, _ = await asyncio.wait({stopping, *exits},
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    return 0
                for finished in done:
                    index = exits.pop(finished)
                    code = finished.result()
                    if time.monotonic() - self._started[index] < self.settle:
                        log.error("babelgate worker %d exited with status %d while starting; "
                                  "stopping", index, code)
                        return 1
                    log.warning("babelgate worker %d exited with status %d; starting it again",
                                index, code)
                    await asyncio.sleep(RESTART_DELAY)
                    if self._stop.is_set():
                        return 0
                    await self._start(index)
                    exits[asyncio.ensure_future(self.workers[index].wait())] = index
        finally:
            stopping.cancel()
            for waiting in exits:
                waiting.cancel()

    async def _stop_all(self) -> None:
        self.signal_all(signal.SIGTERM)
        alive = [p for p in self.workers.values() if p.returncode is None]
        if not alive:
            return
        waits = [asyncio.ensure_future(p.wait()) for p in alive]
        _, pending = await asyncio.wait(waits, timeout=self.grace + self.kill_after)
        for waiting in pending:
            waiting.cancel()
        for process in alive:
            if process.returncode is None:
                log.error("babelgate worker pid %d did not stop: killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("babelgate supervisor: all workers stopped")


def supervise(command: Sequence[str], count: int, host: str, port: int, grace: float) -> int:
    """Run `count` workers of `command` on host:port until SIGTERM/SIGINT; the exit status."""
    configure_logging()
    ignore_hangup()  # the loop's handler forwards it once the supervisor runs
    if not hasattr(socket, "SO_REUSEPORT"):
        log.error("--workers needs SO_REUSEPORT, which this system does not have")
        return 1
    problem = port_is_free(host, port)
    if problem is not None:
        log.error("babelgate cannot listen on %s:%d: %s", host, port,
                  problem.strerror or problem)
        return 1
    return asyncio.run(Supervisor(command, count, grace=grace).run())
