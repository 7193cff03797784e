"""The interface every wire-protocol codec implements.

A codec is I/O-free: dicts and bytes in, canonical values out, and back. The same codec serves
its protocol in both directions:
- client-facing (inbound): `parse_request`, `render_response`, `stream_encoder`,
  `render_error`;
- upstream-facing (outbound): `render_request`, `parse_response`, `stream_decoder`,
  `parse_error`.
`Quirks` carries what differs between upstreams that speak the same protocol (DeepSeek,
Kimi, GLM... over OpenAI Chat): plain data filled by the providers layer from presets and
configuration, so codecs never key behaviour on model-name substrings.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import ClassVar, Literal

import msgspec
import orjson

from babelgate.canonical import (
    JSON,
    Event,
    GatewayError,
    ReasoningDelta,
    Request,
    Response,
    TextDelta,
)

from .sse import STRING_REST, SSEEvent, normalise, parse_block

ReasoningControl = Literal[
    "reasoning_effort",  # OpenAI, Grok, Ollama: reasoning_effort: low|medium|high
    "thinking",  # DeepSeek, GLM, Kimi: thinking: {type: enabled|disabled}
    "enable_thinking",  # Qwen, SiliconFlow: enable_thinking + thinking_budget
    "reasoning",  # OpenRouter: reasoning: {effort | max_tokens}
    "chat_template_kwargs",  # vLLM: chat_template_kwargs: {enable_thinking}
    "none",  # the upstream has no control; say nothing
]


@dataclass(frozen=True, slots=True)
class Quirks:
    """Per-upstream differences inside one protocol family. Defaults suit the reference
    provider of each family (OpenAI, Anthropic, Google)."""

    max_tokens: int | None = None  # clamp the client's max_tokens to this
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    reasoning_control: ReasoningControl = "reasoning_effort"
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    echo_reasoning: bool = False  # send reasoning_content back on assistant turns (DeepSeek)
    stream_usage: bool = True  # ask for stream_options.include_usage
    images: bool = True  # the upstream accepts image input
    documents: bool = False  # the upstream accepts PDF/document input
    strict_fields: bool = True  # the upstream rejects fields it does not define
    auto_cache: bool = False  # mark prompt-cache breakpoints a client could not (Anthropic)


class StreamDecoder(ABC):
    """Upstream stream bytes -> canonical events (see canonical.stream for the contract)."""

    @abstractmethod
    def feed(self, chunk: bytes) -> list[Event]:
        """Take the next chunk of the body (any size, any split) and return the events it
        completes."""

    @abstractmethod
    def close(self) -> list[Event]:
        """The body ended. Return the closing events; a stream that ended early yields a
        StreamError rather than a silent stop."""


class SSEStreamDecoder(StreamDecoder):
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
    layout only ever stands for the state it was learnt in.
    """

    __slots__ = ("_bare", "_event_at", "_learning", "_pending", "missed")
    fast_text: ClassVar[bool] = True  # learn layouts at all (tests turn it off to compare)

    def __init__(self) -> None:
        self._pending = b""  # the start of an event not complete yet, as received
        self._bare: _Layout | None = None  # the layout learnt by expect_more
        # The event being handled as received: (body, start, end, length of its blank line).
        self._event_at: tuple[bytes, int, int, int] | None = None
        self._learning = _LEARNING_TRIES
        # The event being handled is not one of the bare events just taken the fast way: most
        # likely not a bare piece at all (a finish, usage), so a subclass need not try its
        # typed view of one first.
        self.missed = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending:
            chunk, self._pending = self._pending + chunk, b""
        layout = self._bare
        if layout is not None and chunk.endswith(layout.suffix) and chunk.startswith(layout.prefix):
            # A streaming upstream's chunk is often exactly one event: one more piece if
            # what lies between prefix and suffix is one whole JSON string.
            try:
                text = _decode_str(chunk[len(layout.prefix) - 1 : 1 - len(layout.suffix)])
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
        crlf = b"\r" in buffer
        pos = 0
        while True:
            if self._bare is not None:
                pos = self._bare_events(buffer, pos, events)
            if pos == len(buffer):
                break  # the chunk ended with an event, as it mostly does
            if crlf:
                end = buffer.find(b"\r\n\r\n", pos)
                block = normalise(buffer[pos:end]) if end >= 0 else b"\n\n"
                if b"\n\n" in block or block.endswith(b"\n"):
                    # Not simply the next CRLF event: mixed or lone-CR line ends, or no
                    # whole event yet. Normalise the rest and take it as a whole.
                    self._rest(buffer[pos:], events)
                    break
                term = 4
            else:
                end = buffer.find(b"\n\n", pos)
                if end < 0:
                    self._pending = buffer[pos:]
                    break
                block = buffer[pos:end]
                term = 2
            if self._bare is not None:
                self._forget()  # an event of another shape: what was learnt may be stale
            self._event_at = (buffer, pos, end + term, term)
            # As _dispatch, written out: this runs for every event not taken the fast way.
            if block.startswith(b"data: ") and b"\n" not in block:
                self.on_data(block[6:], events)
            else:
                self._dispatch(block, events)
            self.missed = False
            pos = end + term
        self._event_at = None
        return events

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
        pos = _one_by_one(layout, buffer, pos, 2)
        # A run longer than that, with room for more in the body: cut it up in bulk.
        while (
            len(pieces) - first >= 2
            and len(buffer) - pos > 4 * layout.size
            and buffer.startswith(layout.prefix, pos)
        ):
            taken = _in_bulk(layout, buffer, pos, 16 * (len(pieces) - first))
            if taken == pos:
                break
            pos = taken
        pos = _one_by_one(layout, buffer, pos, len(buffer))
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
        if block.startswith(b"data: ") and b"\n" not in block:
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
        span = (found + 1, found + len(token) - 1) if found >= 0 else _string_at_key(data, keys)
        if span is None:
            return
        if read(data[: span[0]] + _PROBE + data[span[1] :]) != _PROBE_TEXT:
            self._learning -= 1  # a layout that cannot be learnt: stop trying after a few
            return
        prefix, suffix = buffer[start : at + span[0]], buffer[at + span[1] : end]
        self._bare = _Layout(prefix, suffix, pieces, kind, index)

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
        block = normalise(self._pending).rstrip(b"\r\n")  # a last event without its blank line
        self._pending = b""
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


class _Layout:
    """The bytes of the bare events expect_more learnt, and what to do with their text."""

    __slots__ = ("after", "index", "kind", "needle", "next", "pieces", "prefix", "size",
                 "suffix", "used")

    def __init__(
        self,
        prefix: bytes,  # from the start of the event to the string's opening quote
        suffix: bytes,  # from the closing quote to the end of the event
        pieces: list[str],  # where the texts go
        kind: type[TextDelta | ReasoningDelta],  # and the events they make
        index: int,
    ) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.pieces = pieces
        self.kind = kind
        self.index = index
        # What a run is cut at in bulk: the first bytes between one string's closing quote
        # and the next one's opening quote (the rest of one event, the start of the next),
        # at most 32 (CPython searches longer needles more slowly). `next` is the rest of
        # them, up to the next string's opening quote; `after` the part of the suffix in it.
        joint = suffix[1:] + prefix
        cut = 32 if len(joint) > 32 else len(joint) - 1
        self.needle = joint[:cut]
        self.next = joint[cut:]
        self.after = suffix[1 + cut :]
        self.size = len(prefix) + len(suffix)
        self.used = False  # an event was taken with it


def _one_by_one(layout: _Layout, buffer: bytes, pos: int, most: int) -> int:
    """Take up to `most` events from `pos` one at a time; return where the first one not
    taken starts."""
    prefix, suffix, append = layout.prefix, layout.suffix, layout.pieces.append
    find, startswith = buffer.find, buffer.startswith
    if not startswith(prefix, pos):
        return pos
    start = pos + len(prefix)
    joint = suffix + prefix
    try:
        while most > 0:
            # The string ends at its first quote unless it holds escaped ones: the suffix
            # (which has a raw line break, so no string holds it) tells.
            end = find(b'"', start)
            if not startswith(suffix, end):
                found = STRING_REST.match(buffer, start)
                end = found.end() - 1 if found is not None else -1
                if not startswith(suffix, end):
                    break  # another event, or not all of it here yet
            if end == start:
                break  # an empty string is no piece of text: the general path decides
            # Decoding checks the rest: escapes, UTF-8, no control characters.
            append(_decode_str(buffer[start - 1 : end + 1]))
            pos = end + len(suffix)
            most -= 1
            if not startswith(joint, end):  # the suffix, then the next event's prefix
                break
            start = end + len(joint)
    except ValueError:
        pass  # the general path decides about this one
    return pos


def _in_bulk(layout: _Layout, buffer: bytes, pos: int, most: int) -> int:
    """Take the run of events from `pos` (which starts with the prefix) in one go, looking
    at most `most` events ahead; return where the first one not taken starts (`pos` when
    none could be taken that way: the caller then goes one event at a time)."""
    window = buffer[pos : pos + most * (layout.size + 64)]
    parts = window.split(layout.needle)
    if len(parts) == 1:
        return pos  # no two such events in a row
    # parts: the first event up to its string's closing quote; then for each next event the
    # rest of the bytes between two strings (`next`) and its string; and so on, the last
    # part being what follows. Those with another start end the run.
    inner = parts[1:-1]
    count = _starting_with(inner, layout.next)
    # The last event taken is whole if the rest of its suffix follows the needle.
    if not parts[1 + count].startswith(layout.after):
        count -= 1
    if count < 0:
        return pos
    skip = len(layout.next) - 1  # where each next string starts, at its opening quote
    strings = [parts[0][len(layout.prefix) - 1 :], *[part[skip:] for part in inner[:count]]]
    try:
        texts = list(map(_decode_str, strings))  # each one whole JSON string, or an error
    except ValueError:
        return pos
    if "" in texts:
        return pos
    layout.pieces += texts
    # The last event taken ends with its suffix, in (or after) the needle that follows it.
    return pos + sum(map(len, parts[: count + 1])) + count * len(layout.needle) + len(
        layout.suffix
    ) - 1


def _starting_with(parts: list[bytes], start: bytes) -> int:
    """How many of the leading `parts` start with `start`. All those that do lie in one
    interval of byte order, so a list does when its smallest and largest part do: the whole
    list is tried, then all but the last (a run usually ends with one other event), then
    halves."""
    def all_do(count: int) -> bool:
        head = parts[:count]
        return min(head).startswith(start) and max(head).startswith(start)

    if not parts or all_do(len(parts)):
        return len(parts)
    if len(parts) == 1 or all_do(len(parts) - 1):
        return len(parts) - 1
    good, bad = 0, len(parts) - 1  # all_do(good) holds (trivially for 0), all_do(bad) not
    while bad - good > 1:
        middle = (good + bad) // 2
        if all_do(middle):
            good = middle
        else:
            bad = middle
    return good


_LEARNING_TRIES = 4  # failed attempts at learning a layout, per stream
_decode_str = msgspec.json.Decoder(str).decode  # the same decoding as the subclasses' views
_KEY_END = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
_PROBE = b"\\u0001probe"  # a JSON string body no upstream sends as a piece of text
_PROBE_TEXT = "\x01probe"


def _string_at_key(data: bytes, keys: tuple[bytes, ...]) -> tuple[int, int] | None:
    """Where the body of the string value of the last of `keys` in `data` starts and ends."""
    for key in keys:
        at = data.rfind(key)
        if at >= 0:
            break
    else:
        return None
    opening = _KEY_END.match(data, at + len(key))
    if opening is None:
        return None
    start = opening.end()
    string = STRING_REST.match(data, start)
    return (start, string.end() - 1) if string is not None and string.end() > start + 1 else None


class StreamEncoder(ABC):
    """Canonical events -> the client's stream bytes."""

    @abstractmethod
    def encode(self, event: Event) -> bytes:
        """Bytes for one event (b"" when the protocol has nothing to say for it). A
        StreamError becomes the protocol's mid-stream error."""

    def ping(self) -> bytes:
        """A keep-alive the client ignores; b"" if the protocol has none."""
        return b""


class Codec(ABC):
    """One wire protocol. Instances are stateless and shared."""

    name: ClassVar[str]  # "anthropic", "openai", "gemini", "openai-responses"

    # ------------------------------------------------ client-facing
    @abstractmethod
    def parse_request(self, body: JSON) -> Request:
        """A client's request body -> Request. Raises GatewayError(invalid_request) naming
        the field for anything missing or malformed."""

    @abstractmethod
    def render_response(self, response: Response, request: Request) -> JSON:
        """A finished Response -> the client's response body."""

    @abstractmethod
    def stream_encoder(self, request: Request) -> StreamEncoder:
        """A fresh encoder for one streamed response to a client."""

    @abstractmethod
    def render_error(self, error: GatewayError) -> JSON:
        """The error body this protocol's clients expect (the status is error.status)."""

    # ------------------------------------------------ upstream-facing
    @abstractmethod
    def render_request(self, request: Request, quirks: Quirks) -> JSON:
        """Request -> this protocol's request body, with nothing the upstream does not define
        (request.model is already the upstream's model name)."""

    @abstractmethod
    def parse_response(self, body: JSON, request: Request) -> Response:
        """The upstream's response body -> Response (tool names mapped back to the request's
        own names)."""

    @abstractmethod
    def stream_decoder(self, request: Request) -> StreamDecoder:
        """A fresh decoder for one upstream stream."""

    @abstractmethod
    def parse_error(self, status: int, body: bytes) -> GatewayError:
        """An upstream error response -> GatewayError, keeping the upstream's message."""

    # ------------------------------------------------ token counting (optional)
    def parse_count_tokens_request(self, body: JSON) -> Request:
        """A client's token-counting body -> Request (protocols whose counting body differs
        from a generation body override this)."""
        return self.parse_request(body)

    def render_count_tokens(self, request: Request, quirks: Quirks) -> JSON | None:
        """The upstream token-counting body, or None when the protocol has no such endpoint."""
        return None

    def parse_count_tokens(self, body: JSON) -> int | None:
        """The count from the upstream token-counting answer."""
        return None
