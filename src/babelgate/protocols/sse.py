"""Incremental Server-Sent Events parsing and rendering, shared by every codec.

The decoder takes body chunks split anywhere (inside a line, inside a UTF-8 sequence, between
CR and LF) and returns complete events. Only `event` and `data` fields matter to us; comments
(`:` lines), `id` and `retry` are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The rest of a JSON string after its opening quote: characters other than a quote, a
# backslash or a control character (a raw line break among them), whole escapes, and the
# closing quote. No match for anything else, such as a string cut short.
STRING_REST = re.compile(rb'(?:[^"\\\x00-\x1f]++|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*+"')


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class EventBuffer:
    """What an SSE reader keeps of an event whose end has not come yet: its start (`_pending`,
    as received) and the chunks after it that cannot have ended it (`_held`), joined once,
    when one can. Joining each as it came copied a huge unfinished event's bytes again at
    every chunk (quadratic in its size). The base of every reader that cuts a stream into
    events: SSEDecoder, the stream decoders (sse_decoder.py) and the pass-through's cut.

    A reader calls `_join` only while something waits (`_pending` is not empty): the usual
    chunk of a streaming upstream begins an event and pays for no call."""

    __slots__ = ("_held", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._held: list[bytes] = []

    def _join(self, chunk: bytes) -> bytes | None:
        """What waited and then `chunk`, all waiting let go, if `chunk` may end the waiting
        event; else None, and `chunk` waits too."""
        held = self._held
        if not may_end_event((held[-1] if held else self._pending)[-2:] + chunk):
            held.append(chunk)
            return None
        joined = b"".join([self._pending, *held, chunk]) if held else self._pending + chunk
        self._pending, self._held = b"", []
        return joined

    def _waiting(self) -> bytes:
        """All that waits, as received."""
        return b"".join([self._pending, *self._held]) if self._held else self._pending

    def _last_event(self) -> bytes:
        """The body ended: what waited is its last event, without the blank line it never
        got (line ends as LF, empty if none); nothing waits any more."""
        block = normalise(self._waiting()).rstrip(b"\r\n")
        self._pending, self._held = b"", []
        return block


class SSEDecoder(EventBuffer):
    """Works event by event: only complete events (ended by a blank line) are parsed; the
    rest of the body waits (EventBuffer). The common event, one `data:` line, takes one
    slice and one decode (this runs for every chunk of every upstream stream)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for block in self.blocks(chunk):
            if block.startswith(b"data: ") and block.find(b"\n") < 0:
                events.append(SSEEvent(None, block[6:].decode("utf-8", "replace")))
            elif block:
                _parse_block(block, events)
        return events

    def blocks(self, chunk: bytes) -> list[bytes]:
        """The complete events `chunk` finishes, each as its raw lines (LF-separated, without
        the blank line that ends it; some may be empty). For callers that take the common
        one-line `data:` event without building an SSEEvent (see parse_block for the rest)."""
        if self._pending:
            joined = self._join(chunk)
            if joined is None:
                return []
            buffer = joined
        else:
            buffer = chunk
        if buffer.find(b"\r") >= 0:  # (see may_end_event)
            # Normalise CRLF and lone CR, but keep a trailing CR: its LF may be in the next
            # chunk.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            if tail:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            return []
        self._pending = buffer[end + 2 :]
        return buffer[:end].split(b"\n\n")

    def flush(self) -> list[SSEEvent]:
        """End of body: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        block = self._last_event()
        if block:
            _parse_block(block, events)
        return events


def may_end_event(data: bytes) -> bool:
    """Whether `data` may hold a blank line: two line ends in a row, whatever their kind (LF,
    CRLF or a lone CR), always show one of these three pairs of bytes. A buffer waiting for
    its event's end holds none of them except in its last two bytes (a CR whose LF may come
    next), so a new chunk is checked with those two bytes before it. (find, not `in`: bytes'
    `in` first tries its argument as an integer, and pays for the TypeError every time.)"""
    return data.find(b"\n\n") >= 0 or data.find(b"\n\r") >= 0 or data.find(b"\r\r") >= 0


def normalise(data: bytes) -> bytes:
    """CRLF and lone CR line ends as LF."""
    if data.find(b"\r") < 0:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def parse_block(block: bytes) -> SSEEvent | None:
    """One raw event (see SSEDecoder.blocks) -> an SSEEvent, None if it has no fields."""
    events: list[SSEEvent] = []
    _parse_block(block, events)
    return events[0] if events else None


def _parse_block(block: bytes, events: list[SSEEvent]) -> None:
    """One event's lines -> at most one SSEEvent (comments, `id` and `retry` ignored)."""
    name: str | None = None
    data: list[str] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # blank, or a ':' comment / keep-alive
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if data or name is not None:
        events.append(SSEEvent(name, "\n".join(data)))


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE event with an already-serialised JSON payload."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
