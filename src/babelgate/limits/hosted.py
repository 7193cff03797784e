"""Limits shared by the workers of `serve --workers N` without Redis: the supervisor holds the
counts and each worker asks it, over a unix socket, as it would ask Redis.

Why this way: the counts must be exact across workers (a 10 requests/minute key gets 10
through N workers, not 10 N), and the supervisor already outlives every worker. A worker
makes the same two calls per limited request as with Redis (admission, settlement), in RESP
over a unix socket on its own event loop (resp.py); the supervisor answers each from one
`MemoryLimits` (memory.py), the arithmetic a single process uses, so there is no second
implementation of the limits to keep in step. SQLite would serialise every admission through
a file lock and fsync-free WAL writes (~10x the instructions of a socket round trip); shared
memory would need a cross-process lock in Python around every check.

What this module promises:
- `CountServer(path)` (in the supervisor) answers PING, ADMIT, FINISH, SEED and SPENT; each
  command is handled whole before the next is read, so admissions from different workers
  never interleave (the supervisor's event loop is the lock).
- A worker's concurrency slots are freed when its connection goes (it exited or was
  killed), so a dead worker cannot hold a key's slots.
- A command is at most `MAX_COMMAND` bytes; a connection that sends more, or garbage, is
  closed. The socket lives in a directory only this user can enter.
- `HostedLimits` (in a worker) is the `SharedLimits` the Limiter uses; a refusal's message is
  made by the supervisor, with the same words as this process's own counts.
- The supervisor also keeps what routing shares between processes as it would in Redis
  (server/shared_routing.py: a version number, hashes of rests), answering the few Redis
  commands that takes (GET, INCR, HSET, HGETALL, HDEL, EXPIRE) from one `SharedValues`, so
  workers without Redis share cooldowns and the rests of keys too. EXPIRE is accepted and
  ignored: the values die with the supervisor, and each reader skips a rest that is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import cast

from .memory import MemoryLimits
from .periods import Period
from .permit import Limited, Permit, Refusal, RefusalKind
from .resp import Incomplete, Reply, RespClient, RespError, parse

MAX_COMMAND = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Key:
    """A key's limits as a worker sent them."""

    id: str
    name: str
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    budget: float | None
    budget_period: Period | None


def _key_fields(key: Limited) -> tuple[str, ...]:
    return (key.id, key.name, str(key.rpm or 0), str(key.tpm or 0), str(key.concurrency or 0),
            "" if key.budget is None else repr(key.budget), key.budget_period or "")


def _key_from(fields: list[bytes]) -> _Key:
    key_id, name, rpm, tpm, concurrency, budget, period = (f.decode() for f in fields)
    if period not in ("", "day", "month"):
        raise ValueError(f"not a budget period: {period!r}")
    return _Key(key_id, name, int(rpm) or None, int(tpm) or None, int(concurrency) or None,
                float(budget) if budget else None, cast(Period, period) if period else None)


_KEY_FIELDS = 7


# ---------------------------------------------------------------------------- the worker's side


class HostedLimits:
    """The supervisor's counts, as a worker's Limiter sees them."""

    where = "the supervisor's limit counts"

    def __init__(self, client: RespClient) -> None:
        self.client = client

    async def ping(self) -> None:
        await self.client.call("PING")

    async def close(self) -> None:
        await self.client.close()

    async def seed(self, key_id: str, start: float, spent: float) -> None:
        await self.client.call("SEED", key_id, start, spent)

    async def spent(self, key: Limited, now: float) -> float:
        return _float(await self.client.call("SPENT", *_key_fields(key), now))

    async def admit(self, key: Limited, estimate: int, now: float) -> Permit | Refusal:
        answer = await self.client.call("ADMIT", *_key_fields(key), estimate, now)
        if not isinstance(answer, list) or len(answer) != 3:
            raise RespError(f"ERR ADMIT answered {answer!r}")
        first, second, third = answer
        if first == b"ok":
            return Permit(key, local=False, tpm_window=_int(second), tpm_reserved=_int(third))
        if isinstance(first, bytes) and first in (b"rpm", b"tpm", b"concurrency", b"budget"):
            kind = cast(RefusalKind, first.decode())
            return Refusal(kind, _float(second), _text(third))
        raise RespError(f"ERR ADMIT answered {answer!r}")

    async def finish(self, permit: Permit, now: float) -> float | None:
        spent = await self.client.call(
            "FINISH", *_key_fields(permit.key), permit.tpm_window, permit.tpm_reserved,
            permit.tokens, permit.cost, now)
        return None if spent is None else _float(spent)

    async def finish_many(self, permits: list[tuple[Permit, float]]
                          ) -> list[float | BaseException | None]:
        """Each permit's FINISH, pipelined on the one connection; a failed one's error in
        its place."""
        return await asyncio.gather(*(self.finish(permit, now) for permit, now in permits),
                                    return_exceptions=True)


def _int(reply: Reply) -> int:
    if isinstance(reply, int):
        return reply
    raise RespError(f"ERR not an integer: {reply!r}")


def _float(reply: Reply) -> float:
    if isinstance(reply, bytes | int):
        return float(reply)
    raise RespError(f"ERR not a number: {reply!r}")


def _text(reply: Reply) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    raise RespError(f"ERR not text: {reply!r}")


# ---------------------------------------------------------------------------- the supervisor's


def _bulk(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class SharedValues:
    """Redis's strings and hashes, as little of them as routing uses (see above)."""

    def __init__(self) -> None:
        self.strings: dict[bytes, int] = {}  # only counters (INCR) are kept
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}

    def answer(self, name: bytes, args: list[bytes]) -> bytes | None:
        """The reply to a command of these, or None when it is not one of them."""
        if name == b"GET" and len(args) == 1:
            count = self.strings.get(args[0])
            return b"$-1\r\n" if count is None else _bulk(str(count))
        if name == b"INCR" and len(args) == 1:
            value = self.strings[args[0]] = self.strings.get(args[0], 0) + 1
            return b":%d\r\n" % value
        if name == b"HSET" and len(args) >= 3 and len(args) % 2 == 1:
            fields = self.hashes.setdefault(args[0], {})
            added = sum(field not in fields for field in args[1::2])
            fields.update(zip(args[1::2], args[2::2], strict=True))
            return b":%d\r\n" % added
        if name == b"HGETALL" and len(args) == 1:
            pairs = self.hashes.get(args[0], {})
            return b"*%d\r\n" % (2 * len(pairs)) + b"".join(
                _bulk(field) + _bulk(value) for field, value in pairs.items())
        if name == b"HDEL" and len(args) >= 2:
            fields = self.hashes.get(args[0], {})
            gone = sum(fields.pop(field, None) is not None for field in args[1:])
            return b":%d\r\n" % gone
        if name == b"EXPIRE" and len(args) == 2:
            return b":1\r\n"
        return None


class _Worker(asyncio.Protocol):
    """One worker's connection: its commands, and the slots it holds."""

    def __init__(self, counts: MemoryLimits, values: SharedValues) -> None:
        self.counts = counts
        self.values = values
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.slots: dict[str, list[_Key]] = {}  # key id: one entry per slot held

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        at = 0
        answers: list[bytes] = []
        try:
            while at < len(buffer):
                command, at = parse(buffer, at)
                if not isinstance(command, list) or not command or not all(
                        isinstance(part, bytes) for part in command):
                    raise ValueError("a command is an array of bulk strings")
                answers.append(self.answer(cast(list[bytes], command)))
        except Incomplete:
            pass
        except (ValueError, RespError):  # not RESP, or not a command
            self._close()
            return
        self.buffer = buffer[at:]
        if len(self.buffer) > MAX_COMMAND:
            self._close()
            return
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for keys in self.slots.values():
            for key in keys:
                self.counts.finish(Permit(key, local=True), 0.0)
        self.slots.clear()

    def answer(self, command: list[bytes]) -> bytes:
        name, args = command[0].upper(), command[1:]
        try:
            if name == b"PING":
                return b"+PONG\r\n"
            if name == b"ADMIT" and len(args) == _KEY_FIELDS + 2:
                return self.admit(_key_from(args[:_KEY_FIELDS]), int(args[7]), float(args[8]))
            if name == b"FINISH" and len(args) == _KEY_FIELDS + 5:
                return self.finish(_key_from(args[:_KEY_FIELDS]), args[_KEY_FIELDS:])
            if name == b"SEED" and len(args) == 3:
                self.counts.seed(args[0].decode(), float(args[1]), float(args[2]))
                return b"+OK\r\n"
            if name == b"SPENT" and len(args) == _KEY_FIELDS + 1:
                spent = self.counts.spent(_key_from(args[:_KEY_FIELDS]), float(args[7]))
                return _bulk(repr(spent))
        except (ValueError, UnicodeDecodeError) as exc:
            return b"-ERR %s\r\n" % str(exc).encode("utf-8", "replace")[:200]
        shared = self.values.answer(name, args)
        return shared if shared is not None else \
            b"-ERR unknown command or wrong number of arguments\r\n"

    def admit(self, key: _Key, estimate: int, now: float) -> bytes:
        answer = self.counts.admit(key, estimate, now)
        if isinstance(answer, Refusal):
            return b"*3\r\n" + _bulk(answer.kind) + _bulk(repr(answer.retry_after)) + _bulk(
                answer.message)
        if key.concurrency:
            self.slots.setdefault(key.id, []).append(key)
        return b"*3\r\n$2\r\nok\r\n:%d\r\n:%d\r\n" % (answer.tpm_window, answer.tpm_reserved)

    def finish(self, key: _Key, fields: list[bytes]) -> bytes:
        window, reserved, tokens, cost, now = fields
        permit = Permit(key, local=True, tpm_window=int(window), tpm_reserved=int(reserved))
        permit.tokens, permit.cost = int(tokens), float(cost)
        held = self.slots.get(key.id)
        if key.concurrency and held:
            held.pop()
            if not held:
                del self.slots[key.id]
        elif key.concurrency:
            # A slot this connection never took (the worker reconnected meanwhile): freeing
            # it would give another worker's slot away.
            permit.key = _Key(key.id, key.name, key.rpm, key.tpm, None, key.budget,
                              key.budget_period)
        self.counts.finish(permit, float(now))
        if not permit.cost or key.budget is None:
            return b"$-1\r\n"
        return _bulk(repr(self.counts.spent(key, float(now))))


class CountServer:
    """The supervisor's counts (and routing's shared values), served on a unix socket in a
    private directory."""

    def __init__(self) -> None:
        self.counts = MemoryLimits()
        self.values = SharedValues()
        self._dir = tempfile.mkdtemp(prefix="babelgate-limits-")  # mode 0700
        self.path = os.path.join(self._dir, "limits.sock")
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Worker(self.counts, self.values),
                                                      self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        shutil.rmtree(self._dir, ignore_errors=True)
