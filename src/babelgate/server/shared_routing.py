"""What routing learnt, shared by every process and instance of one deployment.

A used-up quota or a resting target found by one process must be obeyed by the others
(`serve --workers N`, several instances on one database) within a second or two, without
putting any work on the request path. What this module promises:
- The database stays the one record of quota marks (storage/quota_marks.py): every process
  writes its marks there, and reads them all back every `interval` seconds, in the
  background, replacing what it holds (`QuotaBook.replace_all`). A read issued before a
  local change that it cannot have seen is dropped (the next one applies), so a mark made
  here is never undone by a stale read.
- With `redis:` (the limits' client and its reachability, limits/limiter.py: one
  connection, one handling of its loss), each process also
  * bumps a version number in Redis once its mark or reset is in the database, and reads
    the database again only when that number moved (one GET per interval, not a query);
  * shares rests (cooldowns): a target that starts resting here is written to a Redis hash
    with its end time; every interval each process reads that hash, rests the targets it
    names until then (routing/health.py `rest_until`), and wakes those whose rest is gone
    from it (another process's probe succeeded, or a reset);
  * shares the rests of keys of `api_keys` (a refused key) the same way, in a second hash
    whose fields name the provider and the key's id (never its value): after one process
    saw a key refused, the others do not send it again while it rests.
  When Redis does not answer, the limiter says so once (it logs and retries); meanwhile the
  database is read every interval, as without Redis, and rests are this process's own.
- Under `serve --workers N` without `redis:`, the supervisor stands in for Redis (the
  limiter's client is then its socket, limits/hosted.py): the workers share the version and
  the rests the same way. Separate instances without Redis keep their rests to themselves.
- Names in Redis are `babelgate:routing:<deployment>:...`, the deployment being a hash of the
  storage URL: processes on one database share, other gateways on the same Redis (or tests
  side by side) do not.
- Nothing here runs on a request: `save`/`delete`/`rested`/`woke` only issue work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

import orjson

from babelgate.limits import Limiter
from babelgate.limits.limiter import SHARED_DOWN
from babelgate.limits.resp import Reply, RespClient
from babelgate.routing import RoutingState, Target
from babelgate.routing.quota import QuotaMark
from babelgate.storage.quota_marks import QuotaStore

from .periodic import Periodic

log = logging.getLogger("babelgate")

_RESTS_TTL = 86400  # the rests hash outlives any rest; a hash nobody writes goes by itself


class SharedRouting:
    """The RoutingState's quota sink and listener of rests (targets' and keys'), and the
    task that reads what the other processes learnt."""

    def __init__(self, state: RoutingState, store: QuotaStore, limiter: Limiter,
                 deployment: str, *, interval: float = 0.5) -> None:
        self.state = state
        self.store = store
        self.limiter = limiter
        self.interval = interval
        name = hashlib.sha256(deployment.encode()).hexdigest()[:16]
        self._version_key = f"babelgate:routing:{name}:quota-version"
        self._rests_key = f"babelgate:routing:{name}:rests"
        self._key_rests_key = f"babelgate:routing:{name}:key-rests"
        self._version: bytes | None = None  # the quota version last read from Redis
        # The database away: said once (not twice a second), and again once it is back.
        self._reader = Periodic(self.refresh, interval, errors=store.db.errors,
                                failed=self._read_failed, recovered=self._read_again)
        self._pending: set[asyncio.Task[None]] = set()  # Redis writes under way
        state.quota.sink = self
        state.cooldowns.listener = self
        state.key_rests.listener = self

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.store.flush()

    # ------------------------------------------------------------------ local changes
    def save(self, provider: str, key: str, since: float, resets_at: float,
             reason: str) -> None:
        self._bump_after(self.store.save(provider, key, since, resets_at, reason))

    def delete(self, provider: str | None, key: str | None = None) -> None:
        self._bump_after(self.store.delete(provider, key))

    def rested(self, target: Target, since: float, until: float, failures: int,
               reason: str) -> None:
        """`target` rests here until `until` (wall time): the other processes rest it too."""
        value = orjson.dumps({"since": since, "until": until, "failures": failures,
                              "reason": reason})
        self._redis_task(self._write_rest(self._rests_key, _field(target), value))

    def woke(self, target: Target) -> None:
        """`target` rests no more here (its probe answered, a reset)."""
        self._redis_task(self._forget_rest(self._rests_key, _field(target)))

    def key_rested(self, provider: str, key: str, since: float, until: float,
                   reason: str) -> None:
        """Key `key` (an id) of `provider` rests here until `until` (wall time): the other
        processes do not send it either."""
        value = orjson.dumps({"since": since, "until": until, "reason": reason})
        self._redis_task(self._write_rest(self._key_rests_key, _key_field(provider, key),
                                          value))

    def key_woke(self, provider: str, key: str) -> None:
        """The key's rest ended early here (a reset)."""
        self._redis_task(self._forget_rest(self._key_rests_key, _key_field(provider, key)))

    # ------------------------------------------------------------------ reading
    async def refresh(self) -> None:
        """Read what the other processes learnt, once."""
        client = self._client()
        if client is not None:
            try:
                await self._refresh_shared(client)
                return
            except SHARED_DOWN as exc:  # away, or an error reply: as the limits take it
                self.limiter.lost(exc)
        await self._reload_marks()

    def _read_failed(self, exc: BaseException, first: bool) -> None:
        if first:  # the database away: once, not twice a second while it is
            log.warning("could not read the quota marks other processes made "
                        "(%s); trying again every %g s", exc, self.interval)

    def _read_again(self) -> None:
        log.info("the quota marks other processes made are read again")

    async def _refresh_shared(self, client: RespClient) -> None:
        rests_changes = self.state.cooldowns.changes
        key_rests_changes = self.state.key_rests.changes
        # All sent at once: the client pipelines them on its one connection.
        version, rests, key_rests = await asyncio.gather(
            client.call("GET", self._version_key), client.call("HGETALL", self._rests_key),
            client.call("HGETALL", self._key_rests_key))
        if not isinstance(version, bytes):
            version = None
        if version != self._version or version is None:
            self._version = version
            await self._reload_marks()
        self._apply_rests(rests, rests_changes)
        self._apply_key_rests(key_rests, key_rests_changes)

    async def _reload_marks(self) -> None:
        quota = self.state.quota
        changes = quota.changes
        rows = await self.store.load()
        if quota.changes != changes:
            return  # a mark or reset here meanwhile that the read may not show: next time
        now = self.state.clock.now()
        quota.replace_all(QuotaMark(provider, since, resets_at, reason, key)
                          for provider, key, since, resets_at, reason in rows
                          if resets_at > now)

    def _apply_rests(self, rests: Reply, changes: int) -> None:
        cooldowns = self.state.cooldowns
        named: set[Target] = set()
        for field, rest in _current_rests(rests, self.state.clock.now()):
            target = _target(field)
            try:
                failures = int(rest["failures"])
            except (KeyError, TypeError, ValueError):
                continue  # not ours to read: left alone
            if target is None:
                continue
            named.add(target)
            cooldowns.rest_until(target, rest["since"], rest["until"], failures,
                                 rest["reason"])
        if cooldowns.changes == changes:  # nothing rested or woke here meanwhile
            cooldowns.wake_all_but(named)

    def _apply_key_rests(self, rests: Reply, changes: int) -> None:
        key_rests = self.state.key_rests
        named: set[tuple[str, str]] = set()
        for field, rest in _current_rests(rests, self.state.clock.now()):
            provider, sep, key = field.decode("utf-8", "replace").partition("\0")
            if not sep:
                continue
            named.add((provider, key))
            key_rests.rest_until(provider, key, rest["since"], rest["until"], rest["reason"])
        if key_rests.changes == changes:  # nothing rested or woke here meanwhile
            key_rests.wake_all_but(named)

    # ------------------------------------------------------------------ Redis writes
    def _client(self) -> RespClient | None:
        return self.limiter.redis_client()

    def _bump_after(self, written: asyncio.Future[int]) -> None:
        if self._client() is not None:
            self._redis_task(self._bump(written))

    async def _bump(self, written: asyncio.Future[int]) -> None:
        with contextlib.suppress(*self.store.db.errors):
            await written  # others read the database once they hear: it must hold it
        client = self._client()
        if client is not None:
            await client.call("INCR", self._version_key)

    async def _write_rest(self, hash_key: str, field: str, value: bytes) -> None:
        client = self._client()
        if client is not None:
            await asyncio.gather(client.call("HSET", hash_key, field, value),
                                 client.call("EXPIRE", hash_key, _RESTS_TTL))

    async def _forget_rest(self, hash_key: str, field: str) -> None:
        client = self._client()
        if client is not None:
            await client.call("HDEL", hash_key, field)

    def _redis_task(self, work: Coroutine[object, object, None]) -> None:
        if self._client() is None:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(self._guarded(work))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _guarded(self, work: Coroutine[object, object, None]) -> None:
        try:
            await work
        except SHARED_DOWN as exc:
            self.limiter.lost(exc)


def _field(target: Target) -> str:
    # A provider name has no NUL; a model name is the client's text, kept whole after it.
    return f"{target.provider}\0{target.model}"


def _key_field(provider: str, key: str) -> str:
    return f"{provider}\0{key}"  # a key id is hex: no NUL in either


def _current_rests(reply: Reply, now: float) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """The fields of a rests hash (HGETALL's reply) whose rest is not over, each with its
    value read: `since` and `until` floats, `reason` a string, the rest as stored."""
    pairs = reply if isinstance(reply, list) else []  # HGETALL: field, value, field...
    for field, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not isinstance(field, bytes) or not isinstance(value, bytes):
            continue
        try:
            rest = orjson.loads(value)
            rest["since"], rest["until"] = float(rest["since"]), float(rest["until"])
            rest["reason"] = str(rest["reason"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not ours to read: left alone
        if rest["until"] > now:
            yield field, rest


def _target(field: bytes) -> Target | None:
    provider, sep, model = field.decode("utf-8", "replace").partition("\0")
    return Target(provider, model) if sep else None
