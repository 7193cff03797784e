"""How deeply a client's JSON may nest, and the check for it.

orjson decodes up to 1,024 levels but encodes at most 254, and the codecs' own walkers (the
Gemini schema cleaner, error messages that show a value) recurse in Python: a value that
decodes fine could still fail every later step. So what a client sends is held to
MAX_NESTING levels when it is decoded: below what the encoder takes by more than the levels
an upstream's body puts around a client's value (under 10 in every codec: Gemini's
contents[].parts[].functionCall.args is the deepest), and far below Python's recursion limit
(the deepest walker, the Gemini schema cleaner, takes about two frames per level).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

MAX_NESTING = 240  # levels; JSON Schemas and tool arguments seen in practice use under 20
_ENCODER_LEVELS = 254  # the deepest orjson.dumps encodes (it refuses 255)


class _Probes(threading.local):
    """Per thread, for each limit asked about: lists nested (254 - limit) deep, and the
    innermost of them, where a value is put while the encoder walks them. Built once: made
    anew for every check, the lists cost more than encoding the value (and every level of
    them costs the encoder ~170 instructions per check, which is why the limit is high)."""

    def __init__(self) -> None:
        self.by_levels: dict[int, tuple[list[Any], list[Any]]] = {}

    def get(self, levels: int) -> tuple[list[Any], list[Any]]:
        found = self.by_levels.get(levels)
        if found is None:
            inner: list[Any] = [None]
            outer = inner
            for _ in range(_ENCODER_LEVELS - levels - 1):
                outer = [outer]
            found = self.by_levels[levels] = (outer, inner)
        return found


_probes = _Probes()


def nests_within(value: Any, levels: int) -> bool:
    """Whether a decoded JSON `value` nests at most `levels` levels (a scalar: 0; `[]`: 1).
    Asked of orjson's encoder, which walks the value in C and stops at its own limit: the
    value is put at the bottom of enough lists that only a value deeper than `levels`
    reaches that limit. Costs about a fifth of decoding the value."""
    if not isinstance(value, dict | list):
        return True
    outer, inner = _probes.get(levels)
    inner[0] = value
    try:
        orjson.dumps(outer)
    except orjson.JSONEncodeError:  # the only error decoded JSON can give: too deep
        return False
    finally:
        inner[0] = None  # the value is not kept alive here
    return True
