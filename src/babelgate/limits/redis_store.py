"""Limits counted in Redis: exact across processes and instances that share it.

What this module promises:
- Admission is one Lua script (`ADMIT`), run atomically by Redis: it reads the key's spend,
  windows and open slots, decides, and only when every limit allows takes what the request
  needs. No instance ever reads a count and writes it back later, so two instances cannot
  both take the last request of a minute.
- `finish` is one more script (`FINISH`): the token estimate replaced by what was used, in
  the window it went into (while that window exists), the cost added to the period's spend,
  the concurrency slot freed.
- Windows are Redis keys per key id and window number that expire after two windows. A
  concurrency slot is a member of a sorted set scored by its admission time; slots older
  than `lease` seconds (an instance that died holding them) are dropped at the next
  admission, so a crash cannot hold a key's slots forever.
- Spend lives under the key id and the period's start; `seed` sets it from the usage table
  only where no instance did before (SET NX), so a restart does not count twice.
- Every name starts with `prefix`, so tests (and two gateways on one Redis) can keep apart.
- Commands go through our lean RESP client (resp.py): a script is sent once by SCRIPT LOAD
  and then run by its SHA1 (EVALSHA), loaded again if the server forgot it (NOSCRIPT).
- Errors from Redis (connection refused, timeout, an error reply) propagate: the Limiter
  decides what to do.
"""

from __future__ import annotations

import hashlib
import secrets

from .periods import Periods
from .permit import Limited, Permit, Refusal, RefusalKind, budget_spent, over_limit
from .resp import Reply, RespClient, RespError
from .windows import WINDOW, retry_after

# KEYS: requests now, requests before, tokens now, tokens before, slots, spend
# ARGV: rpm, tpm, concurrency, budget (-1: none), estimate, elapsed, slot, now, lease
# Returns {0} admitted, or {refusal number, count now, count before} (strings: Lua numbers
# would be truncated to integers on the way back).
ADMIT = """
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, estimate = tonumber(ARGV[4]), tonumber(ARGV[5])
local weight = 1 - tonumber(ARGV[6]) / 60
local now, lease = tonumber(ARGV[8]), tonumber(ARGV[9])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[6]) or '0')
  if spent >= budget then return {4, tostring(spent), '0'} end
end
if rpm > 0 then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
  if prev * weight + cur + 1 > rpm then return {1, tostring(cur), tostring(prev)} end
end
if tpm > 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[4]) or '0')
  if prev * weight + cur + estimate > tpm then return {2, tostring(cur), tostring(prev)} end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - lease)
  local open = redis.call('ZCARD', KEYS[5])
  if open >= conc then return {3, tostring(open), '0'} end
end
if rpm > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 130)
end
if tpm > 0 then
  redis.call('INCRBY', KEYS[3], estimate)
  redis.call('EXPIRE', KEYS[3], 130)
end
if conc > 0 then
  redis.call('ZADD', KEYS[5], now, ARGV[7])
  redis.call('EXPIRE', KEYS[5], lease)
end
return {0}
"""

# KEYS: the tokens window of the estimate, slots, spend
# ARGV: tokens used less the estimate, slot ('' none), cost, spend ttl
# Returns the period's spend after the cost, '' when nothing was spent.
FINISH = """
local delta = tonumber(ARGV[1])
if delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  if tonumber(redis.call('INCRBY', KEYS[1], delta)) < 0 then
    redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  end
end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
local cost = tonumber(ARGV[3])
local spent = ''
if cost > 0 then
  spent = redis.call('INCRBYFLOAT', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
end
return spent
"""

_KINDS: dict[int, RefusalKind] = {1: "rpm", 2: "tpm", 3: "concurrency", 4: "budget"}
_SPEND_TTL = 40 * 86400  # longer than any month; a period's spend is unread after its end


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisLimits:
    def __init__(self, client: RespClient, *, prefix: str = "babelgate:",
                 lease: float = 3600.0) -> None:
        self.client = client
        # The URL without a password, if it had one.
        scheme, sep, rest = client.url.partition("://")
        self.where = f"Redis at {scheme}{sep}{rest.rpartition('@')[2]}"
        self.prefix = prefix
        self.lease = lease
        self.periods = Periods()
        self._admit = _Script(ADMIT)
        self._finish = _Script(FINISH)

    async def ping(self) -> None:
        await self.client.call("PING")

    async def close(self) -> None:
        await self.client.close()

    async def _run(self, script: _Script, keys: tuple[str, ...],
                   args: tuple[str | int | float, ...]) -> Reply:
        try:
            return await self.client.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except RespError as exc:
            if exc.code != "NOSCRIPT":
                raise
        # A Redis restarted or flushed since we last ran it: load it and run it again.
        await self.client.call("SCRIPT", "LOAD", script.source)
        return await self.client.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def spend_key(self, key_id: str, start: float) -> str:
        return f"{self.prefix}spend:{key_id}:{int(start)}"

    def _window_key(self, what: str, key_id: str, index: int) -> str:
        return f"{self.prefix}{what}:{key_id}:{index}"

    async def seed(self, key_id: str, start: float, spent: float) -> None:
        await self.client.call("SET", self.spend_key(key_id, start), repr(spent), "NX", "EX",
                               _SPEND_TTL)

    async def spent(self, key: Limited, now: float) -> float:
        if key.budget_period is None:
            return 0.0
        start, _ = self.periods.current(key.budget_period, now)
        value = await self.client.call("GET", self.spend_key(key.id, start))
        return float(value) if isinstance(value, bytes) else 0.0

    async def admit(self, key: Limited, estimate: int, now: float) -> Permit | Refusal:
        index = int(now // WINDOW)
        elapsed = now - index * WINDOW
        key_id = key.id
        budget = key.budget if key.budget_period is not None else None
        end = 0.0
        spend = ""
        if budget is not None and key.budget_period is not None:
            start, end = self.periods.current(key.budget_period, now)
            spend = self.spend_key(key_id, start)
        tpm = key.tpm or 0
        estimate = min(estimate, tpm) if tpm else 0
        slot = secrets.token_hex(8) if key.concurrency else ""
        keys = (
            self._window_key("rpm", key_id, index), self._window_key("rpm", key_id, index - 1),
            self._window_key("tpm", key_id, index), self._window_key("tpm", key_id, index - 1),
            f"{self.prefix}slots:{key_id}", spend or f"{self.prefix}nospend",
        )
        args = (key.rpm or 0, tpm, key.concurrency or 0, -1 if budget is None else budget,
                estimate, elapsed, slot, now, self.lease)
        answer = await self._run(self._admit, keys, args)
        if not isinstance(answer, list) or not answer or not isinstance(answer[0], int):
            raise RespError(f"ERR the admission script answered {answer!r}")
        code = answer[0]
        if code == 0:
            return Permit(key, local=False, tpm_window=index if tpm else -1,
                          tpm_reserved=estimate, slot=slot or None)
        kind = _KINDS[code]
        current, previous = _number(answer[1]), _number(answer[2])
        if kind == "budget":
            return budget_spent(key, current, end, now)
        if kind == "concurrency":
            return over_limit(key, kind, key.concurrency or 0, 1.0)
        limit = key.rpm if kind == "rpm" else tpm
        n = 1 if kind == "rpm" else estimate
        assert limit
        return over_limit(key, kind, limit,
                          retry_after(current, previous, elapsed, n, limit))

    async def finish(self, permit: Permit, now: float) -> float | None:
        """Settles `permit`; the key's spend in its period once its cost is added (None when
        it added none)."""
        key = permit.key
        spend, cost = f"{self.prefix}nospend", "0"
        if permit.cost and key.budget is not None and key.budget_period is not None:
            start, _ = self.periods.current(key.budget_period, now)
            spend, cost = self.spend_key(key.id, start), repr(permit.cost)
        tokens = (self._window_key("tpm", key.id, permit.tpm_window)
                  if permit.tpm_window >= 0 else f"{self.prefix}notokens")
        delta = permit.tokens - permit.tpm_reserved if permit.tpm_window >= 0 else 0
        spent = await self._run(self._finish, (tokens, f"{self.prefix}slots:{key.id}", spend),
                                (delta, permit.slot or "", cost, _SPEND_TTL))
        return float(spent) if isinstance(spent, bytes) and spent else None


def _number(reply: Reply) -> float:
    if isinstance(reply, bytes | int):
        return float(reply)
    raise RespError(f"ERR the admission script answered {reply!r}")
