"""The app's reuse tables (protocols/reuse.py ReuseTables): callers with an identity (a
gateway key, once keys exist) each get a partition of their own, so no caller can find, and
time, another's pieces; `server.reuse_shared` puts everyone in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from babelgate.protocols import get_codec
from babelgate.protocols.reuse import ReuseTables
from babelgate.providers.presets import DEFAULT_QUIRKS

FIXTURES = Path(__file__).parent / "fixtures"
PAD = "lorem ipsum dolor sit amet " * 40


def body() -> bytes:
    """Claude Code's recorded request, padded so that every piece is kept."""
    data: dict[str, Any] = orjson.loads(
        (FIXTURES / "anthropic" / "claude_code_request.json").read_bytes())
    data["system"].append({"type": "text", "text": PAD})
    for message in data["messages"]:
        if isinstance(message["content"], str):
            message["content"] += PAD
        else:
            message["content"].append({"type": "text", "text": PAD})
    return orjson.dumps(data)


def serve(tables: ReuseTables, identity: str | None, raw: bytes) -> None:
    """What the gateway does with a request of `identity`: decode, parse and render it
    through that caller's table."""
    table = tables.table_for(identity)
    request = get_codec("anthropic").parse_request(table.loads(raw), table)
    get_codec("openai").render_request(request, DEFAULT_QUIRKS["openai"], table)


def test_two_identities_never_find_each_other_s_pieces() -> None:
    tables = ReuseTables(40 << 20)
    raw = body()
    serve(tables, "key-a", raw)
    serve(tables, "key-a", raw)  # seen twice: kept
    b = tables.table_for("key-b")
    serve(tables, "key-b", raw)  # the very same bytes, from another caller
    assert b.hits == 0 and b.misses > 0
    assert tables.table_for("key-a") is not b
    serve(tables, "key-a", raw)  # the same caller again finds all of it
    a = tables.table_for("key-a")
    assert a.hits > 0
    assert tables.stats()["partitions"] == 2
    assert tables.common.stats()["pieces"] == 0  # nothing went to the common table


def test_callers_without_an_identity_share_the_common_table() -> None:
    tables = ReuseTables(40 << 20)
    raw = body()
    for _ in range(3):  # kept when seen twice, found the third time
        serve(tables, None, raw)
    assert tables.table_for(None) is tables.common
    assert tables.common.hits > 0
    assert tables.stats()["partitions"] == 0


def test_reuse_shared_puts_every_caller_in_one_table() -> None:
    tables = ReuseTables(40 << 20, shared=True)
    raw = body()
    serve(tables, "key-a", raw)
    serve(tables, "key-b", raw)  # seen twice in the one table: kept
    serve(tables, "key-a", raw)
    assert tables.table_for("key-b") is tables.table_for("key-a") is tables.common
    assert tables.common.hits > 0


def test_partitions_split_the_budget_and_the_oldest_goes() -> None:
    tables = ReuseTables(16 << 20, partitions=4)
    for n in range(6):
        tables.table_for(f"key-{n}")
    assert tables.stats()["partitions"] == 4
    assert all(tables.table_for(f"key-{n}").budget == 4 << 20 for n in range(2, 6))
    fresh = tables.table_for("key-0")  # dropped with what it held: a new, empty table
    assert fresh.stats()["pieces"] == 0 and fresh.hits == 0
    totals = tables.stats()
    assert totals["budget"] == 16 << 20


def test_health_shows_the_tables() -> None:
    tables = ReuseTables(40 << 20)
    for _ in range(3):
        serve(tables, "key-a", body())
    stats = tables.stats()
    assert stats["hits"] > 0 and stats["misses"] > 0 and stats["pieces"] > 0
