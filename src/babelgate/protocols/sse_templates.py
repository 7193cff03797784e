"""Byte templates of SSE events, for the stream encoders' fast paths.

A stream encoder writes most events from kept bytes instead of building and serialising a
dict each time: a text delta is a head, the text's JSON string and a tail. Such bytes are
made here from the very dict the general path would serialise, with holes where values go,
so a template writes what `sse(orjson.dumps(data), name)` would, by construction rather than
by a byte string kept in step by hand.

Holes are strings that no other value equals (they carry a random nonce made at start-up):
- `INT` and `RAW` become `%d` and `%b` (filled with `%`: an int, and bytes of JSON already
  serialised, such as a string with its quotes);
- `CUT` is where `cut` cuts the template: the caller writes a value, such as a piece of
  text, between the pieces.
The Chat encoder has no such constants: its heads hold the stream's id and model, and are
made once per stream from its serialised metadata.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from .sse import sse

_NONCE = secrets.token_hex(16)
INT = f"\x00{_NONCE}d"
RAW = f"\x00{_NONCE}b"
CUT = f"\x00{_NONCE}c"
_CUT_BYTES = b"\x00"  # no serialised JSON holds a raw NUL (orjson escapes it)


def event_template(name: str | None, data: Any) -> bytes:
    """The event `sse(orjson.dumps(data), name)` writes, as a %-template: each `INT` and `RAW`
    value a `%d` or `%b` hole, each `CUT` value a cut (see `cut`), every other `%` doubled."""
    event = sse(orjson.dumps(data), name).replace(b"%", b"%%")
    for hole, written in ((INT, b"%d"), (RAW, b"%b"), (CUT, _CUT_BYTES)):
        event = event.replace(orjson.dumps(hole), written)
    return event


def cut(template: bytes) -> list[bytes]:
    """The pieces of an `event_template` between its cuts, each a %-template still."""
    return template.split(_CUT_BYTES)

