"""The storage layer on both backends, from empty: SQLite (a file of the test's own) and
PostgreSQL (a database of the test's own on the machine's server, tests/pg_support.py).
The same migrations, the same keys, the same stored Responses turns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.pg_support import fresh_database

from babelgate.storage.database import Database, open_database
from babelgate.storage.keys import (
    DuplicateKeyName,
    create_key,
    hash_key,
    keys_version,
    list_keys,
    revoke_key,
)
from babelgate.storage.migrations import MIGRATIONS
from babelgate.storage.responses import ResponseStore, StoredResponse
from babelgate.storage.url import StorageURL

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageURL]:
    if request.param == "sqlite":
        yield StorageURL.sqlite(tmp_path / "bg.db")
        return
    async with fresh_database() as dsn:
        yield StorageURL.parse(dsn)


@pytest.fixture
async def db(url: StorageURL) -> AsyncIterator[Database]:
    database = open_database(url)
    await database.open()
    yield database
    await database.close()


async def columns(db: Database, table: str) -> list[str]:
    if db.dialect == "sqlite":
        return [row[1] for row in await db.fetch(f"PRAGMA table_info({table})")]
    rows = await db.fetch("SELECT column_name FROM information_schema.columns "
                          "WHERE table_name = ? ORDER BY ordinal_position", table)
    return [row[0] for row in rows]


async def test_migrations_from_empty(db: Database, url: StorageURL) -> None:
    names = [name for name, _ in MIGRATIONS]
    applied = await db.fetch("SELECT name FROM schema_version ORDER BY applied_at, name")
    assert sorted(row[0] for row in applied) == sorted(names)
    assert await columns(db, "responses") == [
        "id", "created_at", "input", "response", "previous", "owner", "tools"]
    assert await columns(db, "response_tools") == ["digest", "tools"]
    assert await columns(db, "keys") == [
        "id", "name", "hash", "prefix", "scopes", "rpm", "tpm", "concurrency", "budget",
        "budget_period", "expires_at", "admin", "created_at", "revoked_at", "version"]
    await db.close()
    again = open_database(url)  # a restart applies nothing more
    await again.open()
    assert len(await again.fetch("SELECT name FROM schema_version")) == len(names)
    await again.close()


async def test_gateways_starting_together_migrate_once() -> None:
    async with fresh_database() as dsn:
        url = StorageURL.parse(dsn)
        several = [open_database(url) for _ in range(4)]
        await asyncio.gather(*(d.open() for d in several))
        rows = await several[0].fetch("SELECT name FROM schema_version")
        assert sorted(r[0] for r in rows) == sorted(name for name, _ in MIGRATIONS)
        for d in several:
            await d.close()


async def test_keys(db: Database) -> None:
    before = await keys_version(db)
    record, key = await create_key(db, "alice", now=1000.0, scopes=["claude-*", "gpt-5*"],
                                   rpm=60, tpm=400_000, concurrency=4, budget=20.0,
                                   budget_period="day", expires_at=2000.0)
    assert record.hash == hash_key(key) and key.startswith(record.prefix)
    assert await keys_version(db) != before
    with pytest.raises(DuplicateKeyName):
        await create_key(db, "alice", now=1001.0)
    admin, _ = await create_key(db, "ops", now=1002.0, admin=True)
    listed = await list_keys(db)
    assert listed == [record, admin]
    assert listed[0].allows("claude-sonnet-4-5") and not listed[0].allows("o3")
    assert listed[1].admin and listed[1].allows("anything")
    version = await keys_version(db)
    assert await revoke_key(db, "alice", now=1500.0)
    assert not await revoke_key(db, "alice", now=1501.0)
    assert await keys_version(db) != version
    assert [r.name for r in await list_keys(db)] == ["ops"]
    everything = await list_keys(db, revoked=True)
    assert [(r.name, r.revoked_at) for r in everything] == [("alice", 1500.0), ("ops", None)]
    fresh, _ = await create_key(db, "alice", now=1600.0)  # the name is free again
    assert fresh.id != record.id


def turn(rid: str, previous: str | None, owner: str | None, text: str) -> StoredResponse:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    response = {"id": rid, "object": "response", "output": [
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": f"re: {text}"}]}]}
    return StoredResponse(rid, time.time(), [item], response, previous, owner)


async def test_stored_responses(db: Database) -> None:
    store = ResponseStore(db, ttl_days=1)
    await store.start()
    store.put(turn("resp_1", None, "key_a", "one"))
    store.put(turn("resp_2", "resp_1", "key_a", "two"))
    store.put(turn("resp_x", None, None, "open"))
    await store.flush()
    assert not store.pending  # everything is in the database now
    chain = await store.chain("resp_2", "key_a")
    assert chain is not None and [t.id for t in chain] == ["resp_1", "resp_2"]
    assert chain[1].input[0]["content"][0]["text"] == "two"
    assert await store.chain("resp_2", "key_b") is None  # another owner's
    assert await store.chain("resp_2", None) is None
    got = await store.get("resp_x", None)
    assert got is not None and got.response["id"] == "resp_x"
    store.put(turn("resp_1", None, "key_b", "taken"))  # an id another owner has
    await store.flush()
    kept = await store.get("resp_1", "key_a")
    assert kept is not None and kept.input[0]["content"][0]["text"] == "one"
    store.put(turn("resp_3", "resp_2", "key_a", "three"))
    assert await store.delete("resp_3", "key_a")  # issued after its write: gone for good
    await store.flush()
    assert await store.get("resp_3", "key_a") is None
    old = StoredResponse("resp_old", time.time() - 3 * 86400, [], {"id": "resp_old"}, None, None)
    store.put(old)
    await store.flush()
    assert await store.prune() == 1
    assert await store.get("resp_1", "key_a") is not None
    await store.close()


TOOLS = [{"type": "function", "name": f"tool_{n}", "description": "d" * 600, "strict": False,
          "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}
         for n in range(10)]


def with_tools(record: StoredResponse, tools: list[Any]) -> StoredResponse:
    """`record` whose response echoes `tools`, as an OpenAI Responses response does."""
    return replace(record, response={**record.response, "tools": tools})


async def test_each_distinct_tool_list_is_stored_once(db: Database) -> None:
    store = ResponseStore(db, ttl_days=1)
    other = [{**TOOLS[0], "name": "other"}]
    store.put(with_tools(turn("resp_1", None, "key_a", "one"), TOOLS))
    store.put(with_tools(turn("resp_2", "resp_1", "key_a", "two"), TOOLS))
    store.put(with_tools(turn("resp_3", "resp_2", "key_a", "three"), other))
    store.put(with_tools(turn("resp_b", None, "key_b", "b"), TOOLS))  # another owner's, alike
    store.put(turn("resp_none", None, "key_a", "no tools"))
    await store.flush()
    assert not store.pending
    stored = await db.fetch("SELECT tools FROM response_tools")
    assert sorted((orjson.loads(row[0]) for row in stored), key=len) == [other, TOOLS]
    responses = await db.fetch("SELECT response FROM responses")
    assert all(b"tool_1" not in row[0] for row in responses)  # only in response_tools
    # Read back as the client got them: from the chain, one by one, for each owner.
    chain = await store.chain("resp_3", "key_a")
    assert chain is not None
    assert [t.response["tools"] for t in chain] == [TOOLS, TOOLS, other]
    assert [t.response["output"] for t in chain] == [
        turn(rid, None, None, text).response["output"]
        for rid, text in (("resp_1", "one"), ("resp_2", "two"), ("resp_3", "three"))]
    got = await store.get("resp_b", "key_b")
    assert got is not None and got.response == {**turn("resp_b", None, None, "b").response,
                                                 "tools": TOOLS}
    got = await store.get("resp_none", "key_a")
    assert got is not None and "tools" not in got.response
    # A list goes with the last response that names it, not before.
    assert await store.delete("resp_3", "key_a")
    assert len(await db.fetch("SELECT digest FROM response_tools")) == 1
    for rid, owner in (("resp_1", "key_a"), ("resp_2", "key_a"), ("resp_b", "key_b")):
        assert await store.delete(rid, owner)
    assert await db.fetch("SELECT digest FROM response_tools") == []
    # Pruned with the responses that named them.
    store.put(with_tools(replace(turn("resp_old", None, None, "old"),
                                 created_at=time.time() - 3 * 86400), TOOLS))
    await store.flush()
    assert len(await db.fetch("SELECT digest FROM response_tools")) == 1
    assert await store.prune() == 1
    assert await db.fetch("SELECT digest FROM response_tools") == []
    await store.close()


async def test_usage_rows_read_back_as_written(db: Database) -> None:
    """Batches of usage rows (PostgreSQL: one COPY per batch) read back as they were
    written: NULLs stay NULL, the flags are 0/1, costs and times keep their digits."""
    from babelgate.storage.usage import COLUMNS, UsageWriter, read_since_db

    now = time.time()
    rows = []
    for n in range(25):
        row: dict[str, Any] = dict.fromkeys(COLUMNS, 0)
        row.update(time=now + n / 1000, request_id=f"req_{n}", client="claude-code",
                   protocol="anthropic", endpoint="/v1/messages", model="m", provider="up",
                   target_model="tm", stream=n % 2 == 0, status=200, input_tokens=n,
                   output_tokens=2 * n, latency_ms=12.5 + n, final=True, estimated=False,
                   key=None if n % 3 else f"key_{n}", error_kind=None, rule=None,
                   route="default" if n % 5 else None, cost=None if n % 4 else 0.00123 * n,
                   ttft_ms=None if n % 2 else 3.25)
        rows.append(row)
    writer = UsageWriter(db, flush_interval=0.05, batch_rows=10)  # three batches
    for row in rows:
        writer.add(tuple(row[name] for name in COLUMNS))
    await asyncio.to_thread(writer.close)
    assert writer.written == 25 and writer.dropped == 0
    stored = await read_since_db(db, now - 1)
    wanted = [{**row, "stream": int(row["stream"]), "final": 1, "estimated": 0} for row in rows]
    assert stored == wanted
