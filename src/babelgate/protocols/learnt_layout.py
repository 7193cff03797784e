"""The learnt-layout fast path of the SSE stream decoders (see SSEStreamDecoder in
sse_decoder.py): a stream is mostly bare pieces of text, events whose bytes are the same
around a different JSON string. A `Layout` holds those bytes, learnt from one event taken
the general way; the functions here take the next events made of exactly those bytes
straight from the body (one by one, or a long run cut up in bulk), decoding each string as
the general path would. They never guess: an event that does not match byte for byte, or a
string that does not decode, is left to the general path. tests/protocols/test_learnt_layout.py
holds them to the general path's events for any stream and any split of it.
"""

from __future__ import annotations

import re

import msgspec

from babelgate.canonical import ReasoningDelta, TextDelta

from .sse import STRING_REST

LEARNING_TRIES = 4  # failed attempts at learning a layout, per stream
decode_str = msgspec.json.Decoder(str).decode  # the same decoding as the subclasses' views
_KEY_END = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
PROBE = b"\\u0001probe"  # a JSON string body no upstream sends as a piece of text
PROBE_TEXT = "\x01probe"


class Layout:
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


def take_one_by_one(layout: Layout, buffer: bytes, pos: int, most: int) -> int:
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
            append(decode_str(buffer[start - 1 : end + 1]))
            pos = end + len(suffix)
            most -= 1
            if not startswith(joint, end):  # the suffix, then the next event's prefix
                break
            start = end + len(joint)
    except ValueError:
        pass  # the general path decides about this one
    return pos


def take_in_bulk(layout: Layout, buffer: bytes, pos: int, most: int) -> int:
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
        texts = list(map(decode_str, strings))  # each one whole JSON string, or an error
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


def string_at_key(data: bytes, keys: tuple[bytes, ...]) -> tuple[int, int] | None:
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
