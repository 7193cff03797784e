"""The next turn of a conversation, split by comparing bytes with the last one (reuse.py,
"the next turn"): whatever the change, `loads` must give what a plain JSON decoder gives, or
the same 400, and must find the unchanged pieces again as the same objects."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from babelgate.canonical import GatewayError
from babelgate.protocols.reuse import Reuse

TEXT = "The quick brown fox jumps over the lazy dog. " * 6  # > MIN_PIECE per item


def body(turns: int, *, first: str = "model", tail: dict[str, Any] | None = None) -> dict[str, Any]:
    messages = []
    for n in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"{n} {TEXT}"}]})
        messages.append({"role": "assistant", "content": f"answer {n} {TEXT}"})
    data: dict[str, Any] = {first: "claude-x", "system": "sys " + TEXT * 4,
                            "tools": [{"name": f"t{i}", "description": TEXT} for i in range(8)]}
    data["messages"] = messages
    data.update(tail or {"max_tokens": 1000, "metadata": {"user_id": "u"}, "stream": True})
    return data


def decode(table: Reuse, raw: bytes) -> dict[str, Any] | GatewayError:
    try:
        return table.loads(raw)
    except GatewayError as error:
        return error


def expected(raw: bytes) -> dict[str, Any] | str:
    try:
        return Reuse(budget=0).loads(raw)
    except GatewayError as error:
        return error.message


def check(table: Reuse, raw: bytes) -> dict[str, Any] | None:
    got = decode(table, raw)
    want = expected(raw)
    if isinstance(want, str):
        assert isinstance(got, GatewayError) and got.message == want
        return None
    assert got == want
    return got if isinstance(got, dict) else None


def test_a_new_turn_reuses_the_unchanged_items_as_the_same_objects() -> None:
    table = Reuse(seen_once=0)
    first = table.loads(orjson.dumps(body(6)))
    second = table.loads(orjson.dumps(body(7)))
    assert second == orjson.loads(orjson.dumps(body(7)))
    assert table.stats()["layouts"] == 1
    for old, new in zip(first["messages"], second["messages"][:12], strict=True):
        assert new is old
    assert second["tools"] is first["tools"] and second["system"] is first["system"]
    # Small values are decoded anew each time: a request may not change another's.
    assert second["metadata"] == first["metadata"] and second["metadata"] is not first["metadata"]


def variants() -> list[tuple[str, bytes, bytes]]:
    """(name, previous body, next body) pairs of every kind of change."""
    base = body(5)
    grown = body(6)
    out: list[tuple[str, bytes, bytes]] = [
        ("appended", orjson.dumps(base), orjson.dumps(grown)),
        ("same body again", orjson.dumps(base), orjson.dumps(base)),
        ("shrunk", orjson.dumps(grown), orjson.dumps(base)),
        ("emptied", orjson.dumps(base), orjson.dumps({**base, "messages": []})),
        ("pretty printed", json.dumps(base, indent=2).encode(),
         json.dumps(grown, indent=2).encode()),
        ("spaces after separators", json.dumps(base).encode(), json.dumps(grown).encode()),
        ("messages first", orjson.dumps(body(5, first="messages")),
         orjson.dumps(body(6, first="messages"))),
        ("member after changed", orjson.dumps(base),
         orjson.dumps({**grown, "max_tokens": 2000})),
        ("member before changed", orjson.dumps(base),
         orjson.dumps({**grown, "system": "other " + TEXT})),
        ("member added at the end", orjson.dumps(base), orjson.dumps({**grown, "extra": 1})),
        ("conversation no longer a list", orjson.dumps(base),
         orjson.dumps({**base, "messages": "x" * 300})),
    ]
    changed = body(6)
    changed["messages"][3]["content"] = "edited " + TEXT
    out.append(("an early item edited", orjson.dumps(base), orjson.dumps(changed)))
    marked_before, marked = body(5), body(6)
    marked_before["messages"][8]["content"][0]["cache_control"] = {"type": "ephemeral"}
    marked["messages"][10]["content"][0]["cache_control"] = {"type": "ephemeral"}
    out.append(("the cache mark moved", orjson.dumps(marked_before), orjson.dumps(marked)))
    two = orjson.dumps(base)
    out.append(("a duplicated conversation key", two,
                two[:-1] + b',"messages":' + orjson.dumps(grown["messages"]) + b"}"))
    escaped = orjson.dumps(base).replace(b'"system"', b'"syst\\u0065m"')
    out.append(("an escaped key", escaped, orjson.dumps(grown).replace(b'"system"',
                                                                         b'"syst\\u0065m"')))
    raw = orjson.dumps(grown)
    end = raw.rindex(b"]")
    plain = orjson.dumps(base)
    close = plain.rindex(b"]")
    out += [
        ("a comma and no new item", plain, plain[:close] + b" , " + plain[close:]),
        ("a new item without a comma", plain,
         plain[:close] + b'{"role":"user","content":"x"}' + plain[close:]),
        ("new items after a comma and space", plain,
         plain[:close] + b' ,\n {"role":"user","content":"x"} ' + plain[close:]),
    ]
    out += [
        ("a dangling comma", orjson.dumps(base), raw[:end] + b",]" + raw[end + 1:]),
        ("items without a comma", orjson.dumps(base),
         raw[:end] + b'{"role":"user","content":"x"}' + raw[end:]),
        ("a broken new item", orjson.dumps(base), raw[:end - 3] + raw[end:]),
        ("trailing bytes", orjson.dumps(base), raw + b" x"),
    ]
    return out


@pytest.mark.parametrize(("previous", "following"),
                         [(p, f) for _, p, f in variants()], ids=[n for n, _, _ in variants()])
def test_every_kind_of_change_decodes_as_a_plain_decoder_does(previous: bytes,
                                                             following: bytes) -> None:
    table = Reuse(seen_once=0)
    check(table, previous)
    check(table, following)
    check(table, previous)  # and back


def test_random_edits_anywhere_decode_as_a_plain_decoder_does() -> None:
    """Bytes inserted, deleted or replaced at random places of a next turn: the result is
    always the plain decoder's, or its 400."""
    rng = random.Random(20261121)
    previous = orjson.dumps(body(4))
    following = orjson.dumps(body(5))
    alphabet = b' ,:[]{}"\\ax0\n'
    for _ in range(1500):
        table = Reuse(seen_once=0)
        table.loads(previous)
        raw = bytearray(following)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            action = rng.randrange(3)
            if action == 0:
                raw[at:at] = bytes([rng.choice(alphabet)])
            elif action == 1:
                del raw[at:at + rng.randint(1, 4)]
            else:
                raw[at] = rng.choice(alphabet)
        check(table, bytes(raw))


def test_the_budget_holds_with_layouts_and_a_retired_entry_decodes_again() -> None:
    table = Reuse(budget=60_000, seen_once=0)
    for turns in range(1, 30):
        got = table.loads(orjson.dumps(body(turns)))
        assert got == orjson.loads(orjson.dumps(body(turns)))
        assert table.stats()["bytes"] <= 60_000
