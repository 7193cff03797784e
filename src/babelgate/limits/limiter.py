"""The limiter the server talks to: Redis when configured and reachable, else this process.

What this module promises:
- `admit(key, estimate)` gives a `Permit` or a `Refusal`; a key without limits costs one
  check and gets a permit that `finish` ignores. `finish(permit)` is synchronous: the local
  counts change at once and a Redis update is sent in the background, so it can run in a
  `finally` of a request that was cancelled (the client left) without awaiting anything.
  A permit is finished once, however often `finish` is called.
- With `redis:` every admission is one atomic script in Redis (redis_store.py). When Redis
  does not answer (connection refused, a timeout of `timeout` seconds), the limiter logs one
  WARNING, serves on this process's counts (memory.py), and tries Redis again every
  `retry_every` seconds in the background; `status` says which ("ok",
  "unreachable, local limits") for /health. Permits admitted by one store are finished by
  the same one.
- Budget spend is seeded from the usage table at start (`seed`), in both stores.
- `on_spent(key, spent)`, when given, hears a budgeted key's spend in its period after each
  settlement that added to it (local counts at once, Redis's total once the script ran): the
  server's budget-remaining gauge. It must not raise or block.
- Time comes from `clock` (unix seconds), so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .memory import MemoryLimits
from .periods import Period
from .permit import Limited, Permit, Refusal, has_limits
from .redis_store import RedisLimits

log = logging.getLogger("babelgate")

# What a Redis that is away raises: redis-py's own errors, and OSError from the socket.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

UNREACHABLE = "unreachable, local limits"


class Limiter:
    def __init__(
        self, redis_url: str | None = None, *, prefix: str = "babelgate:",
        clock: Callable[[], float] = time.time, timeout: float = 0.5,
        retry_every: float = 1.0, lease: float = 3600.0,
        on_spent: Callable[[Limited, float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.on_spent = on_spent
        self.memory = MemoryLimits()
        self.redis_url = redis_url
        self.retry_every = retry_every
        self.redis: RedisLimits | None = None
        if redis_url is not None:
            client = Redis.from_url(redis_url, socket_timeout=timeout,
                                    socket_connect_timeout=timeout)
            self.redis = RedisLimits(client, prefix=prefix, lease=lease)
        self.reachable = self.redis is not None
        self._retrying: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # background finishes

    @property
    def status(self) -> str | None:
        """For /health: None without Redis."""
        if self.redis is None:
            return None
        return "ok" if self.reachable else UNREACHABLE

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.client.ping()
            except REDIS_DOWN as exc:
                self._lost(exc)
            else:
                log.info("limits shared through Redis at %s", self._where())

    async def stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.redis is not None:
            await self.redis.client.aclose()

    async def seed(self, key_id: str, period: Period, spent: float) -> None:
        """What `key_id` spent in its current `period`, read from the usage table."""
        start, _ = self.memory.periods.current(period, self.clock())
        self.memory.seed(key_id, start, spent)
        if self.redis is not None and self.reachable:
            try:
                await self.redis.seed(key_id, start, spent)
            except REDIS_DOWN as exc:
                self._lost(exc)

    async def spent(self, key: Limited) -> float:
        now = self.clock()
        if self.redis is not None and self.reachable:
            with contextlib.suppress(*REDIS_DOWN):
                return await self.redis.spent(key, now)
        return self.memory.spent(key, now)

    # ------------------------------------------------------------------ the request path
    async def admit(self, key: Limited, estimate: int = 0) -> Permit | Refusal:
        if not has_limits(key):
            return Permit(key, local=True)
        now = self.clock()
        if self.redis is not None and self.reachable:
            try:
                return await self.redis.admit(key, estimate, now)
            except REDIS_DOWN as exc:
                self._lost(exc)
        return self.memory.admit(key, estimate, now)

    def finish(self, permit: Permit) -> None:
        if permit.finished:
            return
        permit.finished = True
        if not has_limits(permit.key):
            return
        now = self.clock()
        if permit.local or self.redis is None:
            self.memory.finish(permit, now)
            if permit.cost and self.on_spent is not None and permit.key.budget is not None:
                self.on_spent(permit.key, self.memory.spent(permit.key, now))
            return
        task = asyncio.get_running_loop().create_task(self._finish_remote(permit, now))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish_remote(self, permit: Permit, now: float) -> None:
        assert self.redis is not None
        try:
            spent = await self.redis.finish(permit, now)
        except REDIS_DOWN as exc:
            # Its window and slot expire in Redis by themselves (the slot's lease); the spend
            # would be lost, so it goes to the local counts (and nothing else: the local
            # counts never held this permit's request, tokens or slot).
            self._lost(exc)
            self.memory.add_spend(permit.key, permit.cost, now)
            spent = self.memory.spent(permit.key, now) if permit.cost else None
        if spent is not None and self.on_spent is not None and permit.key.budget is not None:
            self.on_spent(permit.key, spent)

    # ------------------------------------------------------------------ Redis away
    def _where(self) -> str:
        # The URL without a password, if it had one.
        url = self.redis_url or ""
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"

    def _lost(self, exc: BaseException) -> None:
        if not self.reachable:
            return
        self.reachable = False
        log.warning("Redis at %s is unreachable (%s): limits are counted by this process "
                    "alone until it is back", self._where(), type(exc).__name__)
        self._retrying = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self.redis is not None
        while True:
            await asyncio.sleep(self.retry_every)
            try:
                await self.redis.client.ping()
            except REDIS_DOWN:
                continue
            self.reachable = True
            self._retrying = None
            log.info("Redis at %s is back: limits are shared again", self._where())
            return
