"""Request bodies decoded once per distinct content, and what codecs derive from them.

An agent resends its whole conversation on every turn: Claude Code's system prompt (~12 KB),
its tool list (~15-30 KB) and every earlier message arrive again byte for byte, and only the
newest messages are new. Decoding and translating all of it again costs the gateway time in
proportion to the conversation's length, on every turn.

`Reuse.loads(raw)` splits a large body into its top-level values (and a conversation list
into its items) without building them, and looks each large piece up by its bytes: a piece
seen before comes back as the *same* Python object as last time. `Reuse.derive(compute,
value, *args)` then lets a codec keep what it computed from such an object (the canonical
messages of a message, the canonical tools of a tool list, an upstream's rendering of those
tools), so a repeated piece is neither decoded nor parsed nor rendered again.

What makes this safe:
- **Shared values are never changed.** Canonical values are frozen (babelgate.canonical);
  decoded JSON and rendered bodies are treated as read-only, and codecs build new containers
  around shared pieces (a request's message tuple is new; the messages in it may be shared).
- **A derived result is keyed by everything it is computed from**: the function, the shared
  value and every further argument (a frozen Quirks, say), so a renderer that starts reading
  one more quirk cannot return what it rendered for another upstream. The arguments must be
  hashable, which frozen values are.

Where it sits: in the protocols layer, next to the codecs that use it; nothing below them
(babelgate.canonical) knows it. There is no process-wide table: the app makes its tables
(`ReuseTables`, one per caller identity or one shared) and hands one to every codec call of a
request. A codec called without one (`reuse=None`: tests, tools) computes everything.

Finding the pieces of a body costs a scan of all its bytes, unless the body is the next turn
of one seen before: the layout of the last body (where each piece lay in it) is kept, and a
body that begins and ends with the same bytes as that one, up to some items of its
conversation, gets those pieces from the layout after two or three memory compares; only the
items in between are split and looked up (see "the next turn" below).

Only pieces of at least MIN_PIECE bytes are cached, in a least-recently-used table bounded by
BUDGET bytes of (estimated) memory; smaller bodies (MIN_BODY) skip all of this, since one
`orjson.loads` is cheaper than splitting them.

Most pieces are never sent again (each conversation's newest items; everything of a
conversation of its own), and keeping them costs more than decoding them. So a piece is
kept the second time it is seen (SEEN_ONCE); a layout is kept only for a body that found or
kept a piece; and after a run of bodies that found nothing (GIVE_UP_AFTER) bodies are decoded
in one go, one in PROBE_EVERY still looked at to notice when pieces start to repeat (its
pieces digested, and the body split only if one of them was seen before). An agent's
conversation is then found again from its third turn instead of its second.

Seen twice is not always enough: a piece whose next sight comes only after the table has
turned over (many conversations taking turns, bodies each sent twice: a retry, a replay) is
copied, entered and evicted without ever being found. So when WASTED_AFTER entries in a row
left the table never found (and none was found meanwhile for the first time), only one piece
in ADMIT_EVERY of those seen twice is kept, until an entry is found again: the table stops
paying for pieces it cannot hold long enough, and a conversation that goes on still gets in.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import msgspec
import orjson
import xxhash

from babelgate.canonical import invalid

T = TypeVar("T")
V = TypeVar("V")
K = TypeVar("K", bound=Hashable)

MIN_BODY = 4096  # bytes: below this the body is decoded in one go, nothing cached
MIN_PIECE = 128  # bytes: smaller values are decoded each time (a lookup would cost as much)
BUDGET = 40 << 20  # bytes of memory the table may hold (server.reuse_mb), estimated as:
# Measured with tracemalloc on the benchmark's conversations (Claude Code -> OpenAI, Codex ->
# Anthropic, Chat -> Gemini): a piece kept, with its decoded values, canonical parts, upstream
# renderings and their serialised copies, holds 9-11.5 bytes per byte of its JSON.
MEMORY_PER_BYTE = 12
# Top-level keys whose value is a conversation: reused item by item, since each turn appends.
CONVERSATION_KEYS = frozenset({"messages", "input", "contents"})

# Layouts (see "the next turn" below): bodies that begin with the same HEAD bytes are looked
# up together, at most PER_HEAD of them; all layouts together hold at most a quarter of the
# budget (their bodies' bytes count against it).
HEAD = 256
PER_HEAD = 4

# A piece enters the table the second time it is seen: most pieces are sent once (each
# conversation's newest items; every piece of a conversation of its own), and keeping those
# cost a copy, an entry and the bookkeeping of everything derived from them, then evicted
# pieces that do come back. The digests of pieces seen once are remembered, the oldest
# forgotten first: one per SEEN_ONCE_BYTES of the budget (each takes ~70 bytes: a tenth of
# the budget on top of it; 65,536 digests for the default 40 MB).
SEEN_ONCE_BYTES = 640
# When GIVE_UP_AFTER bodies in a row found nothing and kept nothing, splitting them is wasted
# (it costs about half a decode): bodies are decoded in one go, and only one in PROBE_EVERY is
# looked at, to notice when pieces start to repeat (`_glimpse`: its pieces are digested, not
# decoded, unless one of them was seen before).
GIVE_UP_AFTER = 32
PROBE_EVERY = 16
# When WASTED_AFTER entries in a row were evicted without having been found once since they
# were kept, and no entry was found for the first time meanwhile, keeping a piece costs more
# than it brings (its next sight comes after the table turned over): only one piece in
# ADMIT_EVERY of those seen twice is kept, until a kept piece is found again.
WASTED_AFTER = 64
ADMIT_EVERY = 16
# Results of small pure functions of a small key (a tool name's wire form, a cleaned tool
# schema) each table remembers, whatever its budget: see Reuse.memo.
MEMO_ENTRIES = 1024

_SEED = secrets.randbits(64)  # per process: digests of a piece cannot be aimed at in advance
_digest = xxhash.xxh3_64_intdigest
_split_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_split_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
_MISSING = object()
_GONE = object()  # the value of an entry that left the table (a layout may still point at it)
_WS = rb"[ \t\r\n]*"
_OBJECT_START = re.compile(_WS + rb"\{").match
_OBJECT_END = re.compile(_WS + rb"\}" + _WS + rb"\Z").match
_MEMBER_HEAD = re.compile(_WS + rb",?" + _WS + rb'"([^"\\]*)"' + _WS + rb":" + _WS).match
_ITEM_GAP = re.compile(_WS + rb",?" + _WS).match  # matches at any position (maybe empty)
_ARRAY_END = re.compile(_WS + rb"\]").match
_SERIALISED = "reuse.serialised"
_CONTAINERS = frozenset({tuple, dict, list})


class _Entry:
    __slots__ = ("derived", "digest", "found", "key", "shared", "value")

    def __init__(self, digest: int, key: msgspec.Raw, value: Any) -> None:
        self.digest = digest
        self.key = key
        self.value = value
        self.found = False  # found again since it was kept (see WASTED_AFTER)
        self.derived: dict[object, Any] = {}
        self.shared: list[object] = []  # every object this entry owns in Reuse._owner


class Reuse:
    """A table of decoded pieces and their derived results (made by the app: ReuseTables)."""

    def __init__(self, budget: int = BUDGET, min_piece: int = MIN_PIECE,
                 seen_once: int | None = None, give_up_after: int = GIVE_UP_AFTER,
                 probe_every: int = PROBE_EVERY, wasted_after: int = WASTED_AFTER,
                 admit_every: int = ADMIT_EVERY) -> None:
        self.budget = budget
        self.min_piece = min_piece
        # How many digests of pieces seen once are remembered (None: one per SEEN_ONCE_BYTES
        # of the budget); 0: a piece is kept the first time it is seen.
        self._seen_once = seen_once
        self.seen_once = _seen_once_for(budget) if seen_once is None else seen_once
        self.give_up_after = give_up_after
        self.probe_every = probe_every
        self.wasted_after = wasted_after
        self.admit_every = admit_every
        self.size = 0  # estimated bytes of memory the entries hold (MEMORY_PER_BYTE)
        self.hits = 0
        self.misses = 0
        self.kept = 0  # pieces entered in the table
        # digest of a piece -> its entry, least recently used first. An OrderedDict, not a
        # dict: evicting from the front of a plain dict leaves holes that every later
        # `next(iter(...))` walks again, which under steady eviction cost ~3% of a request.
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        # id() of every shared object (decoded values and derived results) -> its entry. The
        # entry keeps the object alive, so an id here cannot be reused by another object.
        self._owner: dict[int, _Entry] = {}
        # digest of a body's first HEAD bytes -> layouts of recent bodies, newest first
        self._layouts: OrderedDict[int, list[_Layout]] = OrderedDict()
        self._layout_bytes = 0
        # digests of pieces seen once (see SEEN_ONCE); `_once_order` forgets the oldest. A
        # digest admitted meanwhile stays in the deque: forgetting it later is a no-op.
        self._once: set[int] = set()
        self._once_order: deque[int] = deque()
        self._barren = 0  # bodies in a row that found nothing
        self._skipped = 0  # bodies decoded in one go since giving up (see GIVE_UP_AFTER)
        self._kept = False  # whether the body being split found or kept a piece
        # Entries evicted in a row never found since they were kept (see WASTED_AFTER); while
        # they are too many, pieces seen twice (candidates) and those of them not kept.
        self._wasted = 0
        self._candidates = 0
        self._declined = 0
        self._memo: dict[tuple[Callable[..., Any], Hashable], Any] = {}  # see memo()
        # The bare-event layouts this caller's stream decoders learnt last (learnt_layout.py,
        # `Learnt`), by decoder class and kind of piece: the next stream from the same
        # upstream starts with them instead of learning them again. A few keys at most; each
        # value is immutable and replaced, never changed.
        self.stream_layouts: dict[Hashable, Any] = {}

    # ------------------------------------------------------------------ decoding

    def loads(self, raw: bytes) -> dict[str, Any]:
        """A request body -> its JSON object, or a 400 that says what is wrong with it."""
        found = self.lookup(raw)
        return found if found is not None else loads_object(raw)

    def lookup(self, raw: bytes) -> dict[str, Any] | None:
        """A request body's JSON object made from the table's pieces, or None when the body
        is better decoded in one go by the caller (`loads_object`, or a codec's typed
        reader): a small body, the table off or given up on (GIVE_UP_AFTER), or bytes the
        split cannot read (the one-go decode then says what is wrong)."""
        if len(raw) >= MIN_BODY and self.budget:
            try:
                found = self._next_turn(raw)
                if found is None:
                    pieces = None
                    if self._barren >= self.give_up_after:
                        self._skipped += 1
                        if self._skipped % self.probe_every:
                            return None
                        pieces = _split_object(raw)
                        if not self._glimpse(pieces):
                            return None
                    found = self._split(raw, pieces or _split_object(raw))
                else:
                    self._barren = 0
                return found
            except (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError):
                # orjson says what is wrong, in the words clients already see (msgspec
                # recurses, so a body nested ~1,000 deep ends its stack first; orjson refuses
                # past 1,024 levels, and what it takes is refused where a later step cannot
                # follow it: see canonical.nesting)
                pass
        return None

    def _split(self, raw: bytes, pieces: dict[str, msgspec.Raw]) -> dict[str, Any]:
        """Every top-level value (and conversation item) looked up in the table; on the way,
        where each lies in `raw` (a layout), for the conversation's next turn."""
        result: dict[str, Any] = {}
        members: list[_Member] = []
        items: list[_Item] = []
        self._kept = False
        hits = self.hits
        conversation = -1
        close = -1
        start = -1
        found = _OBJECT_START(raw)
        end = found.end() if found else -1  # where the last value ended; -1: not mapped
        for key, piece in pieces.items():
            if end >= 0:
                start = _value_start(raw, end, key, piece)
            if key in CONVERSATION_KEYS and len(piece) >= self.min_piece and (
                memoryview(piece)[0] == 0x5B  # a list
            ):
                values: list[Any] = []
                entries: list[_Entry | None] = []
                item_pieces = _split_list(piece)
                for item in item_pieces:
                    value, entry = self._take(item)
                    values.append(value)
                    entries.append(entry)
                if conversation == -1 and start >= 0:
                    close = _map_items(raw, start, piece, item_pieces, entries, items)
                    conversation = len(members) if close >= 0 else -2
                else:
                    conversation = -2  # two conversations, or one not found: no layout
                result[key] = values
                members.append((key, start, start + len(piece), None))
            else:
                result[key], entry = self._take(piece)
                members.append((key, start, start + len(piece), entry))
            end = start + len(piece) if start >= 0 else -1
        if self.hits == hits:
            # Nothing found: what it kept is a guess, which bodies sent twice and never again
            # (a replay, the bench's rounds) would keep making, each one splitting every body
            # for GIVE_UP_AFTER more; only a piece found again proves that pieces repeat.
            self._barren += 1
        else:
            self._barren = self._skipped = 0
        if self._kept and conversation >= 0 and end >= 0 and _OBJECT_END(raw, end):
            # A layout only for a body that found or kept a piece (a next turn of any other
            # would find none of its pieces in the table, and layouts of conversations that
            # go on stay).
            self._remember(_Layout(raw, members, conversation, items, close))
        return result

    def _glimpse(self, pieces: dict[str, msgspec.Raw]) -> bool:
        """A probe after giving up (PROBE_EVERY): True if a piece of the body is in the table
        or was seen once (the body is then split as usual, which keeps it); if none is, each
        is noted as seen once, as splitting would have, without decoding it (the caller
        decodes the body in one go, or a typed reader reads it)."""
        if not self.seen_once:
            return True  # every piece is kept the first time it is seen: split
        digests: dict[int, None] = {}  # in order; one seen twice in this body is kept
        entries, once, least = self._entries, self._once, self.min_piece
        for key, piece in pieces.items():
            items = [piece]
            if key in CONVERSATION_KEYS and len(piece) >= least and (
                memoryview(piece)[0] == 0x5B  # a list
            ):
                items = _split_list(piece)
            for item in items:
                if len(item) >= least:
                    digest = _digest(item, _SEED)
                    if digest in entries or digest in once or digest in digests:
                        return True
                    digests[digest] = None
        self.misses += len(digests)
        order = self._once_order
        for digest in digests:
            once.add(digest)
            order.append(digest)
        while len(order) > self.seen_once:
            once.discard(order.popleft())
        self._barren += 1
        return False

    def _take(self, piece: msgspec.Raw) -> tuple[Any, _Entry | None]:
        """A piece's value, and its entry in the table (None for a small piece, decoded anew
        each time, and for one too large to stay)."""
        if len(piece) < self.min_piece:
            return orjson.loads(memoryview(piece)), None
        # Looked up by a 64-bit digest (~1 µs for 50 KB, where hashing the bytes themselves
        # takes ~15), then compared byte for byte: a digest only finds a piece, equal bytes
        # prove it, so no crafted collision can swap one client's text for another's.
        digest = _digest(piece, _SEED)
        entry = self._entries.get(digest)
        if entry is not None:
            if entry.key == piece:  # Raw == Raw: a memcmp, no copy of the piece
                self._entries.move_to_end(digest)
                self.hits += 1
                self._kept = True
                if not entry.found:
                    entry.found = True
                    self._wasted = 0
                return entry.value, entry
            # another piece with the same digest: the newer one takes its place
            self._forget(self._entries.pop(digest))
        self.misses += 1
        if self.seen_once:
            once = self._once
            if digest not in once:
                # Seen for the first time: decoded from the body's own bytes and not shared
                # (derive and serialised then simply compute). A digest shared with another
                # piece only lets that one in a turn early; the table compares bytes.
                once.add(digest)
                order = self._once_order
                order.append(digest)
                if len(order) > self.seen_once:
                    once.discard(order.popleft())
                return orjson.loads(memoryview(piece)), None
            if self._wasted >= self.wasted_after:
                # The table turns over before pieces come back: keep one in ADMIT_EVERY
                # (the rest stay seen once, each sight another chance), and let the body
                # count as one that kept nothing (no layout).
                self._candidates += 1
                if self._candidates % self.admit_every:
                    self._declined += 1
                    return orjson.loads(memoryview(piece)), None
            else:
                self._kept = True
            once.discard(digest)
        else:
            self._kept = True
        key = piece.copy()  # its own bytes: a slice would keep the whole body alive
        value = orjson.loads(memoryview(key))
        entry = _Entry(digest, key, value)
        self._entries[digest] = entry
        self.kept += 1
        self._own(value, entry)
        self.size += len(key) * MEMORY_PER_BYTE
        if self.size > self.budget:
            self._evict()  # possibly this very entry, when it alone is over the budget
        return value, (entry if entry.value is value else None)

    def _again(self, raw: bytes, start: int, end: int, entry: _Entry | None,
               ) -> tuple[Any, _Entry | None]:
        """A piece a layout placed at raw[start:end], unchanged since: its entry's value, or
        decoded anew if small or gone from the table meanwhile."""
        if entry is None or entry.value is _GONE:
            return self._take(msgspec.Raw(memoryview(raw)[start:end]))
        self._entries.move_to_end(entry.digest)
        self.hits += 1
        if not entry.found:
            entry.found = True
            self._wasted = 0
        return entry.value, entry

    # ------------------------------------------------------------------ the next turn
    # An agent's next request is its last one with new items at the end of the conversation
    # (and perhaps the last old item changed: Claude Code moves its cache mark). The layout
    # of the last body says where each piece lay in it; comparing bytes (memcmp, ~10 GB/s)
    # finds what is unchanged, so only the new items are split (msgspec skips ~1.5 GB/s) and
    # looked up. Anything unusual (an edit elsewhere, a shorter body) takes _split instead.

    def _next_turn(self, raw: bytes) -> dict[str, Any] | None:
        layouts = self._layouts.get(_digest(memoryview(raw)[:HEAD], _SEED))
        if layouts:
            for layout in layouts:
                found = self._extend(raw, layout)
                if found is not None:
                    return found
        return None

    def _extend(self, raw: bytes, old: _Layout) -> dict[str, Any] | None:
        before = memoryview(old.raw)
        if not raw.endswith(before[old.close:]):  # the conversation's end and all after it
            return None
        close = old.close + len(raw) - len(old.raw)
        opening = old.members[old.conversation][1]
        kept = _kept_items(raw, before, opening, old.items)
        if kept < 0:
            return None
        begin = old.items[kept - 1][1] if kept else opening + 1
        if begin > close:
            return None
        first = _gap_end(raw, begin, close)
        comma = b"," in raw[begin:first]
        if comma != (kept > 0 and first < close):
            return None  # a dangling comma, or items not separated: _split says what
        pieces = _split_list(b"[" + raw[first:close] + b"]") if first < close else []
        values: list[Any] = []
        items: list[_Item] = []
        for start, end, was in old.items[:kept]:
            value, entry = self._again(raw, start, end, was)
            values.append(value)
            items.append((start, end, entry))
        end = first
        for piece in pieces:
            start = _gap_end(raw, end)
            end = start + len(piece)
            value, entry = self._take(piece)
            values.append(value)
            items.append((start, end, entry))
        # The new items parsed as the list's whole rest, so only whitespace is left up to the
        # closing bracket (found in place by the tail compare above).
        shift = len(raw) - len(old.raw)
        result: dict[str, Any] = {}
        members: list[_Member] = []
        for i, (key, old_start, old_end, was) in enumerate(old.members):
            if i == old.conversation:
                result[key] = values
                members.append((key, old_start, old_end + shift, None))
                continue
            moved = shift if old_start > old.close else 0  # after the conversation
            start, end = old_start + moved, old_end + moved
            result[key], entry = self._again(raw, start, end, was)
            members.append((key, start, end, entry))
        self._remember(_Layout(raw, members, old.conversation, items, close), replacing=old)
        return result

    def _remember(self, layout: _Layout, replacing: _Layout | None = None) -> None:
        if replacing is not None:
            self._drop_layout(replacing)
        if len(layout.raw) > self.budget // 4:
            return
        head = _digest(memoryview(layout.raw)[:HEAD], _SEED)
        layouts = self._layouts.setdefault(head, [])
        self._layouts.move_to_end(head)
        layouts.insert(0, layout)
        self._layout_bytes += len(layout.raw)
        self.size += len(layout.raw)
        if len(layouts) > PER_HEAD:
            self._drop_layout(layouts[-1], head)
        while self._layout_bytes > self.budget // 4 and self._layouts:
            oldest_head, oldest = next(iter(self._layouts.items()))
            self._drop_layout(oldest[-1], oldest_head)
        if self.size > self.budget:
            self._evict()

    def _drop_layout(self, layout: _Layout, head: int | None = None) -> None:
        if head is None:
            head = _digest(memoryview(layout.raw)[:HEAD], _SEED)
        layouts = self._layouts.get(head)
        if layouts is None:
            return
        for i, candidate in enumerate(layouts):
            if candidate is layout:
                del layouts[i]
                self._layout_bytes -= len(layout.raw)
                self.size -= len(layout.raw)
                break
        if not layouts:
            del self._layouts[head]

    def _evict(self) -> None:
        while self.size > self.budget and self._entries:
            entry = self._entries.popitem(last=False)[1]
            if not entry.found:
                self._wasted += 1
            self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        self.size -= len(entry.key) * MEMORY_PER_BYTE
        # Everything in `shared` is owned by this entry (`_own` adds only what it took), and
        # stays alive while listed there, so its id cannot have been reused by another entry's
        # object: drop the mappings without looking first (one probe each instead of two).
        owner = self._owner
        for shared in entry.shared:
            owner.pop(id(shared), None)
        # A layout may still point at the entry: let go of what it holds.
        entry.value = _GONE
        entry.derived = {}
        entry.shared = []

    def _own(self, value: object, entry: _Entry) -> None:
        """Make `value` (a decoded piece or a derived result) and the containers it holds
        shared, owned by `entry`: each may key a derivation (a tool result's rendering) or
        be serialised (a rendered turn). Only containers, non-empty strings and objects made
        for this entry are owned: a shared constant (None, True, a small int, the empty
        tuple or string) must never be taken for this entry's object."""
        owner, shared = self._owner, entry.shared
        kind = type(value)
        if isinstance(value, tuple):
            # A sequence of canonical values (a tool list), or a derive result of several
            # values: the tuple and each of its items are shared.
            if value:
                if owner.setdefault(id(value), entry) is entry:
                    shared.append(value)
                for item in value:
                    self._own(item, entry)
            return
        if kind is dict or kind is list or (kind is str and value):
            if owner.setdefault(id(value), entry) is entry:
                shared.append(value)
            return
        slots = getattr(kind, "__slots__", None)
        if not slots or isinstance(value, (dict, list, str)):
            return
        if owner.setdefault(id(value), entry) is entry:
            shared.append(value)
        self._own_held(value, slots, entry)

    def _own_held(self, value: object, slots: tuple[str, ...], entry: _Entry) -> None:
        """An object's containers are shared with it (a message's parts, a piece's rendered
        turn), a tuple's items too (the parts themselves)."""
        owner, shared = self._owner, entry.shared
        for name in slots:
            held = getattr(value, name, None)
            if held and type(held) in _CONTAINERS:
                if owner.setdefault(id(held), entry) is entry:
                    shared.append(held)
                if type(held) is tuple:
                    for item in held:
                        if owner.setdefault(id(item), entry) is entry:
                            shared.append(item)

    # ------------------------------------------------------------------ derived results

    def derive(self, compute: Callable[..., T], value: V, *args: Hashable) -> T:
        """`compute(value, *args)`, computed once per shared `value` and arguments. For a
        value that is not shared (a small piece, a body decoded in one go) it is simply
        computed. The key is (value, compute, args): everything the result is made from, by
        construction, so `compute` must be a pure function of its arguments (a module-level
        function; its arguments beyond the value hashable: strings, tuples, frozen values).
        The result is shared from then on and must not be changed."""
        entry = self._owner.get(id(value))
        if entry is None:
            return compute(value, *args)
        key = (id(value), compute, args)
        found = entry.derived.get(key, _MISSING)
        if found is _MISSING:
            found = entry.derived[key] = compute(value, *args)
            self._own(found, entry)
        result: T = found  # (no typing.cast: a function call on every derive)
        return result

    def keeps(self, value: object) -> bool:
        """Whether `value` is shared through this table: what `derive` computes from it is
        then computed once, else on every call."""
        return id(value) in self._owner

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

    def memo(self, compute: Callable[[K], T], key: K) -> T:
        """`compute(key)`, remembered by this table for a pure function of a small hashable
        key: a name's wire form, a tool schema cleaned for Gemini (keyed by its JSON). For
        work that repeats across requests whose pieces are not shared (a new conversation
        with the same tools). The table's own, not the process's: a caller cannot time
        whether another caller's key sent a name or schema before. At most MEMO_ENTRIES are
        kept, then all are forgotten at once (these sets are small and stable: a reset is
        rare). The result is shared from then on and must not be changed."""
        memo = self._memo
        found = memo.get((compute, key), _MISSING)
        if found is _MISSING:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            found = memo[compute, key] = compute(key)
        result: T = found
        return result

    def resize(self, budget: int) -> None:
        """A new budget in bytes (0: nothing is kept, every body is decoded in one go)."""
        self.budget = budget
        if self._seen_once is None:
            self.seen_once = _seen_once_for(budget)
            while len(self._once_order) > self.seen_once:
                self._once.discard(self._once_order.popleft())
        while self._layout_bytes > budget // 4 and self._layouts:
            oldest_head, oldest = next(iter(self._layouts.items()))
            self._drop_layout(oldest[-1], oldest_head)
        self._evict()

    def stats(self) -> dict[str, int]:
        """For /health: how much is held and how often a piece was found again."""
        return {"pieces": len(self._entries), "bytes": self.size, "budget": self.budget,
                "hits": self.hits, "misses": self.misses, "layouts": sum(
                    len(layouts) for layouts in self._layouts.values()),
                "seen_once": len(self._once), "kept": self.kept,
                "declined": self._declined}

    def clear(self) -> None:
        for entry in self._entries.values():
            entry.value = _GONE  # layouts dropped below may be referenced elsewhere
        self._entries.clear()
        self._owner.clear()
        self._layouts.clear()
        self._layout_bytes = 0
        self.size = 0
        self._once.clear()
        self._once_order.clear()
        self._barren = self._skipped = 0
        self._wasted = self._candidates = self._declined = 0
        self._memo.clear()
        self.stream_layouts.clear()


# A top-level member: its key, where its value starts and ends in the body, and its entry
# (None for a small value and for the conversation, whose items are kept one by one).
_Member = tuple[str, int, int, "_Entry | None"]
_Item = tuple[int, int, "_Entry | None"]  # a conversation item: start, end, entry


class _Layout:
    """Where the pieces of one body lie: enough to split the next turn of its conversation
    by comparing bytes. `close` is the offset of the conversation's closing bracket."""

    __slots__ = ("close", "conversation", "items", "members", "raw")

    def __init__(self, raw: bytes, members: list[_Member], conversation: int,
                 items: list[_Item], close: int) -> None:
        self.raw = raw
        self.members = members
        self.conversation = conversation  # index of the conversation in members
        self.items = items
        self.close = close


def _gap_end(raw: bytes, start: int, end: int | None = None) -> int:
    """Past the whitespace and comma between two list items from `start` on."""
    found = _ITEM_GAP(raw, start, len(raw) if end is None else end)
    assert found is not None  # every part of the pattern is optional
    return found.end()


def _value_start(raw: bytes, end: int, key: str, piece: msgspec.Raw) -> int:
    """Where the value of member `key` starts, the previous value having ended at `end`;
    -1 when the body's bytes there are not plainly that (an escaped key, say)."""
    found = _MEMBER_HEAD(raw, end)
    if found is None or found[1] != key.encode():
        return -1
    start = found.end()
    return start if raw.startswith(piece, start) else -1


def _map_items(raw: bytes, start: int, array: msgspec.Raw, pieces: list[msgspec.Raw],
               entries: list[_Entry | None], items: list[_Item]) -> int:
    """Place the items (`pieces`, with their `entries`) of the list at raw[start:] in
    `items`; the offset of its closing bracket, or -1."""
    end = start + 1
    for piece, entry in zip(pieces, entries, strict=True):
        item_start = _gap_end(raw, end)
        end = item_start + len(piece)
        items.append((item_start, end, entry))
    closing = _ARRAY_END(raw, end)
    if closing is None or closing.end() != start + len(array):
        items.clear()
        return -1
    return closing.end() - 1


def _kept_items(raw: bytes, before: memoryview, opening: int, items: list[_Item]) -> int:
    """How many leading items of the old conversation `raw` begins with, everything before
    them included; -1 when even the part before the conversation changed."""
    count = len(items)
    # The usual next turn first: all old items resent, or all but the last one or two.
    for kept in (count, count - 1, count - 2):
        if kept > 0 and raw.startswith(before[:items[kept - 1][1]]):
            return kept
    if not raw.startswith(before[:opening + 1]):
        return -1
    low, high = 0, min(count, count - 3)  # the largest kept in [low, high] that holds
    while low < high:
        middle = (low + high + 1) // 2
        if raw.startswith(before[:items[middle - 1][1]]):
            low = middle
        else:
            high = middle - 1
    return low


def _seen_once_for(budget: int) -> int:
    """How many digests of pieces seen once a table of `budget` bytes remembers (at least one,
    so that a small table still keeps a piece only when it is seen twice)."""
    return max(budget // SEEN_ONCE_BYTES, 1) if budget else 0


def loads_object(raw: bytes) -> dict[str, Any]:
    """A request body decoded in one go: its JSON object, or the 400 saying what is wrong."""
    if not raw:
        raise invalid("request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def unshared(reuse: Reuse | None) -> Reuse:
    """The table a codec was given, or for a call without one (tests, tools) an empty one that
    keeps nothing: every piece is decoded and every result computed."""
    return reuse if reuse is not None else Reuse(budget=0)


class ReuseTables:
    """The app's reuse tables: which one serves a request depends on who sends it.

    A piece found again is found faster, and that difference can be timed: a caller who
    guesses another caller's system prompt or files could learn whether they were sent. So
    callers with an identity (a gateway key) each get a partition of their own, unless
    `shared` (server.reuse_shared) says one table may serve everyone; callers without one
    share the common table. Partitions split the byte budget: each holds at most
    budget / partitions, and at most `partitions` of them are kept (the least recently used
    is dropped, with everything it holds), so all of them together stay within the budget
    the common table has.
    """

    def __init__(self, budget: int = BUDGET, *, shared: bool = False, partitions: int = 16,
                 min_piece: int = MIN_PIECE) -> None:
        self.budget = budget
        self.shared = shared
        self.partitions = partitions
        self.min_piece = min_piece
        self.common = Reuse(budget, min_piece)
        self._by_identity: OrderedDict[str, Reuse] = OrderedDict()

    def table_for(self, identity: str | None) -> Reuse:
        """The table for a caller (`identity` None: no gateway key, the common table)."""
        if identity is None or self.shared:
            return self.common
        table = self._by_identity.get(identity)
        if table is None:
            if len(self._by_identity) >= self.partitions:
                self._by_identity.popitem(last=False)
            table = Reuse(self.budget // self.partitions, self.min_piece)
            self._by_identity[identity] = table
        else:
            self._by_identity.move_to_end(identity)
        return table

    def stats(self) -> dict[str, int]:
        """For /health: the common table's figures, hits and misses over all tables, and how
        many partitions are held."""
        found = self.common.stats()
        for table in self._by_identity.values():
            for name, value in table.stats().items():
                if name != "budget":
                    found[name] += value
        found["partitions"] = len(self._by_identity)
        return found
