"""Limits counted in Redis: exact across processes and instances that share it.

What this module promises:
- Every change to the counts is one Lua script (`RUN`), run atomically by Redis, on a list
  of operations. An admission reads the key's spend, windows and open slots, decides, and
  only when every limit allows takes what the request needs. No instance ever reads a count
  and writes it back later, so two instances cannot both take the last request of a minute.
- One admission script is in flight at a time: the admissions asked for meanwhile go
  together in the next, in the order they were asked (under load many requests share one
  round trip; a request alone sends its own at once).
- A settlement (`finish_many`: the permits the Limiter has finished since its last batch)
  replaces each token estimate by what was used, in the window it went into (while that
  window is kept), adds the cost to the period's spend and frees the concurrency slot.
- A key's request and token counts live in one hash per key, a field per window ("r" or "t"
  and the window's number), read with one HMGET; the window before the previous one is
  dropped when a new one starts, and the hash expires two windows after its last admission.
  A concurrency slot is a member of a sorted set scored by its admission time; slots older
  than `lease` seconds (an instance that died holding them) are dropped when they would
  refuse a request, so a crash cannot hold a key's slots forever.
- Spend lives under the key id and the period's start; `seed` sets it from the usage table
  only where no instance did before (SET NX), so a restart does not count twice.
- Every name starts with `prefix`, so tests (and two gateways on one Redis) can keep apart.
- Commands go through our lean RESP client (resp.py): a script is sent once by SCRIPT LOAD
  and then run by its SHA1 (EVALSHA), loaded again if the server forgot it (NOSCRIPT). The
  part of a key's admission command that does not change between its requests (names,
  limits) is encoded once per key and period (`_Names`), not per request.
- Errors from Redis (connection refused, timeout, an error reply) propagate: the Limiter
  decides what to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets

from .periods import Periods
from .permit import Limited, Permit, Refusal, RefusalKind, budget_spent, over_limit
from .resp import Reply, RespClient, RespError, encode
from .windows import WINDOW, retry_after

# One script for every kind of work, run on a list of operations: admissions ("a") and
# settlements ("s"), in the order they were asked for.
# KEYS: per operation, its key's counts (a hash), slots and spend
# ARGV: per operation its kind, then
#   admission: rpm, tpm, concurrency, budget (-1: none), lease (the key's: encoded once),
#              estimate, now, slot, window number (the request's)
#   settlement: the token field ('' none), tokens used less the estimate, slot ('' none),
#               cost
# Returns per operation
#   admission: {0} admitted, or {refusal number, count now, count before} (strings: Lua
#              numbers would be truncated to integers on the way back)
#   settlement: the period's spend after its cost, '' when it added none
RUN = """
local function admit(counts, slots, spend, a)
  local rpm, tpm, conc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local budget, lease = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local estimate, now = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local slot, index = ARGV[a + 7], tonumber(ARGV[a + 8])
  if budget >= 0 then
    local spent = tonumber(redis.call('GET', spend) or '0')
    if spent >= budget then return {4, tostring(spent), '0'} end
  end
  local counted = rpm > 0 or tpm > 0
  local now_r, now_t = 'r' .. index, 't' .. index
  if counted then
    local weight = 1 - (now - index * 60) / 60
    local c = redis.call('HMGET', counts, now_r, 'r' .. (index - 1), now_t, 't' .. (index - 1))
    if rpm > 0 then
      local cur, prev = tonumber(c[1] or '0'), tonumber(c[2] or '0')
      if prev * weight + cur + 1 > rpm then return {1, tostring(cur), tostring(prev)} end
    end
    if tpm > 0 then
      local cur, prev = tonumber(c[3] or '0'), tonumber(c[4] or '0')
      if prev * weight + cur + estimate > tpm then return {2, tostring(cur), tostring(prev)} end
    end
  end
  if conc > 0 then
    local open = redis.call('ZCARD', slots)
    if open >= conc then
      -- Slots of an instance that died holding them count until their lease is over.
      redis.call('ZREMRANGEBYSCORE', slots, '-inf', now - lease)
      open = redis.call('ZCARD', slots)
      if open >= conc then return {3, tostring(open), '0'} end
    end
  end
  if counted then
    if redis.call('HINCRBY', counts, now_r, 1) == 1 then
      -- A new window: only it and the one before are read. The hash lives 130 s after an
      -- admission, so what it still holds is at most four windows old.
      redis.call('HDEL', counts, 'r' .. (index - 2), 't' .. (index - 2), 'r' .. (index - 3),
                 't' .. (index - 3), 'r' .. (index - 4), 't' .. (index - 4))
    end
    if tpm > 0 then redis.call('HINCRBY', counts, now_t, estimate) end
    redis.call('EXPIRE', counts, 130)
  end
  if conc > 0 then
    redis.call('ZADD', slots, now, slot)
    redis.call('EXPIRE', slots, lease)
  end
  return {0}
end

local function settle(counts, slots, spend, a)
  local field, delta, slot = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  if delta ~= 0 and field ~= '' and redis.call('HEXISTS', counts, field) == 1 then
    if redis.call('HINCRBY', counts, field, delta) < 0 then
      redis.call('HSET', counts, field, 0)
    end
  end
  if slot ~= '' then redis.call('ZREM', slots, slot) end
  if tonumber(ARGV[a + 3]) > 0 then
    local spent = redis.call('INCRBYFLOAT', spend, ARGV[a + 3])
    redis.call('EXPIRE', spend, 3456000)  -- 40 days: longer than any month
    return spent
  end
  return ''
end

local done, k, a = {}, 1, 1
while a <= #ARGV do
  if ARGV[a] == 'a' then
    done[#done + 1] = admit(KEYS[k], KEYS[k + 1], KEYS[k + 2], a + 1)
    a = a + 10
  else
    done[#done + 1] = settle(KEYS[k], KEYS[k + 1], KEYS[k + 2], a + 1)
    a = a + 5
  end
  k = k + 3
end
return done
"""

_KINDS: dict[int, RefusalKind] = {1: "rpm", 2: "tpm", 3: "concurrency", 4: "budget"}
_SPEND_TTL = 40 * 86400  # longer than any month; a period's spend is unread after its end


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Names:
    """One key's names in Redis and its part of an admission, encoded: made at its first
    request and again when its limits change or its budget period ends."""

    __slots__ = ("admit", "counts", "end", "key", "keys", "slots", "spend", "start")

    def __init__(self, store: RedisLimits, key: Limited, now: float) -> None:
        self.key = key
        prefix = store.prefix
        self.counts = f"{prefix}counts:{key.id}"
        self.slots = f"{prefix}slots:{key.id}"
        self.start, self.end = 0.0, float("inf")
        self.spend = f"{prefix}nospend"
        budget = -1.0
        if key.budget is not None and key.budget_period is not None:
            self.start, self.end = store.periods.current(key.budget_period, now)
            self.spend = store.spend_key(key.id, self.start)
            budget = key.budget
        self.keys = _bulks(self.counts, self.slots, self.spend)
        # The kind and the key's five arguments; the request's four follow.
        self.admit = _bulks("a", key.rpm or 0, key.tpm or 0, key.concurrency or 0, budget,
                            store.lease)


def _bulks(*args: str | int | float) -> bytes:
    """`args` as RESP bulk strings (a part of a command: `encode` without its header)."""
    whole = encode(args)
    return whole[whole.index(b"\r\n") + 2:]


def _request_args(estimate: int, now: float, slot: str, index: int) -> bytes:
    now_text, index_text = repr(now), str(index)
    estimate_text = str(estimate)
    return (f"${len(estimate_text)}\r\n{estimate_text}\r\n${len(now_text)}\r\n{now_text}\r\n"
            f"${len(slot)}\r\n{slot}\r\n${len(index_text)}\r\n{index_text}\r\n").encode()


# An operation for the script: its three keys and its arguments (encoded), and how many
# arguments.
_Operation = tuple[bytes, bytes, int]
_ADMIT_ARGS = 10
_SETTLE_ARGS = 5


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
        self._script = _Script(RUN)
        self._names: dict[str, _Names] = {}  # by key id
        # Slots are named by this process and a counter: unique across instances without
        # asking the system for random bytes on every request.
        self._slot_prefix = secrets.token_hex(6) + ":"
        self._slot_numbers = itertools.count()
        # One admission script in flight at a time: the admissions asked for meanwhile wait
        # here and go in the next one, all together, as soon as the reply is in (so under
        # load requests share round trips; alone, a request's goes at once).
        self._busy = False
        # Operations waiting for the next script, by caller: the future gets their replies.
        self._waiting: list[tuple[list[_Operation], asyncio.Future[list[Reply]]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    async def ping(self) -> None:
        await self.client.call("PING")

    async def close(self) -> None:
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        await self.client.close()

    # ------------------------------------------------------------------ running the script
    async def _run(self, operations: list[_Operation]) -> list[Reply]:
        """One script for `operations`; its reply, one entry each."""
        keys = b"".join([op[0] for op in operations])
        args = b"".join([op[1] for op in operations])
        count = len(operations) * 3
        arg_count = sum([op[2] for op in operations])
        count_text = str(count)
        command = (f"*{3 + count + arg_count}\r\n$7\r\nEVALSHA\r\n$40\r\n{self._script.sha}"
                   f"\r\n${len(count_text)}\r\n{count_text}\r\n").encode() + keys + args
        try:
            replies = await self.client.send(command)
        except RespError as exc:
            if exc.code != "NOSCRIPT":
                raise
            # A Redis restarted or flushed since we last ran it: load it and run it again.
            await self.client.call("SCRIPT", "LOAD", self._script.source)
            replies = await self.client.send(command)
        if not isinstance(replies, list) or len(replies) != len(operations):
            raise RespError(f"ERR the limits script answered {replies!r}")
        return replies

    async def _do(self, operations: list[_Operation]) -> list[Reply]:
        """Runs `operations` now when no admission script is in flight, else with the
        next one."""
        if not self._busy:
            self._busy = True
            try:
                return await self._run(operations)
            finally:
                self._busy = False
                if self._waiting:
                    self._next_batch()
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._waiting.append((operations, future))
        return await future

    def _next_batch(self) -> None:
        self._busy = True
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[tuple[list[_Operation],
                                                 asyncio.Future[list[Reply]]]]) -> None:
        try:
            replies = await self._run([op for operations, _ in batch for op in operations])
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()  # this task was cancelled (shutdown)
            if not isinstance(exc, Exception):
                raise
        else:
            at = 0
            for operations, future in batch:
                if not future.done():  # not cancelled meanwhile
                    future.set_result(replies[at:at + len(operations)])
                at += len(operations)
        finally:
            self._busy = False
            if self._waiting:
                self._next_batch()

    # ------------------------------------------------------------------ the limits
    def spend_key(self, key_id: str, start: float) -> str:
        return f"{self.prefix}spend:{key_id}:{int(start)}"

    def _names_of(self, key: Limited, now: float) -> _Names:
        names = self._names.get(key.id)
        if names is None or names.key is not key or now >= names.end or now < names.start:
            names = self._names[key.id] = _Names(self, key, now)
        return names

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
        names = self._names_of(key, now)
        index = int(now // WINDOW)
        tpm = key.tpm or 0
        estimate = min(estimate, tpm) if tpm else 0
        slot = f"{self._slot_prefix}{next(self._slot_numbers)}" if key.concurrency else ""
        answer = (await self._do([(names.keys, names.admit + _request_args(
            estimate, now, slot, index), _ADMIT_ARGS)]))[0]
        if not isinstance(answer, list) or not answer or not isinstance(answer[0], int):
            raise RespError(f"ERR the admission script answered {answer!r}")
        code = answer[0]
        if code == 0:
            return Permit(key, local=False, tpm_window=index if tpm else -1,
                          tpm_reserved=estimate, slot=slot or None)
        kind = _KINDS[code]
        current, previous = _number(answer[1]), _number(answer[2])
        if kind == "budget":
            return budget_spent(key, current, names.end, now)
        if kind == "concurrency":
            return over_limit(key, kind, key.concurrency or 0, 1.0)
        limit = key.rpm if kind == "rpm" else tpm
        n = 1 if kind == "rpm" else estimate
        assert limit
        return over_limit(key, kind, limit,
                          retry_after(current, previous, now - index * WINDOW, n, limit))

    async def finish(self, permit: Permit, now: float) -> float | None:
        """Settles `permit`; the key's spend in its period once its cost is added (None when
        it added none)."""
        spent = (await self.finish_many([(permit, now)]))[0]
        assert not isinstance(spent, BaseException)
        return spent

    async def finish_many(self, permits: list[tuple[Permit, float]]
                          ) -> list[float | BaseException | None]:
        """Settles each (permit, when it finished) in one script; per permit what `finish`
        says. Raises when the script did not run (none of them was settled)."""
        operations: list[_Operation] = []
        for permit, now in permits:
            names = self._names_of(permit.key, now)
            cost = permit.cost if names.end != float("inf") else 0.0
            window = permit.tpm_window
            args = _bulks("s", f"t{window}" if window >= 0 else "",
                          permit.tokens - permit.tpm_reserved if window >= 0 else 0,
                          permit.slot or "", repr(cost) if cost else "0")
            operations.append((names.keys, args, _SETTLE_ARGS))
        # Straight to Redis: the Limiter sends one batch of settlements at a time already,
        # and an admission must not wait behind one.
        return [float(spent) if isinstance(spent, bytes) and spent else None
                for spent in await self._run(operations)]


def _number(reply: Reply) -> float:
    if isinstance(reply, bytes | int):
        return float(reply)
    raise RespError(f"ERR the admission script answered {reply!r}")
