"""Ordered, named schema migrations for babelgate's SQLite database.

What this module promises:
- `migrate(conn)` brings any database (new or older) to the current schema and returns the
  names it applied. Each migration runs once, in the order of `MIGRATIONS`, inside its own
  transaction, and is recorded by name in `schema_version`.
- Migrations are never edited or reordered once released: a change of schema is a new
  function appended to the list.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, under its function name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply what `conn` lacks; `conn` must be in autocommit mode (isolation_level=None)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (name TEXT PRIMARY KEY, applied_at REAL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM schema_version")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        # One transaction per migration (the connection is in autocommit mode, so DDL is
        # transactional only inside an explicit BEGIN): a failure leaves it unrecorded.
        # IMMEDIATE takes the write lock first, so two connections opening a new file at once
        # (the response and quota stores) wait for each other; the second then finds the
        # migration done.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_version WHERE name = ?", (name,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            fn(conn)
            conn.execute(
                "INSERT INTO schema_version (name, applied_at) VALUES (?, ?)", (name, time.time())
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied


@migration
def m001_responses(conn: sqlite3.Connection) -> None:
    # input: the conversation up to this response (JSON array of Responses input items);
    # response: the response object as the client received it (its `output` continues it).
    conn.execute(
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            input BLOB NOT NULL,
            response BLOB NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX responses_created_at ON responses (created_at)")


@migration
def m002_response_turns(conn: sqlite3.Connection) -> None:
    # A row holds one turn: its own new input and the id of the response it continued, so a
    # conversation is stored once, not again in every later turn. A row written before this
    # migration carries its whole history in `input`; with no `previous` it reads back as
    # the first turn of its own conversation, which gives the same history.
    conn.execute("ALTER TABLE responses ADD COLUMN previous TEXT")


@migration
def m003_response_owner(conn: sqlite3.Connection) -> None:
    # Whose response a row is: the caller's gateway key id, or NULL for the open gateway
    # without keys (every row stored before this migration).
    conn.execute("ALTER TABLE responses ADD COLUMN owner TEXT")


@migration
def m004_usage(conn: sqlite3.Connection) -> None:
    # One row per finished upstream attempt (books/record.py UsageRecord, same names and
    # order). Portable SQL: DOUBLE PRECISION for times and costs (PostgreSQL's REAL is 4
    # bytes, too coarse for unix seconds); no generated id, so rows insert alike everywhere.
    conn.execute(
        """CREATE TABLE usage (
            time DOUBLE PRECISION NOT NULL,
            request_id TEXT NOT NULL,
            key TEXT,
            client TEXT NOT NULL,
            protocol TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            target_model TEXT NOT NULL,
            stream INTEGER NOT NULL,
            status INTEGER NOT NULL,
            error_kind TEXT,
            rule TEXT,
            route TEXT,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION NOT NULL,
            ttft_ms DOUBLE PRECISION,
            final INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX usage_time ON usage (time)")


@migration
def m005_quota_marks(conn: sqlite3.Connection) -> None:
    # One row per provider whose quota is used up: when it was refused (since) and when it
    # comes back (resets_at), Unix seconds; reason: what the upstream said, key masked.
    # Portable SQL: DOUBLE PRECISION for times (PostgreSQL's REAL is too coarse for them).
    conn.execute(
        """CREATE TABLE quota_marks (
            provider TEXT PRIMARY KEY,
            since DOUBLE PRECISION NOT NULL,
            resets_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
