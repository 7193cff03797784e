"""Tool names Gemini accepts, and the way back to the client's own names.

Gemini function names start with a letter or `_`, use only `[a-zA-Z0-9_.:-]`, and are at most
128 characters. `gemini_name` is deterministic (the same client name always gives the same
Gemini name, in the tool list and in the history alike), and leaves valid names unchanged. A
name that had to be shortened keeps a short hash of the original so two long names cannot
collide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..wire_names import hashed_name, renamed

MAX_LEN = 128
_VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]")


def gemini_name(name: str) -> str:
    """The Gemini-valid form of a tool name."""
    if _VALID.match(name):
        return name
    fixed = _INVALID_CHARS.sub("_", name)
    if not fixed or not (fixed[0].isascii() and (fixed[0].isalpha() or fixed[0] == "_")):
        fixed = "_" + fixed
    if len(fixed) > MAX_LEN or fixed != name:
        # A hash of the original keeps "a b" and "a_b" (or two long names) apart.
        fixed = hashed_name(name, fixed, MAX_LEN, "sha1")
    return fixed


def reverse_map(names: Iterable[str]) -> dict[str, str]:
    """{Gemini name: client name} for the names that changed."""
    return renamed(names, gemini_name)
