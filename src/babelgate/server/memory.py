"""Giving freed memory back to the system, and collecting what reference counting cannot.

A burst of large requests (Claude Code sends 50 KB and more each) leaves glibc's heap at its
high-water mark after the requests are gone: right after 1,000 streams were opened at once,
the gateway held 245 MB, of which only 92 MB was live. `malloc_trim` hands the rest back: it
takes about 4 ms when there is a hundred megabytes to return and about 10 microseconds when
there is nothing, so it runs every 250 ms, off the request path (docs/benchmark.md). Serving
large buffers from mmap instead (a lower M_MMAP_THRESHOLD) also returns memory but cost a
fifth of the throughput. Only on glibc; elsewhere nothing runs.

The garbage collector's thresholds are set high for the request path (App.start): it then
counts allocations so slowly that garbage in reference cycles (a connection and its parser,
an exception and its frames) could wait hours for it, holding whatever bodies the cycle
reaches: 600 aborted uploads once held 180 MB. The server's own cycles are broken where they
form (server/http.py); `Collector` runs a full collection every few seconds besides, off the
request path, so that a cycle formed anywhere is freed in seconds. With the start-up objects
frozen out of its scans and a full 40 MB reuse table, one took ~3 ms.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

TRIM_INTERVAL = 0.25  # seconds


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class HeapTrimmer:
    """Calls malloc_trim every TRIM_INTERVAL seconds while the loop runs."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._trim is not None:
            self._schedule()

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(TRIM_INTERVAL, self._run)

    def _run(self) -> None:
        if self._trim is not None:
            self._trim(0)
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Collector:
    """Runs a full garbage collection every `interval` seconds while the loop runs."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._run)

    def _run(self) -> None:
        gc.collect()
        self.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
