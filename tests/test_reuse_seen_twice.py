"""The reuse table's miss path: a piece is kept the second time it is seen, a body's layout
only when some of its pieces were found or kept, and a run of bodies that find nothing stops
the splitting (one body in `probe_every` is still split, to notice repetition)."""

from __future__ import annotations

from typing import Any

import orjson
from tests.bodies_support import bench_bodies

from babelgate.protocols.reuse import Reuse

PAD = "lorem ipsum dolor sit amet " * 40  # ~1 KB: every padded piece is worth keeping
BENCH = bench_bodies()


def conversation(turns: int, who: str = "") -> dict[str, Any]:
    """An agent's body after `turns` turns: a system prompt and tools it resends, and the
    conversation so far (each item large enough to be kept)."""
    messages = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"{who} question {turn} {PAD}"})
        messages.append({"role": "assistant", "content": f"{who} answer {turn} {PAD}"})
    messages.append({"role": "user", "content": f"{who} and now turn {turns}"})
    return {"model": "m", "system": f"{who} you are helpful {PAD}",
            "tools": [{"name": f"tool{n}", "description": f"{who} {PAD}"} for n in range(3)],
            "messages": messages}


def test_a_piece_seen_once_is_not_kept_and_seen_twice_is() -> None:
    table = Reuse()
    raw = orjson.dumps(conversation(2))
    first = table.loads(raw)
    assert first == orjson.loads(raw)
    stats = table.stats()
    assert stats["pieces"] == 0 and stats["bytes"] == 0 and stats["layouts"] == 0
    assert stats["seen_once"] > 0
    # Not shared: what is derived from it is computed every time and kept nowhere.
    calls = []
    for _ in range(2):
        table.derive(lambda tools: calls.append(1), first["tools"])
    assert len(calls) == 2
    second = table.loads(raw)
    assert second == first and second["tools"] is not first["tools"]
    assert table.stats()["pieces"] > 0 and table.stats()["hits"] == 0
    third = table.loads(raw)
    assert third["tools"] is second["tools"] and third["system"] is second["system"]
    assert table.stats()["hits"] > 0


def test_the_first_sight_is_forgotten_when_too_many_pieces_were_seen_once() -> None:
    table = Reuse(seen_once=4, give_up_after=1_000)
    raw = orjson.dumps(conversation(2))
    table.loads(raw)
    for n in range(3):  # other pieces push this body's out of the set of those seen once
        table.loads(orjson.dumps(conversation(2, f"other {n}")))
    assert table.stats()["seen_once"] <= 4
    table.loads(raw)
    assert table.stats()["pieces"] == 0  # seen "once" again, as if new


def test_seen_once_zero_keeps_a_piece_the_first_time() -> None:
    table = Reuse(seen_once=0)
    raw = orjson.dumps(conversation(2))
    first = table.loads(raw)
    assert table.stats()["pieces"] > 0
    assert table.loads(raw)["tools"] is first["tools"]


def test_an_agent_conversation_is_found_again_from_its_third_turn() -> None:
    table = Reuse()
    first = table.loads(orjson.dumps(conversation(1)))
    # Turn 1 found nothing and kept nothing: no layout is remembered for it.
    assert table.stats()["layouts"] == 0 and table.stats()["pieces"] == 0
    second = table.loads(orjson.dumps(conversation(2)))
    assert table.stats()["hits"] == 0  # its resent pieces are kept now, found next time
    assert table.stats()["layouts"] == 1
    assert second["system"] is not first["system"]
    third = table.loads(orjson.dumps(conversation(3)))
    assert third["system"] is second["system"] and third["tools"] is second["tools"]
    # Turn 2's items come back as the objects kept from it; its last two were new then
    # (seen once) and are kept now.
    assert all(a is b for a, b in zip(third["messages"][:2], second["messages"][:2],
                                      strict=True))
    fourth = table.loads(orjson.dumps(conversation(4)))
    assert all(a is b for a, b in zip(fourth["messages"][:4], third["messages"][:4],
                                      strict=True))
    assert fourth == orjson.loads(orjson.dumps(conversation(4)))


def test_the_benchmark_s_repeating_body_still_hits() -> None:
    """bench claude_code: a new turn number in the last two items of every request."""
    template = orjson.dumps(BENCH.claude_code(False))
    table = Reuse()
    bodies = [table.loads(template.replace(b"@turn@", b"%d" % turn)) for turn in range(4)]
    last = bodies[-1]
    assert last == orjson.loads(template.replace(b"@turn@", b"3"))
    assert last["tools"] is bodies[-2]["tools"] and last["system"] is bodies[-2]["system"]
    assert last["messages"][0] is bodies[-2]["messages"][0]
    assert table.stats()["hits"] > 0


def test_bodies_that_find_nothing_stop_being_split_until_one_repeats() -> None:
    table = Reuse(give_up_after=5, probe_every=4)
    for n in range(5):  # five conversations of their own: each piece seen once
        table.loads(orjson.dumps(conversation(1, f"caller {n}")))
    seen = table.stats()["seen_once"]
    assert seen > 0
    # Given up: the next three are decoded in one go (nothing looked at), the fourth split.
    for n in range(5, 8):
        raw = orjson.dumps(conversation(1, f"caller {n}"))
        assert table.loads(raw) == orjson.loads(raw)
    assert table.stats()["seen_once"] == seen
    table.loads(orjson.dumps(conversation(1, "caller 8")))
    assert table.stats()["seen_once"] > seen
    # A conversation that goes on is still noticed: its pieces are kept once two of the
    # split bodies hold them, and once a third finds them every body is split again.
    for turn in range(1, 12):
        table.loads(orjson.dumps(conversation(turn, "returning")))
    assert table.stats()["pieces"] > 0
    hits = table.stats()["hits"]
    table.loads(orjson.dumps(conversation(12, "returning")))
    assert table.stats()["hits"] > hits


def test_the_digests_of_pieces_seen_once_are_bounded_by_the_budget() -> None:
    table = Reuse(budget=64_000, give_up_after=1_000)
    bound = table.seen_once
    assert 0 < bound < 1_000
    for n in range(100):  # ~700 pieces, each seen once
        table.loads(orjson.dumps(conversation(2, f"caller {n}")))
        assert table.stats()["seen_once"] <= bound
    assert Reuse(budget=128_000).seen_once == 2 * bound  # a larger table remembers more
    table.resize(32_000)
    assert table.stats()["seen_once"] <= bound // 2


def test_a_probe_leaves_the_table_as_splitting_the_body_would() -> None:
    """A probe (after giving up) only digests the pieces of a body that finds nothing; the
    table must end up as if the body had been split: the same pieces kept, the same ones
    seen once, the same counts. A table probing every body against one that never gives up,
    over bodies of their own, a conversation that goes on, and a body holding one piece
    twice (seen twice at once: kept)."""
    probing = Reuse(give_up_after=0, probe_every=1)
    splitting = Reuse(give_up_after=10**9)
    twice = conversation(1, "twice")
    twice["messages"].insert(1, dict(twice["messages"][0]))
    bodies = [conversation(1, f"caller {n}") for n in range(6)]
    bodies += [conversation(turn, "returning") for turn in range(1, 6)]
    bodies += [twice, conversation(1, "caller 2"), BENCH.claude_code_distinct(False)]
    for body in bodies:
        raw = orjson.dumps(body)
        assert probing.loads(raw) == splitting.loads(raw) == orjson.loads(raw)
        assert probing.stats() == splitting.stats()
    assert probing.stats()["pieces"] > 0 and probing.stats()["hits"] > 0



def bodies_sent_twice(table: Reuse) -> dict[str, int]:
    """120 conversations of their own, each sent twice with the 119 others in between."""
    bodies = [orjson.dumps(conversation(2, f"caller {n}")) for n in range(120)]
    for raw in bodies + bodies:
        assert table.loads(raw) == orjson.loads(raw)
    return table.stats()


# ~7 KB bodies of 6 pieces: the table holds about three of them, and remembers every piece
# seen once; every body is split
SMALL = {"budget": 256_000, "seen_once": 10_000, "give_up_after": 10**9}


def test_a_table_that_turns_over_before_pieces_return_stops_keeping_them() -> None:
    """Bodies each sent twice, the second time after the table has turned over (many callers
    taking turns, a client replaying its requests): every piece seen twice used to be copied,
    entered and evicted unfound. Once a run of entries has left the table unfound, only one
    piece in `admit_every` of those seen twice is kept; every answer stays the same."""
    declining = bodies_sent_twice(Reuse(**SMALL))
    keeping = bodies_sent_twice(Reuse(**SMALL, wasted_after=10**9))
    assert keeping["hits"] == declining["hits"] == 0  # nothing came back in time
    second_sights = keeping["kept"]
    assert second_sights >= 120 * 5 and keeping["declined"] == 0
    # The first ones are kept while the table fills and the run of unfound entries grows;
    # of the rest, one in 16.
    assert declining["kept"] + declining["declined"] == second_sights
    assert declining["kept"] < second_sights / 4


def test_a_conversation_that_goes_on_is_found_again_after_the_table_declined() -> None:
    table = Reuse(**SMALL)
    assert bodies_sent_twice(table)["declined"] > 0
    turns = [table.loads(orjson.dumps(conversation(turn, "returning"))) for turn in range(1, 7)]
    # Its pieces come back every turn: one kept among those declined is found, and from
    # then on every piece seen twice is kept again.
    last, before = turns[-1], turns[-2]
    assert last["system"] is before["system"] and last["tools"] is before["tools"]
    assert all(a is b for a, b in zip(last["messages"][:8], before["messages"][:8],
                                      strict=True))
    assert last == orjson.loads(orjson.dumps(conversation(6, "returning")))
