"""FinalResponse: the response object a Responses client receives, from a body or a stream."""

from __future__ import annotations

import orjson

from babelgate.protocols.openai_responses.recorder import FinalResponse, input_items

DONE = {"id": "resp_1", "object": "response", "status": "completed", "output": []}


def event(name: str, payload: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def test_input_items() -> None:
    assert input_items(None) == []
    assert input_items("hi") == [{"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": "hi"}]}]
    assert input_items([{"type": "message"}]) == [{"type": "message"}]
    assert input_items(3) is None


def test_whole_body_kept_only_when_final() -> None:
    assert FinalResponse().whole(orjson.dumps(DONE)) == DONE
    assert FinalResponse().whole(orjson.dumps({**DONE, "status": "failed"})) is None
    assert FinalResponse().whole(orjson.dumps({**DONE, "id": 7})) is None
    assert FinalResponse().whole(b"not json") is None
    assert FinalResponse().whole(b"[1]") is None


def test_stream_gives_the_final_object_once_even_when_split() -> None:
    stream = (event("response.created", {"response": {**DONE, "status": "in_progress"}})
              + event("response.completed", {"type": "response.completed", "response": DONE}))
    at = stream.index(b"event: response.completed") + 30
    final = FinalResponse()
    assert final.feed(stream[:at]) is None  # the final event is not whole yet
    assert final.feed(stream[at:]) == DONE
    assert final.feed(stream) is None  # once
    incomplete = {**DONE, "status": "incomplete"}
    assert FinalResponse().feed(event("response.incomplete", {"response": incomplete})) == (
        incomplete
    )
    assert FinalResponse().feed(b"event: response.completed\ndata: {oops\n\n") is None
