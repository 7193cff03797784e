"""SSEStreamDecoder: the base of the stream decoders of upstreams that stream Server-Sent
Events (all four protocols do). It frames events out of chunks of any size and split, hands
each to its subclass, and takes bare pieces of text by a learnt layout (learnt_layout.py)
when their bytes allow it.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Hashable
from itertools import repeat
from typing import ClassVar

import orjson

from babelgate.canonical import Event, ReasoningDelta, TextDelta

from .base import StreamDecoder
from .learnt_layout import (
    LEARNING_TRIES,
    PROBE,
    PROBE_TEXT,
    Layout,
    Learnt,
    decode_str,
    learnt,
    string_at_key,
    take_in_bulk,
    take_one_by_one,
)
from .sse import EventBuffer, SSEEvent, normalise, parse_block

# An event of one `data:` line, with an `event:` line before it or not, and its blank line
# (LF line ends): its name (None without one) and data.
_ONE_DATA_LINE = re.compile(rb"(?:event: ([^\n]*)\n)?data: ([^\n]*)\n\n").match


class SSEStreamDecoder(EventBuffer, StreamDecoder):
    """A StreamDecoder for an upstream that streams Server-Sent Events (all four protocols
    do). Subclasses take one complete event at a time (`on_event`, told whether the body has
    ended) and say how the stream closes once the body is over (`on_end`: the closing events,
    or a StreamError for a stream cut short).

    Bare pieces of text, what a stream is mostly made of, can skip the event-by-event work:
    a subclass that has just taken one through its general path calls `expect_more`, which
    learns the raw bytes around the text. The next events made of exactly those bytes around
    another JSON string are then read straight from the body: the string is decoded and the
    piece appended, as the general path would have done. Any other event goes the general
    way, and forgets the layout (the subclass learns it again at its next bare piece), so a
    layout only ever stands for the state it was learnt in; only an event that the subclass
    ignores whole (`idle_event`, byte for byte: Anthropic's ping) leaves it standing.

    A subclass given the caller's `known` layouts (Reuse.stream_layouts) keeps each one it
    learns there, and may `resume` one in the state it was learnt for (a text block just
    opened): the next stream from that upstream then takes its first pieces the fast way too.
    """

    __slots__ = ("_bare", "_event_at", "_known", "_learning", "missed")
    fast_text: ClassVar[bool] = True  # learn layouts at all (tests turn it off to compare)
    idle_event: ClassVar[bytes] = b"\n"  # (no event is a lone line break: none by default)

    def __init__(self, known: dict[Hashable, Learnt] | None = None) -> None:
        super().__init__()  # what waits of an event not complete yet (EventBuffer)
        self._bare: Layout | None = None  # the layout learnt by expect_more
        self._known = known
        # The event being handled as received: (body, start, end, length of its blank line).
        self._event_at: tuple[bytes, int, int, int] | None = None
        self._learning = LEARNING_TRIES
        # The event being handled is not one of the bare events just taken the fast way: most
        # likely not a bare piece at all (a finish, usage), so a subclass need not try its
        # typed view of one first.
        self.missed = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending:
            joined = self._join(chunk)
            if joined is None:
                return []
            chunk = joined
        layout = self._bare
        if layout is not None and chunk.endswith(layout.suffix) and chunk.startswith(layout.prefix):
            # A streaming upstream's chunk is often exactly one event: one more piece if
            # what lies between prefix and suffix is one whole JSON string.
            try:
                text = decode_str(chunk[len(layout.prefix) - 1 : 1 - len(layout.suffix)])
            except ValueError:
                text = ""
            if text:
                layout.pieces.append(text)
                layout.used = True
                return [layout.kind(layout.index, text)]
        return self._events(chunk)

    def _events(self, buffer: bytes) -> list[Event]:
        """The events of `buffer` (what was pending and the new chunk)."""
        events: list[Event] = []
        crlf = buffer.find(b"\r") >= 0  # (`in` costs more: it tries the bytes as an int first)
        pos = 0
        while True:
            if self._bare is not None:
                pos = self._bare_events(buffer, pos, events)
            if pos == len(buffer):
                break  # the chunk ended with an event, as it mostly does
            if crlf:
                end = buffer.find(b"\r\n\r\n", pos)
                block = normalise(buffer[pos:end]) if end >= 0 else b"\n\n"
                if block.find(b"\n\n") >= 0 or block.endswith(b"\n"):
                    # Not simply the next CRLF event: mixed or lone-CR line ends, or no
                    # whole event yet. Normalise the rest and take it as a whole.
                    self._rest(buffer[pos:], events)
                    break
                term = 4
            else:
                one = _ONE_DATA_LINE(buffer, pos)
                if one is not None:
                    pos = self._one_data_line(buffer, pos, one, events)
                    continue
                end = buffer.find(b"\n\n", pos)
                if end < 0:
                    self._pending = buffer[pos:]
                    break
                term = 2
            if self._bare is not None:
                idle = self.idle_event
                if block == idle if crlf else (
                    end - pos == len(idle) and buffer.startswith(idle, pos)
                ):
                    pos = end + term  # changes nothing: what was learnt still holds
                    continue
                self._forget()  # an event of another shape: what was learnt may be stale
            self._event_at = (buffer, pos, end + term, term)
            # (An LF event here is not one `data:` line after an `event:` line or none: those
            # went to _one_data_line.)
            self._dispatch(block if crlf else buffer[pos:end], events)
            self.missed = False
            pos = end + term
        self._event_at = None
        return events

    def _one_data_line(self, buffer: bytes, pos: int, one: re.Match[bytes],
                       events: list[Event]) -> int:
        """The event at `pos`, a `data:` line after an `event:` line or none (what nearly
        every event of every upstream is), as the general way of _events takes it: found by
        one match instead of a search for its end and tests of its lines. Where the next
        one starts."""
        after = one.end()
        if self._bare is not None:
            idle = self.idle_event
            if after - 2 - pos == len(idle) and buffer.startswith(idle, pos):
                return after  # changes nothing: what was learnt still holds
            self._forget()
        self._event_at = (buffer, pos, after, 2)
        name, data = one.group(1, 2)
        if name is None:
            self.on_data(data, events)
        else:
            self.on_named(name, data, events)
        self.missed = False
        return after

    def _forget(self) -> None:
        """Drop the layout learnt, before an event of another shape (`missed` holds while
        that event is handled)."""
        layout = self._bare
        if layout is not None:
            self.missed = layout.used
            if not layout.used:
                # Not one event came the same way: some field changes in every event (an id,
                # a timestamp, usage). Learning costs more than the general path: stop soon.
                self._learning -= 1
        self._bare = None

    def _bare_events(self, buffer: bytes, pos: int, events: list[Event]) -> int:
        """Take the events at `pos` made of the learnt bytes around a JSON string; return
        where the first other one starts."""
        layout = self._bare
        assert layout is not None
        if not buffer.startswith(layout.prefix, pos):
            return pos
        pieces = layout.pieces
        first = len(pieces)
        # With room for a run in the body: cut it up in bulk, a window of some 64 events at
        # a time while the run goes on past it.
        while len(buffer) - pos > 3 * layout.size:
            end = pos + 64 * (layout.size + 64)
            taken = take_in_bulk(layout, buffer, pos, end)
            if taken == pos or end >= len(buffer):
                pos = taken
                break
            pos = taken
        pos = take_one_by_one(layout, buffer, pos, len(buffer))
        if len(pieces) > first:
            events += map(layout.kind, repeat(layout.index), pieces[first:])
            layout.used = True
        return pos

    def _rest(self, rest: bytes, events: list[Event]) -> None:
        """Every whole event in `rest`, line ends normalised first; the rest waits."""
        tail = b"\r" if rest.endswith(b"\r") else b""  # its LF may be in the next chunk
        buffer = normalise(rest[:-1] if tail else rest)
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = rest  # as received: its line ends are read when it is whole
            return
        self._pending = buffer[end + 2 :] + tail
        self._event_at = None  # not as received: nothing is learnt from these
        for block in buffer[:end].split(b"\n\n"):
            self._forget()
            self._dispatch(block, events)
            self.missed = False

    def _dispatch(self, block: bytes, events: list[Event]) -> None:
        """One whole event (its lines, LF-separated, without the blank line)."""
        # Nearly every event of every stream is one `data:` line: its JSON goes to on_data
        # as bytes, with no SSEEvent or text decoding on the way.
        if block.startswith(b"data: ") and block.find(b"\n") < 0:
            self.on_data(block[6:], events)
        elif (
            block.startswith(b"event: ")
            and (newline := block.find(b"\n")) > 0
            and block.startswith(b"data: ", newline + 1)
            and block.find(b"\n", newline + 1) < 0
        ):
            # `event:` + one `data:` line: every event of Anthropic's and OpenAI Responses'
            # streams.
            self.on_named(block[7:newline], block[newline + 7 :], events)
        elif block:
            event = parse_block(block)
            if event is not None:
                self.on_event(event, events, False)

    def expect_more(
        self,
        data: bytes,
        keys: tuple[bytes, ...],
        read: Callable[[bytes], str | None],
        pieces: list[str],
        kind: type[TextDelta | ReasoningDelta],
        index: int,
    ) -> None:
        """`data`, the event being handled (as given to on_data or on_named), left a piece
        of text: the subclass appended it to `pieces` and emitted `kind(index, text)`,
        and would do the same for the same bytes around any other non-empty string. Learn
        those bytes, so that such events skip the general path until another event comes.

        The text is found as orjson writes it (the last piece), or else as the string value
        of the last of `keys` (JSON keys with their quotes) found in `data`. `read` is the
        general path's own reading, without side effects: the text it finds in an event,
        None if the event is not a bare piece. It must find a probe string put in the text's
        place, which proves that the place is the one that matters, however the JSON around
        it is laid out."""
        event_at = self._event_at
        if self._bare is not None or event_at is None or self._learning <= 0:
            return
        if not self.fast_text:
            return
        buffer, start, end, term = event_at
        at = end - term - len(data)  # where `data` lies in the body as received
        if not buffer.startswith(data, at):
            return
        # The text as orjson writes it is found fastest; from an upstream that escapes more,
        # by its key.
        token = orjson.dumps(pieces[-1])
        found = data.rfind(token)
        span = (found + 1, found + len(token) - 1) if found >= 0 else string_at_key(data, keys)
        if span is None:
            return
        if read(data[: span[0]] + PROBE + data[span[1] :]) != PROBE_TEXT:
            self._learning -= 1  # a layout that cannot be learnt: stop trying after a few
            return
        prefix, suffix = buffer[start : at + span[0]], buffer[at + span[1] : end]
        layout = learnt(prefix, suffix)
        self._bare = Layout(layout, pieces, kind, index)
        if self._known is not None:
            self._known[type(self), kind] = layout

    def resume(
        self, pieces: list[str], kind: type[TextDelta | ReasoningDelta], index: int
    ) -> None:
        """The subclass is now where events of the layout it last learnt for `kind` (kept in
        `known`) make pieces: appended to `pieces`, emitted as `kind(index, text)`, as
        expect_more would say. Take such events the fast way from the next one on."""
        if self._known is None or self._bare is not None or self._learning <= 0:
            return
        known = self._known.get((type(self), kind))
        if known is not None and self.fast_text:
            self._bare = Layout(known, pieces, kind, index)

    def on_named(self, name: bytes, data: bytes, events: list[Event]) -> None:
        """An `event:` line and one `data:` line, before the body ended. As on_data."""
        event = SSEEvent(name.decode("utf-8", "replace"), data.decode("utf-8", "replace"))
        self.on_event(event, events, False)

    def on_data(self, data: bytes, events: list[Event]) -> None:
        """A one-line `data:` event, before the body ended. Decoders with a faster way to
        take the raw bytes override this; by default it is an ordinary event."""
        self.on_event(SSEEvent(None, data.decode("utf-8", "replace")), events, False)

    def close(self) -> list[Event]:
        events: list[Event] = []
        self._bare = self._event_at = None
        self.missed = False
        block = self._last_event()
        event = parse_block(block) if block else None
        if event is not None:
            self.on_event(event, events, True)
        self.on_end(events)
        return events

    @abstractmethod
    def on_event(self, event: SSEEvent, events: list[Event], at_end: bool) -> None:
        """Append the canonical events one upstream event completes."""

    @abstractmethod
    def on_end(self, events: list[Event]) -> None:
        """The body ended: append what closes the stream."""

