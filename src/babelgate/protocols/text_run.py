"""A read's run of text deltas written in one go, for the stream encoders' `encode_batch`.

A read of a streaming upstream is mostly a run of text deltas (all of a short answer that
came at once), and an encoder that writes each as a kept head, the text's JSON string and a
kept tail pays a few calls per delta when it goes one event at a time. Here the run is
found without a loop of ours and its texts serialised by one `orjson.dumps`: the bytes are
those of `head + orjson.dumps(text) + tail` for each text, joined.
"""

from __future__ import annotations

from operator import attrgetter

import orjson

from babelgate.canonical import Event, TextDelta

_text_of = attrgetter("text")


def text_run(events: list[Event]) -> tuple[int, int] | None:
    """Where the batch's run of text deltas lies (start, end), when all its text deltas
    stand together and there are more than two; else None (the batch goes event by
    event)."""
    kinds = list(map(type, events))
    count = kinds.count(TextDelta)
    if count < 3:
        return None
    first = kinds.index(TextDelta)
    end = first + count
    if kinds[first:end] != [TextDelta] * count:
        return None
    return first, end


def write_texts(deltas: list[Event], head: bytes, tail: bytes) -> bytes:
    """`head + orjson.dumps(delta.text) + tail` for each of `deltas` (text deltas), joined.
    Raises orjson's error for a text it refuses (a lone surrogate), as each write would."""
    texts = list(map(_text_of, deltas))
    strings = orjson.dumps(texts)
    if strings.find(b"\\") < 0:
        # No escape in any of them, so no quote inside one: `","` lies only between two
        # strings, and one split gives them all, without their quotes.
        quote_head, quote_tail = head + b'"', b'"' + tail
        bodies = strings[2:-2].split(b'","')
        return quote_head + (quote_tail + quote_head).join(bodies) + quote_tail
    return head + (tail + head).join(map(orjson.dumps, texts)) + tail
