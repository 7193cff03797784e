"""The usage table: rows written in batches by a thread of their own, read by `babelgate usage`.

What this module promises:
- `UsageWriter.add(row)` never blocks and never touches the disk: it appends to an
  in-memory queue (a deque append, safe across threads). The writer's thread inserts what
  is queued every `flush_interval` seconds, or as soon as `batch_rows` rows wait, in one
  transaction per batch.
- The queue holds at most `max_queue` rows: when the database cannot keep up (a disk stalled,
  a locked file), the oldest rows are dropped rather than memory growing without bound, and
  the thread logs how many went (`dropped` counts them).
- `close()` writes everything still queued before it returns: a graceful stop loses no row.
- Nothing opens the database before the first row arrives.
- Rows are tuples in `COLUMNS` order (None for NULL, bools for the flag columns); this
  module knows SQL, not what the columns mean.
- The writer's thread hands each batch to the app's `Database` and waits for it: on SQLite
  to the database's own thread and connection (one executemany in one transaction), on
  PostgreSQL to the event loop, which then only runs the insert itself (one COPY per
  batch: 9 K instructions a row in this process under callgrind, where executemany's INSERT
  per row cost 21 K, and one statement for the server instead of one per row); `close()` must be
  called off the loop (the app uses `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from .database import Database
from .sqlite import SqliteDatabase

log = logging.getLogger("babelgate")

COLUMNS: tuple[str, ...] = (
    "time", "request_id", "key", "client", "protocol", "endpoint", "model", "provider",
    "target_model", "stream", "status", "error_kind", "rule", "route", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost",
    "latency_ms", "ttft_ms", "final", "estimated",
)
# Binding None or a bool costs Python's sqlite3 an adapter search per value (~3,000
# instructions each, measured under callgrind: more than the insert itself), where an int, a
# float or a str binds at once. So on SQLite the NULLs and the flags are not bound at all:
# each pattern of them (which nullable columns are NULL, which flags are set; a few in
# practice) has an INSERT of its own, made once per writer, with NULL, 0 or 1 written into
# it, and only the other values are bound. (It replaced binding '' turned back into NULL by
# NULLIF(?, ''), ~5 K instructions a row. An empty string is now stored as it is, as
# PostgreSQL's COPY always did; the records never carry one in these columns.)
NULLABLE = ("key", "error_kind", "rule", "route", "cost", "ttft_ms")
FLAGS = ("stream", "final", "estimated")
_NULLABLE_AT = tuple(COLUMNS.index(name) for name in NULLABLE)
_FLAGS_AT = tuple(COLUMNS.index(name) for name in FLAGS)

Row = Sequence[Any]
# Which nullable columns hold None (in NULLABLE order), then the flags' values.
Pattern = tuple[Any, ...]


def _pattern(row: Row) -> Pattern:
    """The pattern of `row`, for every row the writer writes: unpacked by name and compared
    one by one (a tuple unpacked and compared is a few bytecodes a column; itemgetter and
    map with operator.is_ cost five times as much under callgrind)."""
    (_, _, key, _, _, _, _, _, _, stream, _, error_kind, rule, route, _, _, _, _, _, cost, _,
     ttft_ms, final, estimated) = row
    return (key is None, error_kind is None, rule is None, route is None, cost is None,
            ttft_ms is None, stream, final, estimated)


def _insert_for(pattern: Pattern) -> tuple[str, Callable[[Row], tuple[Any, ...]]]:
    """The INSERT for rows of `pattern`, and what takes the values it binds out of a row."""
    nulls = {at for at, none in zip(_NULLABLE_AT, pattern, strict=False) if none}
    flags = dict(zip(_FLAGS_AT, pattern[len(NULLABLE):], strict=True))
    values, bound = [], []
    for at in range(len(COLUMNS)):
        if at in nulls:
            values.append("NULL")
        elif at in flags:
            values.append("1" if flags[at] else "0")
        else:
            values.append("?")
            bound.append(at)
    sql = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join(values)})"
    return sql, itemgetter(*bound)


def _flags_as_ints(row: Row) -> tuple[Any, ...]:
    """`row` as PostgreSQL's COPY takes it: the flag columns are INTEGER there."""
    values = list(row)
    for at in _FLAGS_AT:
        values[at] = 1 if values[at] else 0
    return tuple(values)


class UsageWriter:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 0.5,
        batch_rows: int = 1000,
        max_queue: int = 100_000,
    ) -> None:
        self.db = db
        # SQLite: an INSERT per pattern of NULLs and flags (see _pattern), made on first use.
        self.sqlite = db if isinstance(db, SqliteDatabase) else None
        self._inserts: dict[Pattern, tuple[str, Callable[[Row], tuple[Any, ...]]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the Database's, for PostgreSQL
        self._errors: tuple[type[Exception], ...] = db.errors
        self.flush_interval = flush_interval
        self.batch_rows = batch_rows
        self.max_queue = max_queue
        self.dropped = 0
        self.written = 0
        self._reported = 0
        self._queue: deque[Row] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # starting the thread once

    # ------------------------------------------------------------ the request path
    def add(self, row: Row) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            queue.popleft()  # the oldest goes: the writer says how many
            self.dropped += 1
        queue.append(row)
        if self._thread is None:
            self._start()
        elif len(queue) >= self.batch_rows:
            self._wake.set()

    def _start(self) -> None:
        if self.sqlite is None and self._loop is None:
            self._loop = asyncio.get_running_loop()  # add() runs on the loop
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="babelgate-usage", daemon=True)
                self._thread.start()

    # ------------------------------------------------------------ the writer's thread
    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._flush(everything=False)

    def _flush(self, everything: bool = True) -> None:
        """Writes what is queued; the thread's passes (`everything` False) only what waited
        when the pass began: rows that arrive while it writes wait for the next pass (after
        `flush_interval`, or at once when `batch_rows` wait), so that under load a batch is
        what a pass collected, not the few rows that came in during the last write (wrk
        -c32 on PostgreSQL: 58 COPYs a second of ~60 rows each before, 7 of ~500 now)."""
        queue = self._queue
        left = len(queue) if not everything else -1
        while queue and left != 0:
            size = self.batch_rows if left < 0 else min(self.batch_rows, left)
            batch: list[Row] = []
            take = batch.append
            pop = queue.popleft
            try:
                while len(batch) < size:
                    take(pop())
            except IndexError:  # emptied
                pass
            if left > 0:
                left -= len(batch)
            self._write(batch)
        if self.dropped != self._reported:
            log.warning("usage records dropped: %d in all (the database fell behind; the "
                        "queue holds %d)", self.dropped, self.max_queue)
            self._reported = self.dropped

    def _write(self, batch: list[Row]) -> None:
        for attempt in range(3):
            try:
                if self.sqlite is not None:
                    self.sqlite.executemany_each_from_thread(self._statements(batch))
                else:
                    self.db.copy_from_thread(
                        "usage", COLUMNS, [_flags_as_ints(row) for row in batch], self._loop)
                self.written += len(batch)
                return
            except self._errors as exc:
                if attempt == 2:
                    log.error("usage records lost: %d could not be written to %s: %s",
                              len(batch), self.db.url, exc)
                    return
                time.sleep(0.2 * (attempt + 1))  # a locked file: this thread may wait

    def _statements(self, batch: list[Row]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """`batch` as SQLite's INSERTs, in order: one for each run of rows with the same
        pattern of NULLs and flags (nearly always the whole batch), with the values each
        binds."""
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        inserts = self._inserts
        last: Pattern | None = None
        bind: Callable[[Row], tuple[Any, ...]] | None = None
        values: list[tuple[Any, ...]] = []
        for row in batch:
            pattern = _pattern(row)
            if pattern != last or bind is None:
                insert = inserts.get(pattern)
                if insert is None:
                    insert = inserts[pattern] = _insert_for(pattern)
                sql, bind = insert
                values = []
                statements.append((sql, values))
                last = pattern
            values.append(bind(row))
        return statements

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Write what is queued and stop the thread (blocks: call it off the event loop, or
        at shutdown)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join()
        self._flush()  # rows added after the thread's last pass, or with no thread at all


# ---------------------------------------------------------------- reading


async def read_since_db(db: Database, since: float) -> list[dict[str, Any]]:
    """As `read_since`, from any database (PostgreSQL included)."""
    if not await db.has_table("usage"):
        return []
    rows = await db.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM usage WHERE time >= ? ORDER BY time", since)
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def read_since(path: str | os.PathLike[str], since: float) -> list[dict[str, Any]]:
    """Every row from `since` (unix seconds) on, oldest first, as dicts by column."""
    db = Path(path).expanduser()
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'").fetchone()
        if has is None:
            return []
        # A file not migrated yet (read-only here: an older gateway's, or one migrating
        # now) lacks the newest columns: each reads as 0 (`estimated`: not marked).
        present = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
        select = ", ".join(name if name in present else f"0 AS {name}" for name in COLUMNS)
        cursor = conn.execute(
            f"SELECT {select} FROM usage WHERE time >= ? ORDER BY time", (since,))
        return [dict(zip(COLUMNS, row, strict=True)) for row in cursor]
    finally:
        conn.close()
