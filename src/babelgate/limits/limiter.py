"""The limiter the server talks to: shared counts when configured and reachable, else this
process.

What this module promises:
- `admit(key, estimate)` gives a `Permit` or a `Refusal`; a key without limits costs one
  check and gets a permit that `finish` ignores. `finish(permit)` is synchronous: the local
  counts change at once and a shared update is sent in the background, so it can run in a
  `finally` of a request that was cancelled (the client left) without awaiting anything.
  A permit is finished once, however often `finish` is called. Shared updates go in
  batches: one task sends every permit finished since the last batch left
  (`finish_many`: with Redis one script for all), so under load requests share the
  settlement's round trip instead of one task and one script each.
- The counts are shared (a `SharedLimits`) with `redis:` (redis_store.py: every admission is
  one atomic script in Redis), or, under `serve --workers N` without Redis, by the
  supervisor (hosted.py: the same two calls over a unix socket). When the shared store does
  not answer (connection refused, a timeout of `timeout` seconds), the limiter logs one
  WARNING, serves on this process's counts (memory.py), and tries again every `retry_every`
  seconds in the background; `status` says which ("ok", "unreachable, local limits") for
  /health. Permits admitted by one store are finished by the same one.
- Budget spend is seeded from the usage table at start (`seed`), in both stores.
- `on_spent(key, spent)`, when given, hears a budgeted key's spend in its period after each
  settlement that added to it (local counts at once, the shared total once the script ran):
  the server's budget-remaining gauge. It must not raise or block.
- Time comes from `clock` (unix seconds), so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .hosted import HostedLimits
from .memory import MemoryLimits
from .periods import Period
from .permit import Limited, Permit, Refusal, has_limits
from .redis_store import RedisLimits
from .resp import RespClient, RespError

log = logging.getLogger("babelgate")

# What a shared store that is away raises: OSError (refused, reset, TimeoutError) and an
# error reply (a Redis still loading, a read-only replica after a failover).
SHARED_DOWN = (OSError, RespError)
REDIS_DOWN = SHARED_DOWN  # the name the tests and older code know

UNREACHABLE = "unreachable, local limits"


class SharedLimits(Protocol):
    """Counts kept outside this process: Redis (redis_store.py) or the supervisor of
    `serve --workers` (hosted.py)."""

    where: str  # for the log: which store, without credentials

    async def ping(self) -> None: ...
    async def close(self) -> None: ...
    async def seed(self, key_id: str, start: float, spent: float) -> None: ...
    async def spent(self, key: Limited, now: float) -> float: ...
    async def admit(self, key: Limited, estimate: int, now: float) -> Permit | Refusal: ...
    async def finish(self, permit: Permit, now: float) -> float | None: ...
    async def finish_many(self, permits: list[tuple[Permit, float]]
                          ) -> list[float | BaseException | None]: ...


class Limiter:
    def __init__(
        self, redis_url: str | None = None, *, prefix: str = "babelgate:",
        clock: Callable[[], float] = time.time, timeout: float = 0.5,
        retry_every: float = 1.0, lease: float = 3600.0,
        on_spent: Callable[[Limited, float], None] | None = None,
        workers_socket: str | None = None,
    ) -> None:
        """`workers_socket`: the supervisor's counts under `serve --workers N`, used when there
        is no `redis_url`."""
        self.clock = clock
        self.on_spent = on_spent
        self.memory = MemoryLimits()
        self.retry_every = retry_every
        self.redis_url = redis_url
        self.shared: SharedLimits | None = None
        if redis_url is not None:
            self.shared = RedisLimits(RespClient(redis_url, timeout=timeout), prefix=prefix,
                                      lease=lease)
        elif workers_socket is not None:
            self.shared = HostedLimits(RespClient(f"unix://{workers_socket}", timeout=timeout))
        self.reachable = self.shared is not None
        self._retrying: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # background finishes
        self._settling: list[tuple[Permit, float]] = []  # finished, for the next batch
        self._settler: asyncio.Task[None] | None = None  # sending batches while there are

    @property
    def status(self) -> str | None:
        """For /health: None without Redis."""
        if self.redis_url is None:
            return None
        return "ok" if self.reachable else UNREACHABLE

    @property
    def counted(self) -> str:
        """For /health: where the counts are now: "redis", "workers" (the supervisor's) or
        "process" (this one's: none shared, or the shared store is away)."""
        if self.shared is None or not self.reachable:
            return "process"
        return "redis" if self.redis_url is not None else "workers"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.shared is not None:
            try:
                await self.shared.ping()
            except SHARED_DOWN as exc:
                self._lost(exc)
            else:
                log.info("limits shared through %s", self.shared.where)

    async def stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.shared is not None:
            await self.shared.close()

    async def seed(self, key_id: str, period: Period, spent: float) -> None:
        """What `key_id` spent in its current `period`, read from the usage table."""
        start, _ = self.memory.periods.current(period, self.clock())
        self.memory.seed(key_id, start, spent)
        if self.shared is not None and self.reachable:
            try:
                await self.shared.seed(key_id, start, spent)
            except SHARED_DOWN as exc:
                self._lost(exc)

    async def spent(self, key: Limited) -> float:
        now = self.clock()
        if self.shared is not None and self.reachable:
            with contextlib.suppress(*SHARED_DOWN):
                return await self.shared.spent(key, now)
        return self.memory.spent(key, now)

    # ------------------------------------------------------------------ the request path
    async def admit(self, key: Limited, estimate: int = 0) -> Permit | Refusal:
        if not has_limits(key):
            return Permit(key, local=True)
        now = self.clock()
        if self.shared is not None and self.reachable:
            try:
                return await self.shared.admit(key, estimate, now)
            except SHARED_DOWN as exc:
                self._lost(exc)
        return self.memory.admit(key, estimate, now)

    def admit_here(self, key: Limited, estimate: int = 0) -> Permit | Refusal | None:
        """`admit` for a key with limits (`has_limits`, which the caller checked), without
        awaiting while this process counts alone (no shared store, or it is away); None when
        the shared store must be asked (await `admit`). The request path then makes no
        coroutine for the limits."""
        if self.shared is not None and self.reachable:
            return None
        return self.memory.admit(key, estimate, self.clock())

    def finish(self, permit: Permit) -> None:
        if permit.finished:
            return
        permit.finished = True
        key = permit.key
        if not (key.rpm or key.tpm or key.concurrency or key.budget is not None):
            return  # has_limits, inline: this runs on every request with a key
        now = self.clock()
        if permit.local or self.shared is None:
            spent = self.memory.finish(permit, now)
            if spent is not None and self.on_spent is not None:
                self.on_spent(key, spent)
            return
        self._settling.append((permit, now))
        if self._settler is None:
            task = self._settler = asyncio.get_running_loop().create_task(self._settle())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _settle(self) -> None:
        """Sends the permits finished meanwhile, batch after batch, until none wait."""
        assert self.shared is not None
        try:
            while self._settling:
                batch, self._settling = self._settling, []
                results: list[float | BaseException | None]
                try:
                    results = await self.shared.finish_many(batch)
                except SHARED_DOWN as exc:
                    results = [exc] * len(batch)
                for (permit, now), spent in zip(batch, results, strict=True):
                    self._settled(permit, now, spent)
        finally:
            self._settler = None

    def _settled(self, permit: Permit, now: float, spent: float | BaseException | None
                 ) -> None:
        if isinstance(spent, BaseException):
            # Its window and slot expire in Redis by themselves (the slot's lease; the
            # supervisor frees a worker's slots when its connection goes); the spend
            # would be lost, so it goes to the local counts (and nothing else: the local
            # counts never held this permit's request, tokens or slot).
            self._lost(spent)
            self.memory.add_spend(permit.key, permit.cost, now)
            spent = self.memory.spent(permit.key, now) if permit.cost else None
        if spent is not None and self.on_spent is not None and permit.key.budget is not None:
            self.on_spent(permit.key, spent)

    # ------------------------------------------------------------------ Redis for others
    def redis_client(self) -> RespClient | None:
        """The client of `redis:` while Redis is reachable, for other state shared between
        instances (server/shared_routing.py): one connection, one reachability for all. Under
        `serve --workers` without Redis, the supervisor's, which answers the commands that
        state needs as Redis would (hosted.py)."""
        shared = self.shared
        if not self.reachable or not isinstance(shared, RedisLimits | HostedLimits):
            return None
        return shared.client

    def lost(self, exc: BaseException) -> None:
        """Another user of `redis_client` found Redis away: the limits count locally (and
        log it once) until the background retry finds it back."""
        self._lost(exc)

    # ------------------------------------------------------------------ shared store away
    def _lost(self, exc: BaseException) -> None:
        if not self.reachable or self.shared is None:
            return
        self.reachable = False
        log.warning("%s is unreachable (%s): limits are counted by this process alone until "
                    "it is back", self.shared.where, type(exc).__name__)
        self._retrying = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self.shared is not None
        while True:
            await asyncio.sleep(self.retry_every)
            try:
                await self.shared.ping()
            except SHARED_DOWN:
                continue
            self.reachable = True
            self._retrying = None
            log.info("%s is back: limits are shared again", self.shared.where)
            return
