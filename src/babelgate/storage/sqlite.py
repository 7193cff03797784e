"""The SQLite backend: one file, WAL, mode 0600, one thread that owns the only connection.

Every operation is submitted to that thread when it is called, so operations run in the
order they were issued and never block the event loop. The file is created (and migrated)
by the first operation, not before.

The thread takes operations from a queue and hands each result back to the event loop
that issued it with one `call_soon_threadsafe`: `run_in_executor` made a
concurrent.futures Future (a Condition and its lock), chained it to an asyncio one and
went through the executor's semaphore on both sides, ~140 K instructions under callgrind
for the keys' version query that runs twice a second (docs/benchmark.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
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
        # (work, the future to settle) for the database thread; None ends it.
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], _Settle] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
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
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put(lambda: fn(*args), _OnLoop(future))
        return future

    def _put(self, work: Callable[[], Any], settle: _Settle) -> None:
        if self._thread is None:
            self._start()
        self._queue.put((work, settle))

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                # A daemon: close() ends it after what was issued; a process that never
                # closes its database must not hang at exit on it.
                self._thread = threading.Thread(target=self._serve, name="babelgate-db",
                                                daemon=True)
                self._thread.start()

    def execute(self, sql: str, *args: Any) -> asyncio.Future[int]:
        return self._submit(self._execute, sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> asyncio.Future[None]:
        return self._submit(self._executemany, sql, rows)

    def fetch(self, sql: str, *args: Any) -> asyncio.Future[list[Row]]:
        return self._submit(self._fetch, sql, args)

    def executemany_from_thread(self, sql: str, rows: Sequence[Sequence[Any]],
                                loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Straight to the database thread, with no event loop involved."""
        self.executemany_each_from_thread(((sql, rows),))

    def executemany_each_from_thread(
        self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]
    ) -> None:
        """Each statement for each of its rows, all in one transaction, from a thread that
        is not the event loop's: the usage writer's batches share the one connection (and
        its set-up) with everything else."""
        if self._closed:
            raise RuntimeError("the database is closed")
        self._used = True
        done: Future[None] = Future()
        self._put(lambda: self._executemany_each(statements), _InThread(done))
        done.result()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """`fn(connection)` on the database thread (for work no portable call expresses)."""
        return self._submit(lambda: fn(self._db()))

    async def close(self) -> None:
        if self._closed:
            return
        await self._submit(self._close)
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()  # at once: the thread has nothing left but the end

    # ------------------------------------------------------------ the database thread
    def _serve(self) -> None:
        take = self._queue.get
        while (item := take()) is not None:
            work, settle = item
            try:
                result = work()
            except BaseException as exc:  # the caller's to handle, as it was raised
                settle.fail(exc)
            else:
                settle.done(result)

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
        self._executemany_each(((sql, rows),))

    def _executemany_each(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]
                          ) -> None:
        db = self._db()
        db.execute("BEGIN")
        try:
            for sql, rows in statements:
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


class _Settle:
    """Where the database thread puts an operation's outcome."""

    def done(self, result: Any) -> None:
        raise NotImplementedError

    def fail(self, exc: BaseException) -> None:
        raise NotImplementedError


class _OnLoop(_Settle):
    """An asyncio future, settled on its own loop."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def done(self, result: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self.future.get_loop().call_soon_threadsafe(_set_result, self.future, result)

    def fail(self, exc: BaseException) -> None:
        with contextlib.suppress(RuntimeError):
            self.future.get_loop().call_soon_threadsafe(_set_exception, self.future, exc)


class _InThread(_Settle):
    """A concurrent future another thread waits on (the usage writer's)."""

    __slots__ = ("future",)

    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    def done(self, result: Any) -> None:
        self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        self.future.set_exception(exc)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile (its caller went away)
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
