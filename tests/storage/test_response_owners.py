"""Stored responses are scoped to their owner: another owner can neither read, delete nor
continue them, whether the record is still in memory or on disk."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from babelgate.protocols import get_codec
from babelgate.server.conversations import Conversations, PreviousResponseNotFound
from babelgate.storage.responses import ResponseStore, StoredResponse

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}


def of(owner: str | None, rid: str, previous: str | None = None) -> StoredResponse:
    response = {"id": rid, "object": "response", "status": "completed", "output": []}
    return StoredResponse(rid, time.time(), [USER], response, previous, owner)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResponseStore]:
    s = ResponseStore(tmp_path / "o.db")
    yield s
    await s.close()


@pytest.mark.parametrize("on_disk", [False, True])
async def test_owner_b_cannot_read_delete_or_continue_owner_a(
    store: ResponseStore, on_disk: bool
) -> None:
    store.put(of("key-a", "resp_a"))
    store.put(of(None, "resp_open"))
    if on_disk:
        await store.flush()
    assert await store.get("resp_a", "key-b") is None
    assert await store.get("resp_a", None) is None  # the open gateway is an owner too
    assert await store.get("resp_open", "key-a") is None
    assert await store.chain("resp_a", "key-b") is None
    assert await store.delete("resp_a", "key-b") is False
    conversations = Conversations(store)
    with pytest.raises(PreviousResponseNotFound) as caught:
        await conversations.prepare(
            {"model": "m", "input": "x", "previous_response_id": "resp_a"}, "key-b"
        )
    # Exactly what an id that never existed gets: 404, previous_response_not_found.
    assert caught.value.status == 404
    assert get_codec("openai-responses").render_error(caught.value) == {"error": {
        "message": "Previous response with id 'resp_a' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }}
    # Owner A still has all of it.
    got = await store.get("resp_a", "key-a")
    assert got is not None and got.owner == "key-a"
    out, recorder = await conversations.prepare(
        {"model": "m", "input": "x", "previous_response_id": "resp_a"}, "key-a"
    )
    assert len(out["input"]) == 2 and recorder is not None
    assert await store.delete("resp_a", "key-a") is True
    assert await store.get("resp_a", "key-a") is None


async def test_a_write_never_replaces_another_owners_row(store: ResponseStore) -> None:
    store.put(of("key-a", "resp_same"))
    await store.flush()
    store.put(of("key-b", "resp_same"))  # an id an upstream issued twice
    await store.flush()
    got = await store.get("resp_same", "key-a")
    assert got is not None and got.owner == "key-a"
    conn = sqlite3.connect(store.path)
    assert list(conn.execute("SELECT owner FROM responses")) == [("key-a",)]
    conn.close()


async def test_a_chain_stays_within_its_owner(store: ResponseStore) -> None:
    store.put(of("key-a", "resp_1"))
    store.put(of("key-b", "resp_2", previous="resp_1"))  # a link no request could make
    await store.flush()
    chain = await store.chain("resp_2", "key-b")
    assert chain is not None and [t.id for t in chain] == ["resp_2"]
    assert chain[0].previous == "resp_1"  # broken for key-b: A's turn is not its history
    with pytest.raises(PreviousResponseNotFound):
        await Conversations(store).prepare(
            {"model": "m", "input": "x", "previous_response_id": "resp_2"}, "key-b"
        )


async def test_a_response_json_cannot_encode_is_not_stored_and_raises_nothing(
        tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "deep.db")
    deep: list[object] = []
    for _ in range(300):  # past orjson's 255 levels
        deep = [deep]
    store.put(StoredResponse("resp_deep", time.time(), [{"type": "x", "v": deep}],
                             {"id": "resp_deep"}))
    assert await store.get("resp_deep", None) is None
    await store.close()
