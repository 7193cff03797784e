"""Stand-ins for the tool names (and ids) a wire protocol rejects, made the same way for every
protocol: the name with the characters the wire rejects replaced, cut short, and followed by
a short hash of the original. The hash keeps apart two names that clean to the same text or
share a long prefix; the same name always gives the same stand-in, so a request's tool list
and its history agree, and `renamed` maps the upstream's names back to the client's own.

Each protocol states its rule once, as a `WireNames` value (its valid names, the characters
it accepts, its length limit, the hash it always used); this module is the one place the
stand-in is made.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

HASH_LEN = 8  # hex digits of the hash a stand-in ends with


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: a key of memos
class WireNames:
    """One wire's rule for a name: `valid` names (the whole name must match) go out as they
    are; any other is cleaned (each character `rejected` matches becomes `_`), given `_` in
    front if it does not begin with `first`, and made a stand-in of at most `most`
    characters with `algorithm`'s hash (a hashlib name: each protocol keeps the one it
    always used, so a conversation that started before an upgrade keeps its tool names).
    `empty` stands for a name that cleans to nothing."""

    valid: re.Pattern[str]
    rejected: re.Pattern[str]
    most: int
    algorithm: str
    first: re.Pattern[str] | None = None
    empty: str = ""

    def __call__(self, name: str) -> str:
        if self.valid.fullmatch(name):
            return name
        cleaned = self.rejected.sub("_", name) or self.empty
        if self.first is not None and not self.first.match(cleaned):
            cleaned = "_" + cleaned
        return hashed_name(name, cleaned, self.most, self.algorithm)


def hashed_name(name: str, cleaned: str, most: int, algorithm: str) -> str:
    """The stand-in for `name`, at most `most` characters: `cleaned` (the name made of
    characters the wire accepts) cut to leave room for `_` and the hash."""
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
