"""The SQLite backend: one file, WAL, mode 0600, one thread that owns the only connection.

Every operation is submitted to that thread when it is called, so operations run in the
order they were issued and never block the event loop. The file is created (and migrated)
by the first operation, not before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .database import Database, Row
from .migrations import migrate
from .url import StorageURL

T = TypeVar("T")


class SqliteDatabase(Database):
    dialect = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    errors = (sqlite3.Error, OSError)

    def __init__(self, url: StorageURL, *, busy_timeout_ms: int = 5000) -> None:
        super().__init__(url)
        assert url.path is not None
        self.path: Path = url.path
        self.busy_timeout_ms = busy_timeout_ms  # how long to wait for another process's lock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="babelgate-db")
        self._conn: sqlite3.Connection | None = None  # used only on self._thread
        self._closed = False
        self._used = False  # an operation was issued: the file exists or is being created

    async def open(self) -> None:
        """Nothing to do: the file is created and migrated by the first operation."""

    def exists(self) -> bool:
        return self._used or self.path.exists()

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("the database is closed")
        self._used = True
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def execute(self, sql: str, *args: Any) -> asyncio.Future[int]:
        return self._submit(self._execute, sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> asyncio.Future[None]:
        return self._submit(self._executemany, sql, rows)

    def fetch(self, sql: str, *args: Any) -> asyncio.Future[list[Row]]:
        return self._submit(self._fetch, sql, args)

    def executemany_from_thread(self, sql: str, rows: Sequence[Sequence[Any]],
                                loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Straight to the database thread, with no event loop involved: the usage writer's
        batches share the one connection (and its set-up) with everything else."""
        if self._closed:
            raise RuntimeError("the database is closed")
        self._used = True
        self._thread.submit(self._executemany, sql, rows).result()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """`fn(connection)` on the database thread (for work no portable call expresses)."""
        return self._submit(lambda: fn(self._db()))

    async def close(self) -> None:
        if self._closed:
            return
        await self._submit(self._close)
        self._closed = True
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------ the database thread
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch(mode=0o600)  # keys' hashes, conversations, spend: private
        # Autocommit: each statement is atomic alone; migrations and executemany open their
        # own transactions.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process; a power loss may lose the last
        # commits, which for this state is the right trade for speed.
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        return conn

    def _execute(self, sql: str, args: Sequence[Any]) -> int:
        db = self._db()
        # `rowcount` is -1 for a statement that starts with WITH: count changes instead.
        before = db.total_changes
        db.execute(sql, args)
        return db.total_changes - before

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        db = self._db()
        db.execute("BEGIN")
        try:
            db.executemany(sql, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        return self._db().execute(sql, args).fetchall()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
