"""The shared SSE decoder must survive any chunk split."""

import random

from babelgate.protocols.sse import SSEDecoder, sse

STREAM = (
    b"event: message_start\r\ndata: {\"a\": \"h\xc3\xa9llo\"}\r\n\r\n"
    b": keep-alive comment\n\n"
    b"data: line one\ndata: line two\n\n"
    b"event: ping\ndata: {}\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ("message_start", '{"a": "héllo"}'),
    (None, "line one\nline two"),
    ("ping", "{}"),
    (None, "[DONE]"),
]


def _decode(chunks: list[bytes]) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.flush()
    return [(e.event, e.data) for e in events]


def test_whole_body() -> None:
    assert _decode([STREAM]) == EXPECTED


def test_every_split_point_including_inside_crlf_and_utf8() -> None:
    for cut in range(1, len(STREAM)):
        assert _decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_random_small_chunks() -> None:
    rng = random.Random(7)
    for _ in range(50):
        chunks, rest = [], STREAM
        while rest:
            size = rng.randint(1, 9)
            chunks.append(rest[:size])
            rest = rest[size:]
        assert _decode(chunks) == EXPECTED


def test_last_event_without_blank_line_still_counts() -> None:
    assert _decode([b"data: tail"]) == [(None, "tail")]


def test_render() -> None:
    assert sse(b"{}", "ping") == b"event: ping\ndata: {}\n\n"
    assert sse(b"[DONE]") == b"data: [DONE]\n\n"
