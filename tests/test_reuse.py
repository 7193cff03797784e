"""babelgate.protocols.reuse: large bodies decoded once per distinct piece, and results derived from
shared pieces computed once — without ever changing what a request decodes or renders to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.reuse_support import wire

from babelgate.canonical import GatewayError
from babelgate.protocols import Quirks, get_codec, reuse
from babelgate.protocols.reuse import Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS

FIXTURES = Path(__file__).parent / "fixtures"
PAD = "lorem ipsum dolor sit amet " * 40  # ~1 KB: every padded piece is worth caching


def claude_code_body(last_text: str = "and now the tests") -> dict[str, Any]:
    """Claude Code's recorded request, its messages and system padded past MIN_PIECE, with a
    final user turn that a test can vary (a new turn of the same conversation)."""
    body = orjson.loads((FIXTURES / "anthropic" / "claude_code_request.json").read_bytes())
    body["system"].append({"type": "text", "text": PAD})
    for message in body["messages"]:
        if isinstance(message["content"], str):
            message["content"] = [{"type": "text", "text": message["content"]}]
        message["content"].append({"type": "text", "text": PAD})
    body["messages"].append({"role": "user", "content": [{"type": "text", "text": last_text}]})
    return body


def dumps(body: dict[str, Any]) -> bytes:
    raw = orjson.dumps(body)
    assert len(raw) >= reuse.MIN_BODY
    return raw


# ------------------------------------------------------------------ loads


def test_large_body_decodes_to_what_orjson_gives() -> None:
    raw = dumps(claude_code_body())
    table = Reuse(seen_once=0)
    assert table.loads(raw) == orjson.loads(raw)
    assert table.loads(raw) == orjson.loads(raw)  # and again, from the table


def test_repeated_pieces_come_back_as_the_same_objects() -> None:
    table = Reuse(seen_once=0)
    first = table.loads(dumps(claude_code_body("first question")))
    second = table.loads(dumps(claude_code_body("second question")))
    assert second["tools"] is first["tools"]
    assert second["system"] is first["system"]
    # A conversation is reused item by item: the earlier turns are shared, the new one is not.
    assert second["messages"] is not first["messages"]
    assert all(a is b for a, b in zip(first["messages"][:-1], second["messages"][:-1],
                                      strict=True))
    assert second["messages"][-1]["content"][0]["text"] == "second question"
    # Small values are decoded each time; the top-level object is always the request's own.
    assert second is not first
    stats = table.stats()
    assert stats["hits"] >= len(first["messages"]) + 1
    assert stats["bytes"] <= stats["budget"]


def test_small_bodies_are_not_kept() -> None:
    table = Reuse(seen_once=0)
    assert table.loads(b'{"model": "m", "max_tokens": 5, "messages": []}')["model"] == "m"
    assert table.stats()["pieces"] == 0


def test_the_table_stays_within_its_budget() -> None:
    table = Reuse(budget=8_000, seen_once=0)
    kept = table.loads(dumps(claude_code_body()))
    for n in range(20):
        table.loads(dumps(claude_code_body(f"turn {n} {PAD}")))
        assert table.stats()["bytes"] <= 8_000
    # The first body's pieces were evicted: decoding it again builds new objects, still equal.
    again = table.loads(dumps(claude_code_body()))
    assert again == kept
    assert again["tools"] is not kept["tools"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "request body is empty"),
        (b'{"model": "m", "messages": [' + b'"x", ' * 2000 + b"}", "not valid JSON"),
        (b'{"messages": ["' + b"\xff" * 5000 + b'"]}', "not valid JSON"),
        (b'{"system": "' + b"s" * 5000 + b'"} trailing', "not valid JSON"),
        (b"[" + b"1, " * 3000 + b"1]", "must be a JSON object, not list"),
    ],
)
def test_bad_bodies_get_the_same_400_as_before(raw: bytes, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        Reuse(seen_once=0).loads(raw)
    assert caught.value.kind == "invalid_request"
    assert message in caught.value.message


# ------------------------------------------------------------------ derive


def compute(value: Any, tag: str) -> list[str]:
    CALLS.append(tag)
    return [tag, str(len(value))]


def other(value: Any, tag: str) -> list[str]:
    CALLS.append("other " + tag)
    return [tag]


CALLS: list[str] = []


def test_derive_computes_once_per_shared_value_function_and_arguments() -> None:
    """The key is everything the result is computed from: the value, the function and its
    other arguments."""
    table = Reuse(seen_once=0)
    CALLS.clear()
    body = table.loads(dumps(claude_code_body()))
    one = table.derive(compute, body["tools"], "a")
    assert table.derive(compute, body["tools"], "a") is one
    table.derive(compute, body["tools"], "b")  # another argument
    table.derive(other, body["tools"], "a")  # another function
    # A derived result is itself shared: it can key the next derivation.
    twice = table.derive(compute, one, "c")
    assert table.derive(compute, one, "c") is twice
    # An equal argument (a frozen value, say) finds the same result.
    assert table.derive(compute, body["tools"], "".join(["a"])) is one
    assert CALLS == ["a", "b", "other a", "c"]


def test_derive_keys_on_the_whole_quirks() -> None:
    """Two Quirks that differ in any field get their own result; equal ones share one."""
    table = Reuse(seen_once=0)
    CALLS.clear()
    body = table.loads(dumps(claude_code_body()))
    one = table.derive(compute, body["tools"], Quirks(images=False))
    assert table.derive(compute, body["tools"], Quirks(images=False)) is one
    assert table.derive(compute, body["tools"], Quirks(images=False, auto_cache=True)) is not one
    assert len(CALLS) == 2


def test_derive_recomputes_for_values_that_are_not_shared() -> None:
    table = Reuse(seen_once=0)
    table.loads(dumps(claude_code_body()))
    counted: list[int] = []
    for value in ({"fresh": 1}, None, 5, "short", (), ""):
        table.derive(counted.append, value)
        table.derive(counted.append, value)
    assert len(counted) == 12


# ------------------------------------------------------------------ codecs on shared pieces


def test_claude_code_turns_parse_as_without_reuse(table: Reuse) -> None:
    codec = get_codec("anthropic")
    for text in ("first", "second", "third"):
        raw = dumps(claude_code_body(text))
        shared = codec.parse_request(table.loads(raw), table)
        assert shared == codec.parse_request(orjson.loads(raw))


@pytest.mark.parametrize("upstream", ["openai", "gemini", "openai-responses", "anthropic"])
def test_rendering_a_shared_request_twice_gives_the_same_body(upstream: str, table: Reuse) -> None:
    """Renders may add cache marks to their copy of the tools: the next request must not see
    them (and a provider without auto-cache must not get the other's marks)."""
    # Without the client's own cache marks, so that auto-cache marks the last tool.
    raw = dumps(_without_cache_marks(claude_code_body()))
    client, out = get_codec("anthropic"), get_codec(upstream)
    quirks = DEFAULT_QUIRKS[upstream]
    expected = wire(out.render_request(client.parse_request(orjson.loads(raw)), quirks))
    for _ in range(3):
        request = client.parse_request(table.loads(raw), table)
        assert wire(out.render_request(request, quirks, table)) == expected
    if upstream == "anthropic":
        plain = Quirks(auto_cache=False)
        bare = wire(out.render_request(client.parse_request(table.loads(raw), table), plain, table))
        assert bare == wire(out.render_request(client.parse_request(orjson.loads(raw)), plain))
        assert all("cache_control" not in tool for tool in bare["tools"])
        assert "cache_control" in expected["tools"][-1]  # auto-cache did mark it


def _without_cache_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_cache_marks(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_marks(v) for v in value]
    return value


def test_a_shared_tool_result_is_named_after_each_conversation_s_own_call(table: Reuse) -> None:
    """A tool result carries only the call id; the name comes from the call before it. The
    same result message after a differently named call (another conversation) gets that
    call's name, and the first request keeps its own."""
    result = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_same", "content": PAD}]}

    def conversation(tool: str) -> bytes:
        call = {"role": "assistant", "content": [
            {"type": "text", "text": PAD},
            {"type": "tool_use", "id": "toolu_same", "name": tool, "input": {}}]}
        return dumps({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": PAD + PAD + tool}, call, result]})

    codec = get_codec("anthropic")
    first = codec.parse_request(table.loads(conversation("Read")), table)
    second = codec.parse_request(table.loads(conversation("Grep")), table)
    again = codec.parse_request(table.loads(conversation("Read")), table)
    assert first.messages[2].parts[0].name == "Read"  # type: ignore[union-attr]
    assert second.messages[2].parts[0].name == "Grep"  # type: ignore[union-attr]
    assert again.messages[2] is first.messages[2]  # the named copy is found again
    assert table.stats()["hits"] > 0


def test_a_zero_budget_keeps_nothing_and_changes_nothing() -> None:
    table = Reuse(seen_once=0)
    raw = dumps(claude_code_body())
    kept = table.loads(raw)
    table.resize(0)  # server.reuse_mb: 0
    assert table.stats()["pieces"] == 0 and table.stats()["bytes"] == 0
    again = table.loads(raw)
    assert again == kept == orjson.loads(raw)
    assert again["tools"] is not kept["tools"]
    assert table.stats()["pieces"] == 0


def test_the_configured_budget_reaches_the_app_s_tables() -> None:
    from babelgate.config import Settings
    from babelgate.server.app import App

    app = App(Settings.model_validate({"server": {"reuse_mb": 0.5}, "providers": {},
                                       "routes": {}, "source": "test"}))
    assert app.reuse.stats()["budget"] == 512 * 1024
    assert not app.reuse.shared  # server.reuse_shared: false by default


PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
       "AAAABJRU5ErkJggg==")


@pytest.mark.parametrize("quirks", [
    DEFAULT_QUIRKS["openai"],
    Quirks(images=False),
    Quirks(echo_reasoning=True, reasoning_control="thinking"),
])
def test_openai_rendering_of_shared_turns_depends_on_the_conversation_only(
    quirks: Quirks, table: Reuse,
) -> None:
    """The same messages rendered in two conversations: an image a tool result owes to the
    next user message, and results that answer a call or not, still land where the plain
    rendering puts them."""
    call = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": PAD, "signature": "sig"},
        {"type": "text", "text": PAD},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"p": PAD}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
              "content": [{"type": "text", "text": PAD},
                          {"type": "image", "source": {"type": "base64",
                                                       "media_type": "image/png",
                                                       "data": PNG}}]}]}
    later = {"role": "user", "content": [{"type": "text", "text": PAD + "later"}]}
    first = {"role": "user", "content": PAD + PAD + PAD + "first"}
    conversations = [
        [first, call, result, later],  # the image rides with the result's own turn
        [first, call, later, result],  # the image rides with `later`
        [first, call, later],  # no result: the call is answered as missing
        [first, later, call, result],  # the image ends the conversation
        [later, first, later],
    ]
    codec, out = get_codec("anthropic"), get_codec("openai")
    for _ in range(2):
        for messages in conversations:
            raw = dumps({"model": "m", "max_tokens": 5, "messages": messages})
            plain = wire(out.render_request(codec.parse_request(orjson.loads(raw)), quirks))
            shared = wire(out.render_request(codec.parse_request(table.loads(raw)), quirks, table))
            assert shared == plain
            if messages[2:] == [later, result] and quirks.images:
                # The promise render_messages makes: the image rides in the user message
                # that follows the tool message, ahead of that message's own text (here a
                # message without results of its own: the result came later).
                roles = [m["role"] for m in shared["messages"]]
                assert roles == ["user", "assistant", "tool", "user"]
                after = shared["messages"][3]["content"]
                assert [p["type"] for p in after] == ["image_url", "text"]
                assert after[1]["text"].endswith("later")
    assert table.stats()["hits"] > 0


def test_shared_turns_go_to_an_openai_upstream_pre_serialised(table: Reuse) -> None:
    """What a session resends is serialised once: on the second turn the system message,
    the earlier turns and the tool list reach orjson.dumps as Fragments, the new turn as
    plain data."""
    codec, out, quirks = get_codec("anthropic"), get_codec("openai"), DEFAULT_QUIRKS["openai"]
    codec.parse_request(table.loads(dumps(claude_code_body("first"))), table)
    request = codec.parse_request(table.loads(dumps(claude_code_body("next"))), table)
    body = out.render_request(request, quirks, table)
    kinds = [type(m) for m in body["messages"]]
    assert kinds[0] is orjson.Fragment  # the system message
    assert orjson.Fragment in kinds[1:-1]  # earlier turns
    assert kinds[-1] is dict and "next" in str(body["messages"][-1])
    assert type(body["tools"]) is orjson.Fragment


def test_a_full_table_holds_about_its_budget_in_memory(table: Reuse) -> None:
    """server.reuse_mb is memory, not JSON: with many conversations parsed and rendered (what
    the table keeps grows with both), the memory held stays near the budget."""
    import gc
    import tracemalloc

    budget = 2 << 20
    table.resize(budget)
    codec, out, quirks = get_codec("anthropic"), get_codec("openai"), DEFAULT_QUIRKS["openai"]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            body = claude_code_body(f"question {n}")
            body["system"][-1]["text"] += f" conversation {n}"  # every piece differs
            for message in body["messages"]:
                content = message["content"]
                content[-1]["text"] += f" ({n})"
            out.render_request(codec.parse_request(table.loads(dumps(body)), table), quirks, table)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stats = table.stats()
    assert stats["bytes"] > budget * 0.8  # full
    assert held < budget * 1.25, f"{held / 2**20:.1f} MB held for a {budget / 2**20:.0f} MB budget"


def nested(levels: int) -> str:
    """JSON text `levels` deep: objects in lists, as a schema nests."""
    return '{"a":[' * (levels // 2) + ("[1]" if levels % 2 else "1") + "]}" * (levels // 2)


def depth(value: Any) -> int:
    """How deep a decoded JSON value nests, without recursing (a scalar: 0, `[]`: 1)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            level += 1
            deepest = max(deepest, level)
            todo.extend((item, level) for item in (
                value.values() if isinstance(value, dict) else value))
    return deepest


@pytest.mark.parametrize("pad", [0, 6000], ids=["small body", "large body"])
@pytest.mark.parametrize("where", ["tools", "messages"])
def test_bodies_decode_as_deep_as_orjson_and_no_deeper(pad: int, where: str) -> None:
    """Up to orjson's 1,024 levels a body decodes as orjson decodes it (msgspec, which splits
    large bodies, gives up near 1,000 and leaves the body to orjson); deeper is a 400. What a
    later step cannot follow is refused there (canonical.nesting; the fuzz test holds it)."""
    table = Reuse(seen_once=0)

    def body(levels: int) -> bytes:
        # `levels` deep in all: the body, its list, an item, then the nested value
        value = nested(levels - 3)
        item = f'{{"role":"user","pad":"{"x" * pad}","content":{value}}}'
        return f'{{"model":"m","{where}":[{item}]}}'.encode()

    for levels in (12, 240):
        assert table.loads(body(levels)) == orjson.loads(body(levels))
    for levels in (1000, 1024):  # too deep to compare with ==, which recurses
        assert depth(table.loads(body(levels))) == levels
    for levels in (1025, 1030, 5000):
        with pytest.raises(GatewayError) as refused:
            table.loads(body(levels))
        assert refused.value.status == 400
        assert "depth limit exceeded" in refused.value.message
