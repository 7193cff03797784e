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

from ..wire_names import WireNames, renamed

MAX_LEN = 128
# The Gemini-valid form of a tool name; a name that had to change keeps a hash of the
# original, so "a b" and "a_b" (or two long names) stay apart.
gemini_name = WireNames(re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,127}"),
                        re.compile(r"[^A-Za-z0-9_.:\-]"), MAX_LEN, "sha1",
                        first=re.compile(r"[A-Za-z_]"))


def reverse_map(names: Iterable[str]) -> dict[str, str]:
    """{Gemini name: client name} for the names that changed."""
    return renamed(names, gemini_name)
