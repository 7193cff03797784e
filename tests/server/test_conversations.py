"""Conversations.prepare (history expansion, 404, store:false) and Recorder (whole bodies
and streams written by the real Responses stream encoder)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from babelgate.canonical import (
    Event,
    GatewayError,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    Request,
    Text,
    TextDelta,
    Usage,
)
from babelgate.protocols import get_codec
from babelgate.server.conversations import Conversations, PreviousResponseNotFound, Recorder
from babelgate.storage.responses import ResponseStore, StoredResponse

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
          "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResponseStore]:
    s = ResponseStore(tmp_path / "c.db")
    yield s
    await s.close()


async def test_store_false_without_previous_touches_nothing(
    store: ResponseStore, tmp_path: Path
) -> None:
    body = {"model": "m", "input": "Hi", "store": False}
    out, recorder = await Conversations(store).prepare(body, None)
    assert out is body and recorder is None
    assert not (tmp_path / "c.db").exists()


async def test_previous_response_expands_input_but_not_instructions(
    store: ResponseStore,
) -> None:
    store.put(StoredResponse("resp_1", 0.0 + 1e12, [USER],
                             {"id": "resp_1", "status": "completed", "output": [ANSWER]}))
    body = {"model": "m", "instructions": "Be terse.", "previous_response_id": "resp_1",
            "input": "And now?"}
    out, recorder = await Conversations(store).prepare(body, None)
    assert out["instructions"] == "Be terse."  # this request's own, untouched
    assert out["input"] == [
        USER, ANSWER,
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "And now?"}]},
    ]
    assert recorder is not None
    # What is kept for this turn is its own input and its link, not the history again.
    recorder.whole(orjson.dumps({"id": "resp_2", "status": "completed", "output": [ANSWER]}))
    kept = await store.get("resp_2", None)
    assert kept is not None and kept.previous == "resp_1"
    assert kept.input == [{"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": "And now?"}]}]


def _turn(rid: str, previous: str | None) -> StoredResponse:
    return StoredResponse(rid, time.time(), [USER],
                          {"id": rid, "status": "completed", "output": [ANSWER]}, previous)


async def test_a_deleted_earlier_turn_is_named(store: ResponseStore) -> None:
    for rid, previous in (("resp_1", None), ("resp_2", "resp_1"), ("resp_3", "resp_2")):
        store.put(_turn(rid, previous))
    assert await store.delete("resp_2", None)
    with pytest.raises(PreviousResponseNotFound, match="'resp_2' not found"):
        await Conversations(store).prepare(
            {"model": "m", "input": "x", "previous_response_id": "resp_3"}, None
        )


async def test_a_conversation_longer_than_the_bound_is_refused(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "long.db", max_turns=3)
    for i in range(4):
        store.put(_turn(f"resp_{i}", f"resp_{i - 1}" if i else None))
    conversations = Conversations(store)
    out, _ = await conversations.prepare(
        {"model": "m", "input": "x", "previous_response_id": "resp_2"}, None
    )
    assert len(out["input"]) == 3 * 2 + 1  # three turns in, then the new input
    with pytest.raises(GatewayError, match="more than 3 stored turns") as caught:
        await conversations.prepare(
            {"model": "m", "input": "x", "previous_response_id": "resp_3"}, None
        )
    assert caught.value.status == 400
    await store.close()


async def test_unknown_previous_response_is_404(store: ResponseStore) -> None:
    with pytest.raises(PreviousResponseNotFound) as caught:
        await Conversations(store).prepare(
            {"model": "m", "input": "x", "previous_response_id": "resp_nope", "store": False},
            None,
        )
    assert caught.value.status == 404
    # What a Responses client receives: OpenAI's exact body.
    assert get_codec("openai-responses").render_error(caught.value) == {"error": {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }}


async def test_recorder_keeps_a_whole_body(store: ResponseStore) -> None:
    recorder = Recorder(store, [USER], None, None)
    recorder.whole(orjson.dumps({"id": "resp_w", "status": "completed", "output": [ANSWER]}))
    got = await store.get("resp_w", None)
    assert got is not None and got.input == [USER] and got.output == [ANSWER]


async def test_recorder_ignores_failed_responses(store: ResponseStore) -> None:
    recorder = Recorder(store, [USER], None, None)
    recorder.whole(orjson.dumps({"id": "resp_f", "status": "failed", "output": []}))
    assert recorder.kept is None and await store.get("resp_f", None) is None


def _stream_chunks() -> list[bytes]:
    request = Request(model="m", messages=(), stream=True)
    encoder = get_codec("openai-responses").stream_encoder(request)
    thinking = Reasoning(text="Let me think.", signature="sig-abc", origin="anthropic")
    events: list[list[Event]] = [
        [MessageStart(id="resp_stream1", model="m", usage=Usage(input_tokens=5))],
        [PartStart(0, thinking)],
        [PartStop(0, thinking), PartStart(1, Text(""))],
        [TextDelta(1, "Hel")],
        [TextDelta(1, "lo")],
        [PartStop(1, Text("Hello")),
         MessageDelta(stop_reason="end_turn", usage=Usage(output_tokens=3)), MessageStop()],
    ]
    return [b"".join(encoder.encode(e) for e in batch) for batch in events]


async def test_recorder_takes_the_final_event_of_a_stream(store: ResponseStore) -> None:
    recorder = Recorder(store, [USER], None, None)
    for chunk in _stream_chunks():
        recorder.feed(chunk)
    assert recorder.kept == "resp_stream1"
    got = await store.get("resp_stream1", None)
    assert got is not None
    kinds = [item["type"] for item in got.output]
    assert kinds == ["reasoning", "message"]
    assert got.output[0]["encrypted_content"]  # the signature, in our envelope
    assert got.output[1]["content"][0]["text"] == "Hello"


async def test_recorder_copes_with_a_final_event_split_over_chunks(
    store: ResponseStore,
) -> None:
    whole = b"".join(_stream_chunks())
    recorder = Recorder(store, [USER], None, None)
    at = whole.index(b"event: response.completed")
    for chunk in (whole[: at + 40], whole[at + 40: at + 400], whole[at + 400:]):
        recorder.feed(chunk)
    assert recorder.kept == "resp_stream1"
