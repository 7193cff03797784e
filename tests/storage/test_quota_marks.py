"""Quota marks on disk: written in order, read back by the next process; no file is made by
loading; the same database file as the response store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from babelgate.storage.quota_marks import QuotaStore
from babelgate.storage.responses import ResponseStore, StoredResponse


def test_marks_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = QuotaStore(path)
    assert store.load() == [] and not path.exists()  # loading makes no file
    store.save("claude-max", 100.0, 200.0, "plan usage limit reached")
    store.save("deepseek", 110.0, 210.0, "balance")
    store.save("claude-max", 120.0, 300.0, "again")  # replaces the first
    store.delete("deepseek")
    store.close()

    again = QuotaStore(path)
    assert again.load() == [("claude-max", 120.0, 300.0, "again")]
    again.delete(None)
    again.close()
    assert QuotaStore(path).load() == []


async def test_the_response_store_and_the_quota_store_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    responses = ResponseStore(path)
    responses.put(StoredResponse("resp_1", 1e10, [], {"id": "resp_1"}))
    await responses.flush()
    quota = QuotaStore(path)
    quota.save("p", 1.0, 2.0, "r")
    quota.close()
    assert await responses.get("resp_1", None) is not None
    await responses.close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM schema_version")}
    assert "m005_quota_marks" in names and "m001_responses" in names
    assert QuotaStore(path).load() == [("p", 1.0, 2.0, "r")]
