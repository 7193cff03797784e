"""Incremental Server-Sent Events parsing and rendering, shared by every codec.

The decoder takes body chunks split anywhere (inside a line, inside a UTF-8 sequence, between
CR and LF) and returns complete events. Only `event` and `data` fields matter to us; comments
(`:` lines), `id` and `retry` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEDecoder:
    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # Normalise CRLF and lone CR, but keep a trailing CR: its LF may be in the next
            # chunk.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            if tail:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(buffer[start:end], events)
            start = end + 1
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of body: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line[0] == 0x3A:  # ':' comment / keep-alive
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE event with an already-serialised JSON payload."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
