"""Quota marks on disk: which providers are used up, and until when, across restarts.

What this module promises:
- `load()` returns every stored mark as (provider, since, resets_at, reason); it runs once at
  start-up, on the caller's thread, and touches nothing when the database file does not
  exist yet.
- `save()` and `delete()` never block the caller: they queue the statement to the store's
  own thread, which owns its connection and runs them in the order they were issued (a
  delete after a save removes it). A failed write is logged; the mark in memory stands.
- Plain SQL on plain values (TEXT, REAL): nothing here knows what a quota is for.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .migrations import migrate

log = logging.getLogger("babelgate")

Row = tuple[str, float, float, str]

_SAVE = """
INSERT INTO quota_marks (provider, since, resets_at, reason) VALUES (?, ?, ?, ?)
ON CONFLICT (provider) DO UPDATE SET since = excluded.since, resets_at = excluded.resets_at,
    reason = excluded.reason
"""


class QuotaStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="babelgate-quota")
        self._conn: sqlite3.Connection | None = None  # used only on self._thread
        self._pending: set[Future[None]] = set()

    def load(self) -> list[Row]:
        if not self.path.exists():
            return []
        return self._thread.submit(self._load).result()

    def save(self, provider: str, since: float, resets_at: float, reason: str) -> None:
        self._queue(self._save, provider, since, resets_at, reason)

    def delete(self, provider: str | None) -> None:
        self._queue(self._delete, provider)

    def flush(self) -> None:
        """Wait for the queued writes (tests, shutdown); blocks the caller."""
        for future in list(self._pending):
            future.exception()

    def close(self) -> None:
        """Finish queued writes and close the connection (blocks while they finish)."""
        self._thread.submit(self._close)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------ the store's thread
    def _queue(self, fn: Callable[..., None], *args: object) -> None:
        future = self._thread.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("could not store a quota mark: %s", future.exception())

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")  # the response store shares the file
            migrate(conn)
            self._conn = conn
        return self._conn

    def _load(self) -> list[Row]:
        rows = self._db().execute(
            "SELECT provider, since, resets_at, reason FROM quota_marks").fetchall()
        return [(str(p), float(s), float(r), str(why)) for p, s, r, why in rows]

    def _save(self, provider: str, since: float, resets_at: float, reason: str) -> None:
        self._db().execute(_SAVE, (provider, since, resets_at, reason))

    def _delete(self, provider: str | None) -> None:
        if provider is None:
            self._db().execute("DELETE FROM quota_marks")
        else:
            self._db().execute("DELETE FROM quota_marks WHERE provider = ?", (provider,))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
