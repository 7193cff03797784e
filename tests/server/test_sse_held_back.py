"""An upstream event that arrives in many pieces is put together once, whatever its size.

Every reader of an upstream's event stream holds back an event until the blank line that ends
it: the stream decoders (protocols/sse_decoder.py), the tap that reads usage from a stream
passed through (protocols/sse.py) and the cutter that sends a passed-through stream on event
by event (server/passthrough.py). Each used to join what it held with every new chunk, so an
event of a few megabytes sent in small chunks cost time quadratic in its size. Here: such an
event is read in time that grows with its size, and any split of a stream with any kind of
line ends (LF, CRLF, a lone CR) gives what the whole stream gives.
"""

from __future__ import annotations

import random
import time

import orjson

from babelgate.canonical import Request, TextDelta
from babelgate.protocols import get_codec
from babelgate.protocols.sse import SSEDecoder
from babelgate.server.passthrough import EventCut, whole_events

BIG = 8 << 20  # bytes of text in the one huge event
PIECE = 256  # bytes per chunk: 32,768 chunks (joined each time, ~128 GB would be copied)
SECONDS = 3.0  # what reading it may take on a loaded CI machine (linear: well under 0.5 s)


def _huge_chat_event() -> tuple[str, bytes]:
    text = "x" * BIG
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return text, b"data: " + orjson.dumps(chunk) + b"\n\n"


def _pieces(data: bytes, size: int = PIECE) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_stream_decoder_reads_a_huge_event_in_small_chunks_in_linear_time() -> None:
    text, event = _huge_chat_event()
    decoder = get_codec("openai").stream_decoder(Request(model="m", messages=(), stream=True))
    started = time.perf_counter()
    events = [e for piece in _pieces(event) for e in decoder.feed(piece)]
    took = time.perf_counter() - started
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text
    assert took < SECONDS, f"{took:.1f} s for {BIG >> 20} MB in {PIECE}-byte chunks"


def test_usage_tap_decoder_reads_a_huge_event_in_small_chunks_in_linear_time() -> None:
    _, event = _huge_chat_event()
    decoder = SSEDecoder()
    started = time.perf_counter()
    events = [e for piece in _pieces(event) for e in decoder.feed(piece)]
    took = time.perf_counter() - started
    assert [len(e.data) for e in events] == [len(event) - len(b"data: \n\n")]
    assert took < SECONDS, f"{took:.1f} s for {BIG >> 20} MB in {PIECE}-byte chunks"


def test_passed_through_stream_cuts_a_huge_event_in_linear_time() -> None:
    _, event = _huge_chat_event()
    stream = b"data: {}\n\n" + event + b"data: [DONE]\n\n"
    pieces = _pieces(stream)
    cut = EventCut(b"")
    started = time.perf_counter()
    sent = [cut.take(piece) for piece in pieces]
    took = time.perf_counter() - started
    assert b"".join(sent) == stream and cut.rest() == b""
    assert max(len(s) for s in sent) >= len(event)  # the huge event went out whole
    assert took < SECONDS, f"{took:.1f} s for {BIG >> 20} MB in {PIECE}-byte chunks"


# ------------------------------------------------------------------ any split, any line end

def _random_stream(rng: random.Random) -> bytes:
    """Events of one to three lines, each line ended by LF, CRLF or a lone CR, each event by
    one more line end; the last event sometimes without it (the body just stops)."""
    ends = [b"\n", b"\r\n", b"\r"]
    out = []
    for n in range(rng.randint(1, 6)):
        lines = [b"event: e%d" % n] if rng.random() < 0.4 else []
        lines += [b"data: " + bytes(rng.choice(b"ab{}: ") for _ in range(rng.randint(0, 12)))
                  for _ in range(rng.randint(1, 2))]
        out.append(b"".join(line + rng.choice(ends) for line in lines) + rng.choice(ends))
    if rng.random() < 0.3:
        out.append(b"data: unfinished")
    return b"".join(out)


def _splits(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _sse_events(pieces: list[bytes]) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)] + decoder.flush()
    return [(e.event, e.data) for e in events]


def test_any_split_of_any_line_ends_reads_the_same_events() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        data = _random_stream(rng)
        whole = _sse_events([data])
        assert whole, data
        assert _sse_events(_splits(rng, data)) == whole, data
        assert _sse_events([data[i : i + 1] for i in range(len(data))]) == whole, data


def test_any_split_is_cut_where_whole_events_end() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        data = _random_stream(rng)
        cut = EventCut(b"")
        sent = [cut.take(piece) for piece in _splits(rng, data)]
        assert b"".join(sent) + cut.rest() == data
        for piece in filter(None, sent):  # each piece that went out ends where events end
            assert whole_events(piece) == len(piece), (data, piece)
        assert whole_events(cut.rest()) == 0
