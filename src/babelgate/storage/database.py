"""One interface to the gateway's database, whichever it is (SQLite or PostgreSQL).

What this module promises:
- `open_database(url)` returns the `Database` for a `StorageURL`; nothing connects before
  `open()` (PostgreSQL) or the first operation (SQLite, which creates its file, mode 0600,
  only then, so a gateway that never stores anything leaves no file behind).
- SQL is written once, with `?` placeholders and portable SQL (`IS NOT DISTINCT FROM`, not
  SQLite's `IS`); the PostgreSQL backend rewrites the placeholders to `$1, $2, ...`.
- Operations are issued when they are called, not when awaited, and run one after another in
  that order: `db.execute(write)` then `db.fetch(read)` reads the write, even when the first
  future is not awaited (a put queued off the request path, then a delete).
- Nothing here blocks the event loop: SQLite runs on one thread of its own, PostgreSQL
  through asyncpg.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .url import Dialect, StorageURL

Row = tuple[Any, ...]


class Database(ABC):
    dialect: Dialect
    # What the driver raises for a broken constraint (a unique name taken meanwhile).
    integrity_errors: tuple[type[Exception], ...] = ()
    # What the driver raises for any failure of the database (to retry or report).
    errors: tuple[type[Exception], ...] = ()

    def __init__(self, url: StorageURL) -> None:
        self.url = url

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (PostgreSQL); SQLite connects lazily."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether there is a database to read: False only for a SQLite file never created."""

    @abstractmethod
    def execute(self, sql: str, *args: Any) -> asyncio.Future[int]:
        """Run one statement; the future gives the number of rows it changed."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> asyncio.Future[None]:
        """Run one statement for each row, in one transaction."""

    def executemany_from_thread(self, sql: str, rows: Sequence[Sequence[Any]],
                                loop: asyncio.AbstractEventLoop | None) -> None:
        """`executemany`, called from a thread that is not the event loop's (a batch
        writer's), returning once it is done. By default through `loop`, the event loop
        the database runs on; SQLite hands it to its own thread instead."""
        if loop is None:
            raise RuntimeError(f"{self.url}: no event loop to write through")

        async def run() -> None:
            await self.executemany(sql, rows)

        asyncio.run_coroutine_threadsafe(run(), loop).result()

    def copy_from_thread(self, table: str, columns: Sequence[str],
                         rows: Sequence[Sequence[Any]],
                         loop: asyncio.AbstractEventLoop | None) -> None:
        """`rows` (values in `columns` order) into `table`, from a batch writer's thread as
        `executemany_from_thread`, all or none. By default one INSERT per row in one
        transaction; PostgreSQL copies them (COPY) in one statement."""
        placeholders = ", ".join("?" for _ in columns)
        self.executemany_from_thread(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows, loop)

    @abstractmethod
    def fetch(self, sql: str, *args: Any) -> asyncio.Future[list[Row]]:
        """The rows of one query."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def has_table(self, name: str) -> bool:
        if not self.exists():
            return False
        if self.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = "SELECT 1 FROM information_schema.tables WHERE table_name = ?"
        return await self.fetchone(sql, name) is not None

    @abstractmethod
    async def close(self) -> None:
        """Finish what was issued, then close."""


def open_database(url: StorageURL) -> Database:
    """The database at `url` (not yet connected)."""
    if url.dialect == "sqlite":
        from .sqlite import SqliteDatabase

        return SqliteDatabase(url)
    from .postgres import PostgresDatabase  # asyncpg is imported only for PostgreSQL

    return PostgresDatabase(url)
