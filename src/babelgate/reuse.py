"""Request bodies decoded once per distinct content, and what codecs derive from them.

An agent resends its whole conversation on every turn: Claude Code's system prompt (~12 KB),
its tool list (~15-30 KB) and every earlier message arrive again byte for byte, and only the
newest messages are new. Decoding and translating all of it again costs the gateway time in
proportion to the conversation's length, on every turn.

`loads(raw)` splits a large body into its top-level values (and a conversation list into its
items) without building them, and looks each large piece up by its bytes: a piece seen before
comes back as the *same* Python object as last time. `derive(value, tag, compute, *args)` then
lets a codec keep what it computed from such an object (the canonical messages of a message,
the canonical tools of a tool list, an upstream's rendering of those tools), so a repeated
piece is neither decoded nor parsed nor rendered again.

The rule that makes this safe: **objects from `loads` and results of `derive` are shared
between requests and never mutated.** Codecs build new containers around them (a request's
message list is new; the messages in it may be shared).

Only pieces of at least MIN_PIECE bytes are cached, in a least-recently-used table bounded by
BUDGET bytes of (estimated) memory; smaller bodies (MIN_BODY) skip all of this, since one
`orjson.loads` is cheaper than splitting them.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import orjson
import xxhash

from babelgate.canonical import invalid

T = TypeVar("T")

MIN_BODY = 4096  # bytes: below this the body is decoded in one go, nothing cached
MIN_PIECE = 128  # bytes: smaller values are decoded each time (a lookup would cost as much)
BUDGET = 40 << 20  # bytes of memory the table may hold (server.reuse_mb), estimated as:
# Measured with tracemalloc on the benchmark's conversations (Claude Code -> OpenAI, Codex ->
# Anthropic, Chat -> Gemini): a piece kept, with its decoded values, canonical parts, upstream
# renderings and their serialised copies, holds 9-11.5 bytes per byte of its JSON.
MEMORY_PER_BYTE = 12
# Top-level keys whose value is a conversation: reused item by item, since each turn appends.
CONVERSATION_KEYS = frozenset({"messages", "input", "contents"})

_SEED = secrets.randbits(64)  # per process: digests of a piece cannot be aimed at in advance
_digest = xxhash.xxh3_64_intdigest
_split_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_split_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
_MISSING = object()
_SERIALISED = "reuse.serialised"


class _Entry:
    __slots__ = ("derived", "key", "shared", "value")

    def __init__(self, key: msgspec.Raw, value: Any) -> None:
        self.key = key
        self.value = value
        self.derived: dict[object, Any] = {}
        self.shared: list[object] = []  # every object this entry owns in Reuse._owner


class Reuse:
    """The table of decoded pieces and their derived results (one per process: see REUSE)."""

    def __init__(self, budget: int = BUDGET, min_piece: int = MIN_PIECE) -> None:
        self.budget = budget
        self.min_piece = min_piece
        self.size = 0  # estimated bytes of memory the entries hold (MEMORY_PER_BYTE)
        self.hits = 0
        self.misses = 0
        # digest of a piece -> its entry, least recently used first. An OrderedDict, not a
        # dict: evicting from the front of a plain dict leaves holes that every later
        # `next(iter(...))` walks again, which under steady eviction cost ~3% of a request.
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        # id() of every shared object (decoded values and derived results) -> its entry. The
        # entry keeps the object alive, so an id here cannot be reused by another object.
        self._owner: dict[int, _Entry] = {}

    # ------------------------------------------------------------------ decoding

    def loads(self, raw: bytes) -> dict[str, Any]:
        """A request body -> its JSON object, or a 400 that says what is wrong with it."""
        if len(raw) >= MIN_BODY and self.budget:
            try:
                pieces = _split_object(raw)
                return {key: self._value(key, piece) for key, piece in pieces.items()}
            except (msgspec.DecodeError, orjson.JSONDecodeError):
                pass  # orjson below says what is wrong, in the words clients already see
        return _loads_object(raw)

    def _value(self, key: str, piece: msgspec.Raw) -> Any:
        if key in CONVERSATION_KEYS and len(piece) >= self.min_piece and (
            memoryview(piece)[0] == 0x5B  # a list
        ):
            return [self._piece(item) for item in _split_list(piece)]
        return self._piece(piece)

    def _piece(self, piece: msgspec.Raw) -> Any:
        if len(piece) < self.min_piece:
            return orjson.loads(memoryview(piece))
        # Looked up by a 64-bit digest (~1 µs for 50 KB, where hashing the bytes themselves
        # takes ~15), then compared byte for byte: a digest only finds a piece, equal bytes
        # prove it, so no crafted collision can swap one client's text for another's.
        digest = _digest(piece, _SEED)
        entry = self._entries.get(digest)
        if entry is not None:
            if entry.key == piece:  # Raw == Raw: a memcmp, no copy of the piece
                self._entries.move_to_end(digest)
                self.hits += 1
                return entry.value
            # another piece with the same digest: the newer one takes its place
            self._forget(self._entries.pop(digest))
        self.misses += 1
        key = piece.copy()  # its own bytes: a slice would keep the whole body alive
        entry = _Entry(key, orjson.loads(memoryview(key)))
        self._entries[digest] = entry
        self._own(entry.value, entry)
        self.size += len(key) * MEMORY_PER_BYTE
        if self.size > self.budget:
            self._evict()
        return entry.value

    def _evict(self) -> None:
        while self.size > self.budget and self._entries:
            self._forget(self._entries.popitem(last=False)[1])

    def _forget(self, entry: _Entry) -> None:
        self.size -= len(entry.key) * MEMORY_PER_BYTE
        for shared in entry.shared:
            if self._owner.get(id(shared)) is entry:
                del self._owner[id(shared)]

    def _own(self, value: object, entry: _Entry) -> None:
        # Only containers and strings made for this entry can key a derivation: a shared
        # constant (None, True, a small int) must never be taken for this entry's object.
        if type(value) is tuple:  # a derive result of several values: each is shared
            for item in value:
                self._own(item, entry)
        elif isinstance(value, (dict, list, str)) or hasattr(value, "__slots__"):
            if self._owner.setdefault(id(value), entry) is entry:
                entry.shared.append(value)
            # The parts of a canonical message are shared with it: they key derivations
            # too (a tool result's rendering, say).
            parts = getattr(value, "parts", None)
            if isinstance(parts, (list, tuple)):
                for part in parts:
                    if self._owner.setdefault(id(part), entry) is entry:
                        entry.shared.append(part)

    # ------------------------------------------------------------------ derived results

    def derive(self, value: object, tag: object, compute: Callable[..., T], *args: Any) -> T:
        """`compute(*args)`, computed once per shared `value` and `tag`. For a value that is
        not shared (a small piece, a body decoded in one go) it is simply computed. `tag`
        names what is derived and everything else it depends on (e.g. the upstream's quirks);
        the result is shared from then on and must not be mutated."""
        entry = self._owner.get(id(value))
        if entry is None:
            return compute(*args)
        key = (id(value), tag)
        found = entry.derived.get(key, _MISSING)
        if found is _MISSING:
            found = entry.derived[key] = compute(*args)
            self._own(found, entry)
        return found  # type: ignore[no-any-return]

    def serialised(self, value: T) -> T | orjson.Fragment:
        """A shared `value` as its JSON, serialised once (an orjson.Fragment, which
        orjson.dumps copies as it is); any other value unchanged. For what a codec renders
        for an upstream and nothing reads before it is sent."""
        entry = self._owner.get(id(value))
        if entry is None:
            return value
        key = (id(value), _SERIALISED)
        found = entry.derived.get(key)
        if found is None:
            found = entry.derived[key] = orjson.Fragment(orjson.dumps(value))
        return found

    def resize(self, budget: int) -> None:
        """A new budget in bytes (0: nothing is kept, every body is decoded in one go)."""
        self.budget = budget
        self._evict()

    def stats(self) -> dict[str, int]:
        """For /health: how much is held and how often a piece was found again."""
        return {"pieces": len(self._entries), "bytes": self.size, "budget": self.budget,
                "hits": self.hits, "misses": self.misses}

    def clear(self) -> None:
        self._entries.clear()
        self._owner.clear()
        self.size = 0


def _loads_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise invalid("request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid(f"request body must be a JSON object, not {type(data).__name__}")
    return data


REUSE = Reuse()
loads = REUSE.loads
derive = REUSE.derive
serialised = REUSE.serialised
