"""Expired responses are pruned while the store runs, by its background task, and a store
that never stored anything still leaves no file behind."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from babelgate.storage.responses import DAY, ResponseStore, StoredResponse


def record(rid: str, created_at: float) -> StoredResponse:
    return StoredResponse(rid, created_at, [], {"id": rid, "status": "completed", "output": []})


def ids(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM responses ORDER BY id")]
    finally:
        conn.close()


async def test_expired_records_go_while_running(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = ResponseStore(path, ttl_days=1.0 / DAY, prune_every=0.05)  # one second
    assert await store.start() == 0
    store.put(record("resp_soon", time.time()))
    store.put(record("resp_later", time.time() + 3600))  # stays: an hour from expiring
    await store.flush()
    assert ids(path) == ["resp_later", "resp_soon"]
    deadline = time.monotonic() + 10
    while "resp_soon" in ids(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert ids(path) == ["resp_later"]  # gone from the file, not only hidden
    assert await store.get("resp_later", None) is not None  # the store keeps serving
    await store.close()


async def test_the_pruner_opens_no_file(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    store = ResponseStore(path, prune_every=0.01)
    await store.start()
    await asyncio.sleep(0.1)  # several rounds of the pruner
    await store.close()
    assert not path.exists()
