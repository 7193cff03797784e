"""Time as routing sees it, injected so that tests move it instead of sleeping.

`Clock` is what routing needs of time: wall time (`now`, Unix seconds: quota windows, which
follow the calendar and survive restarts), a monotonic reading (`monotonic`: cooldowns and
backoff, immune to the wall clock being set) and `sleep` (a backoff before a retry).
`SystemClock` is the real one; `ManualClock` stands still until a test advances it, and its
`sleep` advances it instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, Unix seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The process's clocks."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock for tests: both readings move only by `advance` (or `sleep`, which advances by
    the time asked for, records it in `slept`, and yields to the event loop once)."""

    def __init__(self, now: float = 1_800_000_000.0, monotonic: float = 1000.0) -> None:
        self._now = now
        self._monotonic = monotonic
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
