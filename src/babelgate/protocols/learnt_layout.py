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
from operator import itemgetter
from typing import NamedTuple

import msgspec

from babelgate.canonical import ReasoningDelta, TextDelta

from .sse import STRING_REST

LEARNING_TRIES = 4  # failed attempts at learning a layout, per stream
decode_str = msgspec.json.Decoder(str).decode  # the same decoding as the subclasses' views
_KEY_END = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
PROBE = b"\\u0001probe"  # a JSON string body no upstream sends as a piece of text
PROBE_TEXT = "\x01probe"


class Learnt(NamedTuple):
    """The bytes of the bare events expect_more learnt, and what is cut from them: kept by
    the caller's reuse table for its next stream too (`learnt`). That those bytes make a
    bare event of one decoder class and kind of piece follows from the bytes alone (the
    probe expect_more reads proves it), not from the stream they were learnt in; the next
    stream's events are still matched byte for byte, and any other event goes the general
    way."""

    prefix: bytes  # from the start of the event to the string's opening quote
    suffix: bytes  # from the closing quote to the end of the event
    # What a run is cut at in bulk: the bytes between one string's closing quote and the
    # next one's opening quote (the rest of one event, the start of the next), the first 16
    # of them (`needle`: CPython splits at longer needles more slowly) and the rest, which
    # keeps at least the opening quote; `after`: what of the suffix the needle leaves out.
    needle: bytes
    rest: bytes
    after: bytes
    size: int  # of prefix and suffix


def learnt(prefix: bytes, suffix: bytes) -> Learnt:
    between = suffix[1:] + prefix
    cut = min(16, len(between) - 1)
    return Learnt(prefix, suffix, between[:cut], between[cut:], suffix[1 + cut :],
                  len(prefix) + len(suffix))


class Layout:
    """A Learnt layout at work in one stream: where its texts go, and the events they make."""

    __slots__ = ("after", "index", "kind", "needle", "pieces", "prefix", "rest", "size", "suffix",
                 "used")

    def __init__(
        self,
        bytes_: Learnt,
        pieces: list[str],  # where the texts go
        kind: type[TextDelta | ReasoningDelta],  # and the events they make
        index: int,
    ) -> None:
        self.prefix, self.suffix, self.needle, self.rest, self.after, self.size = bytes_
        self.pieces = pieces
        self.kind = kind
        self.index = index
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
                if end < 0 or buffer[end - 1] != 0x5C:
                    # A quote after no backslash closes the string (none at all: not here
                    # yet): so the suffix is not what follows it. Only an escaped quote
                    # needs the match below.
                    break
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


def take_in_bulk(layout: Layout, buffer: bytes, pos: int, end: int) -> int:
    """Take the run of events from `pos` up to `end` at most
    in one go; return where the first one not taken starts (`pos` when none could be taken
    that way: the caller then goes one event at a time).

    The window is split at the first bytes between one event's string and the next one's
    (`needle`, from the suffix after its closing quote); each part after a cut must start
    with the rest of those bytes (`rest`, up to the next string's opening quote), and its
    string must then be one whole JSON string, quotes included, which decoding it checks:
    so the bytes were events of the layout one after another. The last part (the last
    event, with what follows it) is left to the caller."""
    if not buffer.startswith(layout.prefix, pos):
        return pos
    window = buffer[pos:end]
    parts = window.split(layout.needle)
    last = parts.pop()  # the last event taken whole is the one before this part
    if not parts or len(parts[0]) <= len(layout.prefix):
        return pos  # no two such events in a row (or a cut inside the prefix)
    rest = layout.rest
    run = parts[1:]  # (_starting_with's first try, written out: the usual run is all of them)
    if not run or (min(run).startswith(rest) and max(run).startswith(rest)):
        count = len(parts)
    else:
        count = _starting_with(parts, 1, rest)
    # The last of these events is whole if the rest of its suffix follows the needle.
    if not (parts[count] if count < len(parts) else last).startswith(layout.after):
        count -= 1
    if count < 1:
        return pos
    skip = len(rest) - 1  # where each next string starts, at its opening quote
    strings = [parts[0][len(layout.prefix) - 1 :]]
    strings += map(itemgetter(slice(skip, None)), parts[1:count])  # (no frame per part)
    try:
        texts = list(map(decode_str, strings))  # each one whole JSON string, or an error
    except ValueError:
        texts = _leading_strings(strings)
    if "" in texts:
        del texts[texts.index("") :]  # an empty string is no piece: the general path decides
    if not texts:
        return pos
    layout.pieces += texts
    # The last event taken ends with its suffix, whose closing quote ends its part.
    if len(texts) == len(parts):  # all but the last part: counted back from the end
        taken = len(window) - len(last) - len(layout.needle)
    else:
        taken = sum(map(len, parts[: len(texts)])) + (len(texts) - 1) * len(layout.needle)
    return pos + taken + len(layout.suffix) - 1


def _starting_with(parts: list[bytes], first: int, start: bytes) -> int:
    """Where the run of `parts` from `first` on that start with `start` ends. All those that
    do lie in one interval of byte order, so a run does when its smallest and largest part
    do: the whole list is tried, then all but the last (a run usually ends with one other
    event), then halves."""
    def all_do(end: int) -> bool:
        run = parts[first:end]
        return not run or (min(run).startswith(start) and max(run).startswith(start))

    if all_do(len(parts)):
        return len(parts)
    if all_do(len(parts) - 1):
        return len(parts) - 1
    good, bad = first, len(parts) - 1  # all_do(good) holds, all_do(bad) not
    while bad - good > 1:
        middle = (good + bad) // 2
        if all_do(middle):
            good = middle
        else:
            bad = middle
    return good


def _leading_strings(strings: list[bytes]) -> list[str]:
    """The texts of the leading `strings` that are whole JSON strings."""
    texts: list[str] = []
    for string in strings:
        try:
            texts.append(decode_str(string))
        except ValueError:
            break
    return texts


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
