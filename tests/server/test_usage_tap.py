"""The output estimate of a passed-through stream without usage (server/passthrough.py
UsageTap.text_chars), in each protocol's own events as its servers write them: the text
of the deltas, counted without parsing them, off by no more than the JSON escapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from babelgate.server.passthrough import UsageTap

PIECES = ["Hello", " there", ", this is", " a longer piece of text", " and", " more."]
TEXT = "".join(PIECES)


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def anthropic() -> list[bytes]:
    out = [sse({"type": "message_start", "message": {"id": "msg_1", "usage": {}}},
               "message_start"),
           sse({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}, "content_block_start"),
           sse({"type": "ping"}, "ping")]
    out += [sse({"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": p}}, "content_block_delta")
            for p in PIECES]
    return [*out, sse({"type": "content_block_stop", "index": 0}, "content_block_stop")]


def chat() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"id": "chatcmpl-abcdef0123456789", "object": "chat.completion.chunk",
                    "created": 1796617551, "model": "qwen2.5-coder-32b-instruct-q4_k_m",
                    "system_fingerprint": "b4321-0a1b2c3d",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return [chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": p}) for p in PIECES), chunk({}, "stop"), b"data: [DONE]\n\n"]


def responses() -> list[bytes]:
    out = [sse({"type": "response.created", "sequence_number": 0,
                "response": {"id": "resp_1", "status": "in_progress"}}, "response.created"),
           sse({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {"id": "msg_1", "type": "message", "role": "assistant",
                         "content": []}}, "response.output_item.added")]
    out += [sse({"type": "response.output_text.delta", "sequence_number": 2 + i,
                 "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": p},
                "response.output_text.delta") for i, p in enumerate(PIECES)]
    return out


def gemini() -> list[bytes]:
    return [sse({"candidates": [{"content": {"parts": [{"text": p}], "role": "model"},
                                 "index": 0}], "modelVersion": "gemini-2.5-flash"})
            for p in PIECES]


@pytest.mark.parametrize(("protocol", "events"), [
    ("anthropic", anthropic()), ("openai", chat()), ("openai-responses", responses()),
    ("gemini", gemini())])
def test_the_text_of_a_stream_without_usage(protocol: str, events: list[bytes]) -> None:
    tap = UsageTap(protocol)
    for event in events:
        tap.feed(event)
    # The envelope is measured on the first delta: the others' text is counted exactly
    # (a sequence number growing by a digit would add one character).
    assert abs(tap.text_chars - len(TEXT)) <= 2, (tap.text_chars, len(TEXT))
