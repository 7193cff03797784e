"""ResponseStore: migrations, put/get through memory and disk, TTL, deletes, many tasks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from babelgate.storage.migrations import MIGRATIONS, migrate
from babelgate.storage.responses import DAY, ResponseStore, StoredResponse, default_db_path

INPUT = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]
REASONING = {"id": "rs_1", "type": "reasoning", "summary": [],
             "encrypted_content": "bgc1.eyJwIjoiYW50aHJvcGljIn0.c2lnbmF0dXJl"}
CALL = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
        "name": "get_weather", "arguments": '{"city":"Paris"}'}


def record(rid: str, created_at: float | None = None) -> StoredResponse:
    response = {"id": rid, "object": "response", "status": "completed",
                "output": [REASONING, CALL]}
    return StoredResponse(rid, time.time() if created_at is None else created_at,
                          INPUT, response)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResponseStore]:
    s = ResponseStore(tmp_path / "sub" / "babelgate.db")
    yield s
    await s.close()


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    names = [name for name, _ in MIGRATIONS]
    assert names == sorted(names) and names[0] == "m001_responses"
    assert migrate(conn) == names
    assert migrate(conn) == []  # a second start applies nothing
    recorded = [r[0] for r in conn.execute("SELECT name FROM schema_version ORDER BY rowid")]
    assert recorded == names
    columns = [r[1] for r in conn.execute("PRAGMA table_info(responses)")]
    assert columns == ["id", "created_at", "input", "response", "previous", "owner", "tools"]


def test_a_failed_migration_is_not_recorded(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    conn.execute("CREATE TABLE responses (x)")  # makes m001's CREATE TABLE fail
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert list(conn.execute("SELECT name FROM schema_version")) == []


def test_default_path_follows_xdg(tmp_path: Path) -> None:
    assert default_db_path({"XDG_DATA_HOME": str(tmp_path)}) == (
        tmp_path / "babelgate" / "babelgate.db"
    )
    assert default_db_path({}).parts[-4:] == (".local", "share", "babelgate", "babelgate.db")


async def test_put_is_visible_at_once_and_then_on_disk(store: ResponseStore) -> None:
    store.put(record("resp_a"))
    got = await store.get("resp_a", None)  # no await between put and get: served from memory
    assert got is not None and got.output == [REASONING, CALL]
    await store.flush()
    assert store.pending == {}
    again = await store.get("resp_a", None)
    assert again is not None
    assert again.input == INPUT
    # encrypted reasoning survives the disk byte for byte
    assert again.output[0]["encrypted_content"] == REASONING["encrypted_content"]
    assert await store.get("resp_missing", None) is None


async def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.db"
    first = ResponseStore(path)
    first.put(record("resp_kept"))
    await first.close()
    second = ResponseStore(path)
    assert await second.start() == 0
    got = await second.get("resp_kept", None)
    await second.close()
    assert got is not None and got.response["id"] == "resp_kept"
    mode = path.stat().st_mode & 0o777
    assert mode == 0o600


async def test_no_file_until_something_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    s = ResponseStore(path)
    assert await s.start() == 0
    await s.close()
    assert not path.exists()


async def test_ttl_prunes_at_start_and_hides_expired(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.db"
    s = ResponseStore(path, ttl_days=30)
    s.put(record("resp_old", time.time() - 31 * DAY))
    s.put(record("resp_new", time.time() - 29 * DAY))
    await s.flush()
    assert await s.get("resp_old", None) is None  # expired but not yet pruned: not served
    await s.close()
    restarted = ResponseStore(path, ttl_days=30)
    assert await restarted.start() == 1
    assert await restarted.get("resp_new", None) is not None
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT id FROM responses")] == ["resp_new"]
    conn.close()
    await restarted.close()


async def test_delete_wins_over_a_queued_write(store: ResponseStore) -> None:
    store.put(record("resp_d"))
    assert await store.delete("resp_d", None) is True
    await store.flush()
    assert await store.get("resp_d", None) is None
    assert await store.delete("resp_d", None) is False


async def test_many_tasks_put_and_get(store: ResponseStore) -> None:
    async def turn(i: int) -> str | None:
        store.put(record(f"resp_{i}"))
        await asyncio.sleep(0)
        got = await store.get(f"resp_{i}", None)
        return None if got is None else got.id

    ids = await asyncio.gather(*(turn(i) for i in range(200)))
    assert ids == [f"resp_{i}" for i in range(200)]
    await store.flush()
    assert store.pending == {}
    found = await asyncio.gather(*(store.get(f"resp_{i}", None) for i in range(0, 200, 7)))
    assert all(f is not None for f in found)
