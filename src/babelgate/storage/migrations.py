"""Ordered, named schema migrations, the same on SQLite and PostgreSQL.

What this module promises:
- A migration is a function registered with `@migration`; it receives a `Schema` and calls
  `schema.execute(sql)` for each statement. It runs once, in the order of `MIGRATIONS`,
  inside its own transaction, and is recorded by name in `schema_version`. A failure leaves
  it unrecorded (and its statements undone).
- The same function builds the schema on both databases: `schema.dialect` says which, and
  `schema.FLOAT`, `schema.BLOB` name the column types that differ (SQLite's REAL is a
  double; PostgreSQL's is not, so timestamps are DOUBLE PRECISION there).
- `migrate(conn)` applies what a SQLite connection lacks (synchronously: the SQLite backend
  runs it on its own thread); `migrate_postgres(conn)` does the same on an asyncpg
  connection. Several gateways starting at once on one database apply each migration once
  (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock).
- Migrations are never edited or reordered once released: a change of schema is a new
  function appended to the list. To add a table, write one function here; every backend,
  every test of migrations from empty and `babelgate keys`/`usage` get it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .url import Dialect

if TYPE_CHECKING:
    import asyncpg


@dataclass(slots=True)
class Schema:
    """What a migration writes to: statements are collected, then run by the backend in one
    transaction."""

    dialect: Dialect
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.statements.append((sql, params))

    @property
    def FLOAT(self) -> str:  # reads as a type name in the SQL it builds
        return "REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION"

    @property
    def BLOB(self) -> str:
        return "BLOB" if self.dialect == "sqlite" else "BYTEA"


Migration = Callable[[Schema], None]
MIGRATIONS: list[tuple[str, Migration]] = []

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (name TEXT PRIMARY KEY, applied_at {float})"
)
# Any constant shared by every babelgate: the advisory lock that serialises migrations.
_PG_LOCK = 0x62616265  # "babe"


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, under its function name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def statements(fn: Migration, dialect: Dialect) -> list[tuple[str, tuple[Any, ...]]]:
    schema = Schema(dialect)
    fn(schema)
    return schema.statements


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply what the SQLite database lacks; `conn` must be in autocommit mode
    (isolation_level=None). Returns the names applied."""
    conn.execute(_VERSION_TABLE.format(float="REAL"))
    done = {row[0] for row in conn.execute("SELECT name FROM schema_version")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        # One transaction per migration (autocommit mode: DDL is transactional only inside
        # an explicit BEGIN). IMMEDIATE takes the write lock first, so a second process
        # migrating the same file waits, then sees the migration recorded.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_version WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            for sql, params in statements(fn, "sqlite"):
                conn.execute(sql, params)
            conn.execute(
                "INSERT INTO schema_version (name, applied_at) VALUES (?, ?)", (name, time.time())
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied


async def migrate_postgres(conn: asyncpg.Connection) -> list[str]:
    """Apply what the PostgreSQL database lacks. Returns the names applied."""
    applied = []
    async with conn.transaction():
        # Two gateways starting together: the second waits here until the first is done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK)
        await conn.execute(_VERSION_TABLE.format(float="DOUBLE PRECISION"))
        done = {row[0] for row in await conn.fetch("SELECT name FROM schema_version")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            async with conn.transaction():  # a savepoint: one migration, all or nothing
                for sql, params in statements(fn, "postgresql"):
                    await conn.execute(sql, *params)
                await conn.execute(
                    "INSERT INTO schema_version (name, applied_at) VALUES ($1, $2)",
                    name, time.time(),
                )
            applied.append(name)
    return applied


@migration
def m001_responses(db: Schema) -> None:
    # input: the conversation up to this response (JSON array of Responses input items);
    # response: the response object as the client received it (its `output` continues it).
    db.execute(
        f"""CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            created_at {db.FLOAT} NOT NULL,
            input {db.BLOB} NOT NULL,
            response {db.BLOB} NOT NULL
        )"""
    )
    db.execute("CREATE INDEX responses_created_at ON responses (created_at)")


@migration
def m002_response_turns(db: Schema) -> None:
    # A row holds one turn: its own new input and the id of the response it continued, so a
    # conversation is stored once, not again in every later turn. A row written before this
    # migration carries its whole history in `input`; with no `previous` it reads back as
    # the first turn of its own conversation, which gives the same history.
    db.execute("ALTER TABLE responses ADD COLUMN previous TEXT")


@migration
def m003_response_owner(db: Schema) -> None:
    # Whose response a row is: the caller's gateway key id, or NULL for the open gateway
    # without keys (every row stored before this migration).
    db.execute("ALTER TABLE responses ADD COLUMN owner TEXT")


@migration
def m004_usage(db: Schema) -> None:
    # One row per finished upstream attempt (books/record.py UsageRecord, same names and
    # order). Portable SQL: DOUBLE PRECISION for times and costs (PostgreSQL's REAL is 4
    # bytes, too coarse for unix seconds); no generated id, so rows insert alike everywhere.
    db.execute(
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
    db.execute("CREATE INDEX usage_time ON usage (time)")


@migration
def m005_quota_marks(db: Schema) -> None:
    # One row per provider whose quota is used up: when it was refused (since) and when it
    # comes back (resets_at), Unix seconds; reason: what the upstream said, key masked.
    # Portable SQL: DOUBLE PRECISION for times (PostgreSQL's REAL is too coarse for them).
    db.execute(
        """CREATE TABLE quota_marks (
            provider TEXT PRIMARY KEY,
            since DOUBLE PRECISION NOT NULL,
            resets_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL
        )"""
    )


@migration
def m006_keys(db: Schema) -> None:
    # Gateway keys (storage/keys.py). `hash` is the SHA-256 of the whole key (keys are 256
    # random bits, so no salt or slow hash is needed); `prefix` is the part shown in
    # listings. `scopes` is a JSON array of model globs (empty: every model). `version`
    # grows with every change, so other instances see a revoke by polling max(version).
    db.execute(
        f"""CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            scopes TEXT NOT NULL,
            rpm BIGINT,
            tpm BIGINT,
            concurrency BIGINT,
            budget {db.FLOAT},
            budget_period TEXT,
            expires_at {db.FLOAT},
            admin INTEGER NOT NULL DEFAULT 0,
            created_at {db.FLOAT} NOT NULL,
            revoked_at {db.FLOAT},
            version BIGINT NOT NULL
        )"""
    )
    # A name is unique among the keys not revoked: a revoked name can be given again.
    db.execute("CREATE UNIQUE INDEX keys_live_name ON keys (name) WHERE revoked_at IS NULL")


@migration
def m007_quota_marks_per_key(db: Schema) -> None:
    # Quota marks per key of a provider's `api_keys` too: `key_index` is the key's place in
    # that list, -1 for the provider as a whole (never the key itself). The primary key
    # becomes (provider, key_index), so the table is rebuilt; the marks it held are kept as
    # provider marks.
    db.execute(
        """CREATE TABLE quota_marks_by_key (
            provider TEXT NOT NULL,
            key_index INTEGER NOT NULL,
            since DOUBLE PRECISION NOT NULL,
            resets_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (provider, key_index)
        )"""
    )
    db.execute(
        "INSERT INTO quota_marks_by_key (provider, key_index, since, resets_at, reason) "
        "SELECT provider, -1, since, resets_at, reason FROM quota_marks"
    )
    db.execute("DROP TABLE quota_marks")
    db.execute("ALTER TABLE quota_marks_by_key RENAME TO quota_marks")


@migration
def m008_claude_code(db: Schema) -> None:
    # The claude-code provider's projects and sessions (babelgate/claude_code/store.py).
    # A project is a working directory: `created` says the gateway made it (and may delete
    # it). A session is a conversation the CLI keeps (`cli_session` is the CLI's own id,
    # resumed with --resume), with its running totals; its messages are rows of their own,
    # so a turn adds two rows instead of rewriting the history.
    db.execute(
        f"""CREATE TABLE claude_projects (
            id TEXT PRIMARY KEY,
            owner TEXT,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            created INTEGER NOT NULL,
            created_at {db.FLOAT} NOT NULL
        )"""
    )
    db.execute(
        f"""CREATE TABLE claude_sessions (
            id TEXT PRIMARY KEY,
            owner TEXT,
            cli_session TEXT NOT NULL,
            model TEXT NOT NULL,
            project_id TEXT,
            turns BIGINT NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            cost_usd {db.FLOAT} NOT NULL,
            created_at {db.FLOAT} NOT NULL,
            updated_at {db.FLOAT} NOT NULL
        )"""
    )
    db.execute(
        f"""CREATE TABLE claude_session_messages (
            session_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at {db.FLOAT} NOT NULL,
            PRIMARY KEY (session_id, seq)
        )"""
    )


@migration
def m009_quota_marks_by_key_id(db: Schema) -> None:
    # A key of `api_keys` is named by `key_id`, a short hash of it (routing/policy.py), instead
    # of its place in the list: reordering or editing the list must not move a key's mark to
    # another key. '' is the provider as a whole. The marks of the provider as a whole are
    # kept; those of single keys cannot be matched to a key here (the table never held the
    # keys) and are dropped: such a key is tried once more and marked again if still used up.
    db.execute(
        """CREATE TABLE quota_marks_by_id (
            provider TEXT NOT NULL,
            key_id TEXT NOT NULL,
            since DOUBLE PRECISION NOT NULL,
            resets_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (provider, key_id)
        )"""
    )
    db.execute(
        "INSERT INTO quota_marks_by_id (provider, key_id, since, resets_at, reason) "
        "SELECT provider, '', since, resets_at, reason FROM quota_marks WHERE key_index = -1"
    )
    db.execute("DROP TABLE quota_marks")
    db.execute("ALTER TABLE quota_marks_by_id RENAME TO quota_marks")


@migration
def m010_usage_estimated(db: Schema) -> None:
    # 1: some token count of the row is babelgate's estimate, the upstream reported none
    # (books/record.py). Rows stored before this migration were not marked.
    db.execute("ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0")


@migration
def m011_response_tools(db: Schema) -> None:
    # The tools a stored response echoes (a coding agent's, ~10 KB, the same every turn),
    # kept once per distinct list and named by its digest from `responses.tools`. NULL there:
    # a response without tools, or one stored before this migration, whose `response` still
    # holds its own copy (read back as it is). The index lets a sweep find unused lists.
    db.execute(
        f"""CREATE TABLE response_tools (
            digest TEXT PRIMARY KEY,
            tools {db.BLOB} NOT NULL
        )"""
    )
    db.execute("ALTER TABLE responses ADD COLUMN tools TEXT")
    db.execute("CREATE INDEX responses_tools ON responses (tools)")
