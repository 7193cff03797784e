"""Stand-ins for the tool names (and ids) a wire protocol rejects, made the same way for every
protocol: the name with the characters the wire rejects replaced, cut short, and followed by
a short hash of the original. The hash keeps apart two names that clean to the same text or
share a long prefix; the same name always gives the same stand-in, so a request's tool list
and its history agree, and `renamed` maps the upstream's names back to the client's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

HASH_LEN = 8  # hex digits of the hash a stand-in ends with


def hashed_name(name: str, cleaned: str, most: int, algorithm: str) -> str:
    """The stand-in for `name`, at most `most` characters: `cleaned` (the name made of
    characters the wire accepts) cut to leave room for `_` and the hash. `algorithm` is a
    hashlib name; each protocol keeps the one it always used, so a conversation that
    started before an upgrade keeps its tool names."""
    digest = hashlib.new(algorithm, name.encode(), usedforsecurity=False).hexdigest()
    return f"{cleaned[: most - HASH_LEN - 1]}_{digest[:HASH_LEN]}"


def renamed(names: Iterable[str], wire_name: Callable[[str], str]) -> dict[str, str]:
    """{wire name: own name} for the names `wire_name` changes."""
    out: dict[str, str] = {}
    for name in names:
        sent = wire_name(name)
        if sent != name:
            out[sent] = name
    return out
