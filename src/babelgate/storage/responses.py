"""Stored Responses API turns, so clients can continue with `previous_response_id`.

What this module promises:
- Each response is one row: its own new input items, the response object the client got, the
  id it continued (`previous`) and its `owner`. A conversation is stored once, turn by turn:
  `chain(id, owner)` walks the links back (one recursive query, at most `max_turns` rows) and
  returns the turns oldest first, so storing turn n costs the size of turn n, not of the
  whole history.
- `ResponseStore.put()` never blocks the event loop and never waits on the disk: the record
  goes into an in-memory `pending` dict at once and is written by the store's own thread.
  Reads see a put record immediately (from `pending` until its row is committed), so a
  follow-up request that arrives right after a response always finds it.
- All SQLite work runs on one dedicated thread that owns the only connection (WAL mode), so
  operations run in the order they were issued: a delete after a put removes it.
- Every read, delete and continuation is scoped to an owner (None: the open gateway without
  keys); a record is invisible to any other owner, and a write never replaces another
  owner's row.
- Nothing touches the disk until a record is put or asked for, except `start()`, which
  prunes an existing database; a gateway whose clients never store leaves no file behind.
- A response older than `ttl_days` is never returned nor continued from; the turns before a
  live response stay as long as it needs them. Expired rows are pruned at start-up and then
  every `prune_every` seconds by a background task, off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .migrations import migrate

log = logging.getLogger("babelgate")

JSON = dict[str, Any]
T = TypeVar("T")
DAY = 86400.0


def default_db_path(env: dict[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/babelgate/babelgate.db`, else `~/.local/share/babelgate/babelgate.db`."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "babelgate" / "babelgate.db"


@dataclass(slots=True, frozen=True)
class StoredResponse:
    """One turn: the input items it added, the response object sent back, the response it
    continued (None: the conversation starts here) and whose it is (None: the open
    gateway)."""

    id: str
    created_at: float
    input: list[JSON]
    response: JSON
    previous: str | None = None
    owner: str | None = None

    @property
    def output(self) -> list[JSON]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


# The turns from one id back to the start of its conversation, newest first. The head must
# be unexpired; the turns before it are kept for it whatever their age. `depth` bounds the
# walk (and ends it should ids ever form a loop).
_CHAIN = """
WITH RECURSIVE chain(id, created_at, input, response, previous, depth) AS (
    SELECT id, created_at, input, response, previous, 1 FROM responses
    WHERE id = ? AND owner IS ? AND created_at >= ?
    UNION ALL
    SELECT r.id, r.created_at, r.input, r.response, r.previous, chain.depth + 1
    FROM responses AS r JOIN chain ON r.id = chain.previous
    WHERE r.owner IS ? AND chain.depth < ?
)
SELECT id, created_at, input, response, previous FROM chain ORDER BY depth
"""

# Expired rows that no unexpired response continues from, directly or not. UNION (not
# UNION ALL) visits each ancestor once, however many live turns share it.
_PRUNE = """
WITH RECURSIVE needed(id) AS (
    SELECT previous FROM responses WHERE created_at >= ? AND previous IS NOT NULL
    UNION
    SELECT r.previous FROM responses AS r JOIN needed ON r.id = needed.id
    WHERE r.previous IS NOT NULL
)
DELETE FROM responses WHERE created_at < ? AND id NOT IN (SELECT id FROM needed)
"""

_WRITE = """
INSERT INTO responses (id, created_at, input, response, previous, owner)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, input = excluded.input,
    response = excluded.response, previous = excluded.previous
WHERE responses.owner IS excluded.owner
"""


class ResponseStore:
    def __init__(
        self, path: str | os.PathLike[str], ttl_days: float = 30.0, *,
        max_turns: int = 1000, prune_every: float = 3600.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.ttl = ttl_days * DAY
        # A continuation loads every turn of its conversation: this bounds that memory.
        self.max_turns = max_turns
        self.prune_every = prune_every  # seconds between two prunes while running
        self.pending: dict[str, StoredResponse] = {}
        self._writes: set[asyncio.Future[None]] = set()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="babelgate-db")
        self._conn: sqlite3.Connection | None = None  # used only on self._thread
        self._pruner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle (event loop)
    async def start(self) -> int:
        """Prune an existing database and start pruning periodically; returns how many
        records went now. A missing file is left missing until the first put."""
        pruned = await self._prune_if_any()
        self._pruner = asyncio.get_running_loop().create_task(self._prune_periodically())
        return pruned

    async def close(self) -> None:
        """Stop pruning, finish queued writes, then close the connection."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._run(self._close)
        self._thread.shutdown(wait=True)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.prune_every)
            try:
                await self._prune_if_any()
            except Exception:  # a locked or broken file: say so, try again next time
                log.exception("could not prune stored responses")

    async def _prune_if_any(self) -> int:
        if self._conn is None and not self.path.exists():
            return 0
        return await self._run(self._prune, time.time())

    # ------------------------------------------------------------ operations (event loop)
    def put(self, record: StoredResponse) -> None:
        """Keep `record` now, write it in the background.

        Why not await the write before the client's last bytes: measured on the 2-core dev
        box, a write (24 KB of history) takes ~0.1 ms at p50 but ~8 ms at p99 (WAL
        checkpoints), all of it added to the client's latency. `put` itself costs ~15 us
        (p50) on the event loop, and `pending` makes the record visible at once."""
        self.pending[record.id] = record
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(self._thread, self._write, record)
        self._writes.add(write)
        write.add_done_callback(lambda done: self._written(record, done))

    async def get(self, rid: str, owner: str | None) -> StoredResponse | None:
        """One unexpired response of `owner`."""
        oldest = time.time() - self.ttl
        record = self.pending.get(rid)
        if record is not None:
            return record if _visible(record, owner, oldest) else None
        return await self._run(self._read, rid, owner, oldest)

    async def chain(self, rid: str, owner: str | None) -> list[StoredResponse] | None:
        """The turns of the conversation that ends with `rid`, oldest first, at most
        `max_turns` of them; None when `rid` is not an unexpired response of `owner`. The
        first turn's `previous` is not None when the chain is broken (a turn before it was
        deleted) or longer than `max_turns`."""
        oldest = time.time() - self.ttl
        turns: list[StoredResponse] = []
        cursor: str | None = rid
        # Turns not yet written are newest; every older one is on disk or queued to be
        # (the one thread writes them before it reads the chain).
        while cursor is not None and len(turns) < self.max_turns:
            record = self.pending.get(cursor)
            if record is None:
                break
            if not _visible(record, owner, oldest if not turns else 0.0):
                return None if not turns else _oldest_first(turns)
            turns.append(record)
            cursor = record.previous
        if cursor is not None and len(turns) < self.max_turns:
            turns += await self._run(
                self._chain, cursor, owner, oldest if not turns else 0.0,
                self.max_turns - len(turns),
            )
        return _oldest_first(turns) if turns else None

    async def delete(self, rid: str, owner: str | None) -> bool:
        record = self.pending.get(rid)
        was_pending = record is not None and record.owner == owner
        if was_pending:
            del self.pending[rid]
        # Queued after any write of the same id (one thread), so the row cannot come back.
        deleted = await self._run(self._delete, rid, owner)
        return deleted or was_pending

    async def prune(self, now: float | None = None) -> int:
        return await self._run(self._prune, time.time() if now is None else now)

    async def flush(self) -> None:
        """Wait until every put so far is on disk (tests, shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _written(self, record: StoredResponse, done: asyncio.Future[None]) -> None:
        self._writes.discard(done)
        if self.pending.get(record.id) is record:
            del self.pending[record.id]
        if not done.cancelled() and done.exception() is not None:
            # The client already has its answer; only a later continuation will miss it.
            log.error("could not store response %s: %s", record.id, done.exception())

    # ------------------------------------------------------------ the database thread
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch(mode=0o600)  # conversations are private
        # Autocommit: each statement below is atomic alone; migrations open their own
        # transactions.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process; a power loss may lose the last
        # commits, which for resumable conversation state is the right trade for speed.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")  # another gateway on the same file
        migrate(conn)
        return conn

    def _write(self, record: StoredResponse) -> None:
        self._db().execute(_WRITE, (
            record.id, record.created_at, orjson.dumps(record.input),
            orjson.dumps(record.response), record.previous, record.owner,
        ))

    def _read(self, rid: str, owner: str | None, oldest: float) -> StoredResponse | None:
        row = self._db().execute(
            "SELECT created_at, input, response, previous FROM responses "
            "WHERE id = ? AND owner IS ? AND created_at >= ?",
            (rid, owner, oldest),
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(
            rid, row[0], orjson.loads(row[1]), orjson.loads(row[2]), row[3], owner
        )

    def _chain(
        self, rid: str, owner: str | None, oldest: float, limit: int
    ) -> list[StoredResponse]:
        rows = self._db().execute(_CHAIN, (rid, owner, oldest, owner, limit)).fetchall()
        return [
            StoredResponse(row[0], row[1], orjson.loads(row[2]), orjson.loads(row[3]), row[4],
                           owner)
            for row in rows
        ]

    def _delete(self, rid: str, owner: str | None) -> bool:
        cursor = self._db().execute(
            "DELETE FROM responses WHERE id = ? AND owner IS ?", (rid, owner)
        )
        return cursor.rowcount > 0

    def _prune(self, now: float) -> int:
        oldest = now - self.ttl
        db = self._db()
        before = db.total_changes  # `rowcount` is -1 for a statement that starts with WITH
        db.execute(_PRUNE, (oldest, oldest))
        count = db.total_changes - before
        if count:
            log.info("pruned %d stored responses older than %g days", count, self.ttl / DAY)
        return count

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _visible(record: StoredResponse, owner: str | None, oldest: float) -> bool:
    return record.owner == owner and record.created_at >= oldest


def _oldest_first(turns: list[StoredResponse]) -> list[StoredResponse]:
    turns.reverse()
    return turns
