"""GET /metrics whole under `serve --workers N`: the worker that answers adds its siblings'
counts to its own.

Why this way: the kernel hands a scrape to one worker (SO_REUSEPORT), so each worker's own
registry is 1/N of the truth. prometheus-client's multiprocess mode would make every counter
a write to a memory-mapped file under a lock on the request path, needs its directory set
before the library is imported, and has no callback gauges (the open streams) or process
metrics. Here nothing changes on the request path: each worker keeps counting in memory as
a single process does (metrics.py), and only a scrape pays, by asking the others.

What this module promises:
- `MetricsPeers(directory, worker)` listens on `directory/metrics-WORKER.sock` (the
  supervisor's private directory, mode 0700). Whoever connects gets this worker's metrics,
  folded now, as one JSON document, and the connection closes; nothing is read from it.
- `gather()` asks every other worker's socket in the directory, at once, each within
  `timeout` seconds: a worker that is restarting or stuck is left out of this scrape (and
  `babelgate_metrics_workers` says how many were counted), never a hang or an error.
- `merge(own, others)`: counters and histograms are summed across workers, series by
  series; the open-streams gauge is summed; the budget left per key is the least any worker
  holds (a key's spend is shared, so the lowest is the latest); `*_created` is the earliest.
  Process metrics (memory, CPU, open files) are each worker's own, with a `worker` label:
  summing them would make a number of no process.
- A worker restarted by the supervisor starts from zero, so a sum can go down once:
  Prometheus's rate() reads that as a counter reset, as after any restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger("babelgate")

MAX_DUMP = 64 * 2**20  # a worker's metrics: far below this even at max_series
PROCESS = "process_"  # ProcessCollector's families: per worker, never summed
LEAST = frozenset({"babelgate_budget_remaining_usd"})

# One worker's metrics as sent: [[name, type, help, unit, [[sample, labels, value], ...]]].
Dump = list[list[Any]]


def dump(registry: CollectorRegistry) -> Dump:
    return [[m.name, m.type, m.documentation, m.unit,
             [[s.name, s.labels, s.value] for s in m.samples]]
            for m in registry.collect()]


class MetricsPeers:
    def __init__(self, directory: str, worker: int, *, timeout: float = 2.0) -> None:
        self.directory = directory
        self.worker = worker
        self.timeout = timeout
        self.path = os.path.join(directory, f"metrics-{worker}.sock")
        self._server: asyncio.AbstractServer | None = None
        self._own: Callable[[], Dump] = list

    async def start(self, own: Callable[[], Dump]) -> None:
        self._own = own
        with contextlib.suppress(FileNotFoundError):  # a previous run of this worker's
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._answer, self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _answer(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(orjson.dumps({"worker": self.worker, "metrics": self._own()}))
            await writer.drain()
        except OSError:  # the asking worker went away
            pass
        finally:
            writer.close()

    async def gather(self) -> list[tuple[int, Dump]]:
        """The other workers' metrics, each that answered in time."""
        paths = [p for p in glob.glob(os.path.join(self.directory, "metrics-*.sock"))
                 if p != self.path]
        answers = await asyncio.gather(*(self._ask(p) for p in paths))
        return [answer for answer in answers if answer is not None]

    async def _ask(self, path: str) -> tuple[int, Dump] | None:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(path)
                chunks: list[bytes] = []
                size = 0
                try:
                    while chunk := await reader.read(2**20):  # until the worker closes
                        size += len(chunk)
                        if size > MAX_DUMP:
                            raise ValueError("too large")
                        chunks.append(chunk)
                finally:
                    writer.close()
            answer = orjson.loads(b"".join(chunks))
            return int(answer["worker"]), answer["metrics"]
        except (OSError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            # A worker restarting (its socket not there yet, or gone): left out this once.
            log.info("metrics of %s left out of this scrape: %s", os.path.basename(path),
                     type(exc).__name__)
            return None


class _Merged(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge(own: tuple[int, Dump], others: list[tuple[int, Dump]]) -> bytes:
    """The Prometheus text of every worker's metrics together (see the module's rules)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for worker, metrics in [own, *others]:
        for name, kind, documentation, unit, samples in metrics:
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, documentation, kind, unit)
                values[name] = {}
            into = values[name]
            for sample, labels, value in samples:
                if value is None:  # not a number (orjson writes NaN and inf as null)
                    continue
                named = {**labels, "worker": str(worker)} if name.startswith(PROCESS) else labels
                key = (sample, tuple(sorted(named.items())))
                held = into.get(key)
                if held is None:
                    into[key] = value
                elif name in LEAST or sample.endswith("_created"):
                    into[key] = min(held, value)
                else:
                    into[key] = held + value
    for name, family in families.items():
        for (sample, labels), value in values[name].items():
            family.add_sample(sample, dict(labels), value)
    counted = Metric("babelgate_metrics_workers",
                     "Workers whose counts this answer of /metrics adds up", "gauge")
    counted.add_sample("babelgate_metrics_workers", {}, float(1 + len(others)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([*families.values(), counted]))
    return generate_latest(registry)
