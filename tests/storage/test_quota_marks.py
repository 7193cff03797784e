"""Quota marks in the database, on SQLite and PostgreSQL: written in order, read back by the
next process (or the other gateway on the same database), per provider and per key of its
`api_keys` (named by id); no SQLite file is made by loading; a database that held marks before
marks were kept per key keeps them as provider marks, and one that named keys by their place
in the list keeps its provider marks and drops those of keys (no key is known there)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.pg_support import fresh_database

from babelgate.storage.database import open_database
from babelgate.storage.migrations import (
    MIGRATIONS,
    Migration,
    m007_quota_marks_per_key,
    m009_quota_marks_by_key_id,
    statements,
)
from babelgate.storage.quota_marks import PROVIDER, QuotaStore
from babelgate.storage.url import StorageURL


@pytest.fixture(params=("sqlite", "postgresql"))
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageURL]:
    if request.param == "sqlite":
        yield StorageURL.sqlite(tmp_path / "state.db")
        return
    async with fresh_database() as dsn:
        yield StorageURL.parse(dsn)


async def test_marks_survive_a_new_store_on_the_same_database(url: StorageURL) -> None:
    db = open_database(url)
    await db.open()
    store = QuotaStore(db)
    assert await store.load() == []
    if url.path is not None:
        assert not url.path.exists()  # loading makes no file
    store.save("claude-max", PROVIDER, 100.0, 200.0, "plan usage limit reached")
    store.save("deepseek", PROVIDER, 110.0, 210.0, "balance")
    store.save("deepseek", "5e2a0c1d9b7f", 111.0, 211.0, "key #1 used up")
    store.save("claude-max", PROVIDER, 120.0, 300.0, "again")  # replaces the first
    store.delete("deepseek", PROVIDER)  # the provider's own mark; its key's stays
    await store.flush()
    await db.close()

    db = open_database(url)
    await db.open()
    again = QuotaStore(db)
    assert sorted(await again.load()) == [
        ("claude-max", "", 120.0, 300.0, "again"),
        ("deepseek", "5e2a0c1d9b7f", 111.0, 211.0, "key #1 used up")]
    again.delete("deepseek")  # a provider and all its keys
    assert await again.load() == [("claude-max", "", 120.0, 300.0, "again")]
    again.delete(None)
    assert await again.load() == []
    await db.close()


def database_before(path: Path, name: str, fn: Migration) -> sqlite3.Connection:
    """A SQLite database as a release without migration `name` left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (name TEXT PRIMARY KEY, applied_at REAL)")
    for done, earlier in MIGRATIONS[:MIGRATIONS.index((name, fn))]:
        for sql, params in statements(earlier, "sqlite"):
            conn.execute(sql, params)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (done,))
    return conn


async def test_marks_from_before_keys_had_marks_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = database_before(path, "m007_quota_marks_per_key", m007_quota_marks_per_key)
    conn.execute("INSERT INTO quota_marks VALUES ('p', 1.0, 2.0, 'r')")
    conn.close()
    db = open_database(StorageURL.sqlite(path))
    await db.open()
    assert await QuotaStore(db).load() == [("p", "", 1.0, 2.0, "r")]
    await db.close()


async def test_marks_of_keys_by_place_go_and_provider_marks_stay(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = database_before(path, "m009_quota_marks_by_key_id", m009_quota_marks_by_key_id)
    conn.execute("INSERT INTO quota_marks VALUES ('p', -1, 1.0, 2.0, 'r')")
    conn.execute("INSERT INTO quota_marks VALUES ('p', 0, 1.0, 3.0, 'key #0')")
    conn.close()
    db = open_database(StorageURL.sqlite(path))
    await db.open()
    assert await QuotaStore(db).load() == [("p", "", 1.0, 2.0, "r")]
    await db.close()
