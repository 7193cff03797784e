"""Client request parsers reusing their work across requests (babelgate.protocols.reuse).

An agent resends its whole conversation every turn. Parsed through `reuse.loads`, a repeated
item comes back as the same object, and the parsers keep what they made of it: the canonical
Request must be exactly what a plain parse gives, the Parts of unchanged items are the same
objects, and nothing one request built may change a Request already handed out.

Bodies: the benchmark's realistic ones (bench/bodies.py) and the protocol fixtures, whose items
are padded with a field the parsers ignore so that each one is large enough to be reused.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from tests.bodies_support import bench_bodies, compact, fixture

from babelgate.canonical import GatewayError, Message, Request, Text, ToolResult
from babelgate.protocols import get_codec, reuse
from babelgate.protocols.reuse import Reuse

JSON = dict[str, Any]

RESPONSES, CHAT, ANTHROPIC = "openai-responses", "openai", "anthropic"
CONVERSATION = {RESPONSES: "input", CHAT: "messages", ANTHROPIC: "messages"}
# A field each protocol defines on its items (or tolerates) and the parsers ignore.
PAD_KEY = {RESPONSES: "id", CHAT: "name", ANTHROPIC: "id"}
BENCH = bench_bodies()


def padded(protocol: str, body: JSON) -> JSON:
    """`body` with every conversation item and the tool list over reuse.MIN_PIECE bytes, and
    the whole over reuse.MIN_BODY, so that each piece is reused."""
    body = copy.deepcopy(body)
    for i, item in enumerate(body[CONVERSATION[protocol]]):
        item[PAD_KEY[protocol]] = f"pad{i}-" + "x" * max(reuse.MIN_PIECE, 600)
    if "tools" in body:
        body["tools"][0].setdefault("description", "")
        body["tools"][0]["description"] += " " * max(reuse.MIN_PIECE, 600)
    assert len(compact(body)) >= reuse.MIN_BODY
    return body


def parse(protocol: str, raw: bytes, table: Reuse) -> Request:
    """What the gateway does with a request body."""
    return get_codec(protocol).parse_request(table.loads(raw), table)


def plain(protocol: str, raw: bytes) -> Request:
    """The same body parsed with nothing shared: the reference."""
    return get_codec(protocol).parse_request(orjson.loads(raw))


def parts_of(request: Request) -> list[object]:
    return [part for message in request.messages for part in message.parts]


def error(call: Callable[[], object]) -> tuple[str, str | None]:
    with pytest.raises(GatewayError) as info:
        call()
    assert info.value.status == 400
    return str(info.value), info.value.param


# ---------------------------------------------------------------- the bodies


def chat_with_results() -> JSON:
    """An assistant turn with three calls and their three tool messages, each a reused piece."""
    calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/m{n}.py"})},
        }
        for n in range(3)
    ]
    read_file = {
        "name": "read_file",
        "description": "Read a file of the project.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
    return {
        "model": "gemini-2.5-pro",
        "tools": [{"type": "function", "function": read_file}],
        "messages": [
            {"role": "system", "content": "You are a coding agent. " + "Be brief. " * 200},
            {"role": "user", "content": "Read the three modules."},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *(
                {
                    "role": "tool",
                    "tool_call_id": f"call_{n}",
                    "content": f"# m{n}\n" + "x = 1\n" * 150,
                }
                for n in range(3)
            ),
            {"role": "user", "content": "Now summarise them."},
        ],
    }


BODIES: dict[str, tuple[str, Callable[[], JSON]]] = {
    "bench-codex": (RESPONSES, lambda: BENCH.codex(False)),
    "bench-chat": (CHAT, lambda: BENCH.chat_client(False)),
    "bench-claude-code": (ANTHROPIC, lambda: BENCH.claude_code(False)),
    "codex-first-turn": (
        RESPONSES,
        lambda: padded(RESPONSES, fixture("openai_responses/codex_request_first_turn.json")),
    ),
    "codex-second-turn": (
        RESPONSES,
        lambda: padded(RESPONSES, fixture("openai_responses/codex_request_second_turn.json")),
    ),
    "codex-tool-search": (
        RESPONSES,
        lambda: padded(RESPONSES, fixture("openai_responses/codex_request_tool_search.json")),
    ),
    "chat-agent-turn": (
        CHAT,
        lambda: padded(CHAT, fixture("openai_chat/requests/agent_turn.json")),
    ),
    "chat-tool-results": (CHAT, lambda: padded(CHAT, chat_with_results())),
    "claude-code": (
        ANTHROPIC,
        lambda: padded(ANTHROPIC, fixture("anthropic/claude_code_request.json")),
    ),
}
# Fixture bodies whose every item is a reused piece (the benchmark's small items are not).
ALL_REUSED = [name for name in BODIES if not name.startswith("bench-")]


# ---------------------------------------------------------------- (a) the same Request


@pytest.mark.parametrize("name", BODIES)
def test_reused_parse_equals_plain_parse(name: str, table: Reuse) -> None:
    protocol, build = BODIES[name]
    raw = compact(build())
    expected = plain(protocol, raw)
    first = parse(protocol, raw, table)
    second = parse(protocol, raw, table)
    assert table.hits > 0  # the second parse did find pieces of the first
    assert first == expected
    assert second == expected


# ---------------------------------------------------------------- (b) shared parts


@pytest.mark.parametrize("name", ALL_REUSED)
def test_second_parse_shares_the_parts_of_unchanged_items(name: str, table: Reuse) -> None:
    protocol, build = BODIES[name]
    raw = compact(build())
    first, second = parse(protocol, raw, table), parse(protocol, raw, table)
    assert second.messages is not first.messages  # the list is the request's own
    pairs = list(zip(parts_of(first), parts_of(second), strict=True))
    assert pairs and all(a is b for a, b in pairs)
    assert second.tools == first.tools and second.tools


@pytest.mark.parametrize("name", ["bench-codex", "bench-chat", "bench-claude-code"])
def test_tool_list_is_parsed_once(name: str, table: Reuse) -> None:
    protocol, build = BODIES[name]
    raw = compact(build())
    assert parse(protocol, raw, table).tools is parse(protocol, raw, table).tools


@pytest.mark.parametrize("name", ALL_REUSED)
def test_changed_last_item_parses_like_a_plain_parse(name: str, table: Reuse) -> None:
    protocol, build = BODIES[name]
    body = build()
    first = parse(protocol, compact(body), table)
    last = body[CONVERSATION[protocol]][-1]
    last[PAD_KEY[protocol]] = "changed-" + last[PAD_KEY[protocol]]
    if last.get("type", "message") == "message" and "role" in last:
        last["content"] = "A different last message."
    raw = compact(body)
    second = parse(protocol, raw, table)
    assert second == plain(protocol, raw)
    # What the items before the last one gave came back as the same objects.
    body[CONVERSATION[protocol]].pop()
    kept = len(parts_of(plain(protocol, compact(body))))
    assert kept > 0
    assert all(a is b for a, b in zip(parts_of(first)[:kept], parts_of(second), strict=False))


# ---------------------------------------------------------------- (c) nothing handed out changes


def _next_turn(protocol: str, body: JSON) -> JSON:
    """`body` one turn later: the same items, then two more (an output, a user message)."""
    body = copy.deepcopy(body)
    items = body[CONVERSATION[protocol]]
    if protocol == RESPONSES:
        items += [
            {"type": "function_call", "call_id": "call_next", "name": "shell", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_next", "output": "ok " * 300},
            {"role": "user", "content": [{"type": "input_text", "text": "And now? " * 80}]},
        ]
    elif protocol == CHAT:
        items += [{"role": "user", "content": "And now? " * 80}]
    else:
        items += [
            {"role": "assistant", "content": "Done. " * 100},
            {"role": "user", "content": "And now? " * 80},
        ]
    return body


@pytest.mark.parametrize("name", BODIES)
def test_later_requests_do_not_change_an_earlier_request(name: str, table: Reuse) -> None:
    protocol, build = BODIES[name]
    body = build()
    first = parse(protocol, compact(body), table)
    before = copy.deepcopy(first)
    again = parse(protocol, compact(body), table)
    later = compact(_next_turn(protocol, body))
    after = parse(protocol, later, table)
    assert first == before
    assert again == before
    assert after == plain(protocol, later)


def test_responses_items_joined_into_one_message_stay_as_they_were(table: Reuse) -> None:
    # The second turn's assistant items (reasoning, message, call) join one Message, and its
    # outputs one user Message: the joined lists are the request's, the items' are shared.
    body = padded(RESPONSES, fixture("openai_responses/codex_request_second_turn.json"))
    first = parse(RESPONSES, compact(body), table)
    joined = [m for m in first.messages if len(m.parts) > 1]
    assert {m.role for m in joined} == {"assistant", "user"}
    lengths = [len(m.parts) for m in first.messages]
    for _ in range(3):
        parse(RESPONSES, compact(_next_turn(RESPONSES, body)), table)
    assert [len(m.parts) for m in first.messages] == lengths
    assert parse(RESPONSES, compact(body), table) == first


def test_chat_tool_messages_join_one_user_message_per_request(table: Reuse) -> None:
    body = padded(CHAT, chat_with_results())
    first, second = parse(CHAT, compact(body), table), parse(CHAT, compact(body), table)
    results = first.messages[2]
    assert results.role == "user" and len(results.parts) == 3
    assert all(isinstance(p, ToolResult) and p.name == "read_file" for p in results.parts)
    assert second.messages[2] is not results  # its own message ...
    assert all(a is b for a, b in zip(second.messages[2].parts, results.parts, strict=True))
    assert len(results.parts) == 3


def test_chat_results_after_an_empty_user_message_do_not_grow_it(table: Reuse) -> None:
    # An empty user message followed by tool messages takes the results in; the parsed empty
    # message is shared with later requests, so it must be copied, not grown.
    body = padded(CHAT, chat_with_results())
    messages = body["messages"]
    messages.insert(3, {"role": "user", "content": [], "name": "empty-" + "x" * reuse.MIN_PIECE})
    raw = compact(body)
    first = parse(CHAT, raw, table)
    before = copy.deepcopy(first)
    second = parse(CHAT, raw, table)
    assert first == before == plain(CHAT, raw)
    assert second == plain(CHAT, raw)
    # user; assistant with its 3 calls; the empty user message with the 3 results; user
    assert [len(m.parts) for m in second.messages] == [1, 3, 3, 1]


def test_responses_results_are_named_by_the_call_before_them(table: Reuse) -> None:
    # The same output item after a different call gets that call's name, not a stale one.
    pad = "x" * reuse.MIN_PIECE
    output = {"type": "function_call_output", "call_id": "call_1", "output": "done " + pad}

    def body(tool: str) -> bytes:
        items = [
            {"role": "user", "content": "go " + pad},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": tool,
                "arguments": "{}",
                "id": pad,
            },
            output,
        ]
        return compact({"model": "gpt-5", "input": items, "instructions": "Be brief. " * 400})

    for tool in ("shell", "read", "shell"):
        request = parse(RESPONSES, body(tool), table)
        result = request.messages[-1].parts[0]
        assert isinstance(result, ToolResult) and result.name == tool
        assert request == plain(RESPONSES, body(tool))


def test_string_input_and_system_texts_are_the_requests_own(table: Reuse) -> None:
    body = padded(RESPONSES, fixture("openai_responses/codex_request_first_turn.json"))
    first, second = parse(RESPONSES, compact(body), table), parse(RESPONSES, compact(body), table)
    assert second.system is not first.system
    assert second.system == first.system and isinstance(second.system[0], Text)
    assert all(isinstance(m, Message) for m in second.messages)


# ---------------------------------------------------------------- (d) errors


def _with_bad(protocol: str) -> tuple[JSON, JSON, int, str, str]:
    """A large body, a large malformed item to put in it at an index, and the error (message,
    param) that item gives there, with `{i}` for the index."""
    pad = "x" * reuse.MIN_PIECE
    if protocol == RESPONSES:
        body = padded(RESPONSES, fixture("openai_responses/codex_request_second_turn.json"))
        bad = {"type": "function_call_output", "output": "no call id " + pad}
        return body, bad, 3, "input[{i}].call_id is required", "input[{i}].call_id"
    if protocol == CHAT:
        body = padded(CHAT, chat_with_results())
        bad = {"role": "tool", "content": "no call id " + pad}
        message = "a tool message needs `tool_call_id`"
        return body, bad, 3, message, "messages[{i}].tool_call_id"
    body = padded(ANTHROPIC, fixture("anthropic/claude_code_request.json"))
    bad = {"role": "robot", "content": "hello " + pad}
    message = "messages.{i}.role: must be user, assistant or system"
    return body, bad, 3, message, "messages.{i}.role"


@pytest.mark.parametrize("protocol", [RESPONSES, CHAT, ANTHROPIC])
def test_malformed_item_gives_the_same_400_every_time(protocol: str, table: Reuse) -> None:
    body, bad, index, message, param = _with_bad(protocol)
    parse(protocol, compact(body), table)  # every good item is now known
    for at in (index, index + 1):  # the same bad item, then one place later
        broken = copy.deepcopy(body)
        broken[CONVERSATION[protocol]].insert(at, bad)
        raw = compact(broken)
        assert len(raw) >= reuse.MIN_BODY
        expected = (message.format(i=at), param.format(i=at))
        assert error(lambda raw=raw: plain(protocol, raw)) == expected
        assert error(lambda raw=raw: parse(protocol, raw, table)) == expected
        assert error(lambda raw=raw: parse(protocol, raw, table)) == expected  # nothing kept of it


def test_non_object_item_is_named(table: Reuse) -> None:
    body = padded(RESPONSES, fixture("openai_responses/codex_request_second_turn.json"))
    body["input"].insert(2, "a bare string " + "x" * reuse.MIN_PIECE)
    raw = compact(body)
    expected = ("input[2] must be an object", "input[2]")
    assert error(lambda: plain(RESPONSES, raw)) == expected
    assert error(lambda: parse(RESPONSES, raw, table)) == expected
    assert error(lambda: parse(RESPONSES, raw, table)) == expected
