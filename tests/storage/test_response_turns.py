"""A conversation stored turn by turn: the chain walk, its bounds, its size on disk, the
migration from whole-history rows, and pruning that keeps what a live turn needs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from babelgate.storage import migrations
from babelgate.storage.responses import DAY, JSON, ResponseStore, StoredResponse


def user(text: str) -> JSON:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def answer(text: str) -> JSON:
    return {"type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def turn(rid: str, previous: str | None, text: str, created_at: float | None = None,
         reply: str = "ok") -> StoredResponse:
    response = {"id": rid, "object": "response", "status": "completed", "output": [answer(reply)]}
    return StoredResponse(rid, time.time() if created_at is None else created_at,
                          [user(text)], response, previous)


def texts(turns: list[StoredResponse] | None) -> list[str]:
    assert turns is not None
    return [t.input[0]["content"][0]["text"] for t in turns]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResponseStore]:
    s = ResponseStore(tmp_path / "t.db")
    yield s
    await s.close()


async def test_chain_walks_back_through_memory_and_disk(store: ResponseStore) -> None:
    store.put(turn("resp_1", None, "one"))
    store.put(turn("resp_2", "resp_1", "two"))
    await store.flush()  # on disk
    store.put(turn("resp_3", "resp_2", "three"))  # still pending
    assert "resp_3" in store.pending
    assert texts(await store.chain("resp_3", None)) == ["one", "two", "three"]
    assert texts(await store.chain("resp_2", None)) == ["one", "two"]
    await store.flush()
    chain = await store.chain("resp_3", None)
    assert texts(chain) == ["one", "two", "three"]
    assert chain is not None and [t.previous for t in chain] == [None, "resp_1", "resp_2"]
    assert await store.chain("resp_missing", None) is None


async def test_chain_is_bounded(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "b.db", max_turns=5)
    previous = None
    for i in range(8):
        store.put(turn(f"resp_{i}", previous, str(i)))
        previous = f"resp_{i}"
    await store.flush()
    chain = await store.chain("resp_7", None)
    assert texts(chain) == ["3", "4", "5", "6", "7"]  # the newest five
    assert chain is not None and chain[0].previous == "resp_2"  # more turns exist before
    # A loop of ids (an upstream reusing an id) ends at the bound too.
    store.put(turn("resp_x", "resp_y", "x"))
    store.put(turn("resp_y", "resp_x", "y"))
    await store.flush()
    looped = await store.chain("resp_x", None)
    assert looped is not None and len(looped) == 5
    await store.close()


def disk_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_a_100_turn_chain_of_5_kb_turns_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "size.db"
    store = ResponseStore(path)
    previous = None
    for i in range(100):
        store.put(turn(f"resp_{i:03}", previous, f"{i:03} " + "x" * 5000))
        previous = f"resp_{i:03}"
    await store.flush()
    chain = await store.chain(previous, None)
    assert chain is not None and len(chain) == 100
    assert texts(chain)[0].startswith("000 ") and texts(chain)[-1].startswith("099 ")
    await store.close()
    size = disk_bytes(path)
    # 100 x 5 KB of content is 0.5 MB; whole-history rows took ~26 MB for this chain.
    print(f"100 turns of 5 KB: {size / 1e6:.2f} MB on disk")
    assert size < 1_000_000


def old_database(path: Path, history: list[JSON], response: JSON) -> None:
    """A database as m001 left it, with a row that carries its whole history."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (name TEXT PRIMARY KEY, applied_at REAL)")
    for sql, params in migrations.statements(migrations.m001_responses, "sqlite"):
        conn.execute(sql, params)
    conn.execute("INSERT INTO schema_version VALUES ('m001_responses', 0)")
    conn.execute("INSERT INTO responses VALUES (?, ?, ?, ?)",
                 (response["id"], time.time(), orjson.dumps(history), orjson.dumps(response)))
    conn.close()


async def test_an_old_whole_history_row_still_continues(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = turn("resp_old", None, "unused")
    history = [user("one"), answer("1"), user("two")]
    old_database(path, history, first.response)
    store = ResponseStore(path)
    assert await store.start() == 0
    chain = await store.chain("resp_old", None)
    assert chain is not None and len(chain) == 1 and chain[0].input == history
    store.put(turn("resp_new", "resp_old", "three"))
    await store.close()

    reopened = ResponseStore(path)
    chain = await reopened.chain("resp_new", None)
    assert chain is not None
    items = [item for t in chain for item in (*t.input, *t.output)]
    assert items == [user("one"), answer("1"), user("two"), answer("ok"), user("three"),
                     answer("ok")]
    await reopened.close()
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM schema_version ORDER BY rowid")]
    conn.close()
    assert names == [name for name, _ in migrations.MIGRATIONS]


async def test_prune_keeps_the_turns_a_live_response_needs(store: ResponseStore) -> None:
    now = time.time()
    store.put(turn("resp_a", None, "a", now - 40 * DAY))
    store.put(turn("resp_b", "resp_a", "b", now - 35 * DAY))
    store.put(turn("resp_c", "resp_b", "c", now))
    store.put(turn("resp_lone", None, "lone", now - 31 * DAY))
    store.put(turn("resp_dead1", None, "d1", now - 33 * DAY))
    store.put(turn("resp_dead2", "resp_dead1", "d2", now - 32 * DAY))
    await store.flush()
    assert await store.prune() == 3  # lone and the expired chain d1 <- d2
    assert await store.get("resp_a", None) is None  # expired: not served, nor continued from
    assert await store.chain("resp_b", None) is None
    assert texts(await store.chain("resp_c", None)) == ["a", "b", "c"]  # but kept for c
    assert await store.delete("resp_c", None)
    assert await store.prune() == 2
    conn = sqlite3.connect(store.path)
    assert list(conn.execute("SELECT id FROM responses")) == []
    conn.close()
