"""The Anthropic request parser's shortcuts against its general path (differential).

`protocols/anthropic/request.py` parses the usual shapes of messages, content blocks and
tools by shortcuts that skip the general path's error bookkeeping; every other shape goes to
the general functions. Whatever the shortcut takes, the two must give equal values, and for
whatever it hands on, the same value or the same 400 (message and field). Checked over the
recorded Claude Code request, the benchmark's Claude Code body, and random edits of their
blocks, messages and tools (a fixed seed: a failure repeats).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from tests.bodies_support import as_json, bench_bodies, edited, recorded_claude_code

from babelgate.canonical import GatewayError, Message, ToolCall, ToolResult
from babelgate.protocols.anthropic import request as parser
from babelgate.protocols.reuse import Reuse, unshared

JSON = dict[str, Any]

# Values a client might put anywhere, wrong types included.
VALUES: list[Any] = [
    None, "", "x", "call_1", 0, 1, 3, 1.5, True, False, [], ["a"], {}, {"type": "ephemeral"},
    [{"type": "text", "text": "t"}], [{"type": "text", "text": "t", "cache_control": {}}],
    [{"type": "image", "source": {"type": "url", "url": "https://e.x/a.png"}}],
    [{"type": "text", "text": 5}], [{"type": "tool_use", "id": "a", "name": "b", "input": {}}],
    [{"type": "search_result", "title": "T", "content": [{"type": "text", "text": "s"}]}],
    [{"type": "web_search_tool_result"}], ["not a block"], {"a": 1},
    "bg1.eyJvIjoiZ2VtaW5pIiwicCI6eyJzaWciOiJhYmMifX0",  # our envelope (a thinking signature)
    "toolu_1__bg1_eyJ0aG91Z2h0X3NpZ25hdHVyZSI6Inh5eiJ9",  # an id carrying metadata
]
BLOCK_KEYS = ["type", "text", "id", "name", "input", "tool_use_id", "content", "is_error",
              "thinking", "signature", "cache_control", "citations", "data", "source"]
BLOCK_TYPES = ["text", "tool_use", "tool_result", "thinking", "redacted_thinking", "image",
               "document", "search_result", "server_tool_use", "nonsense", 5, None]
TOOL_KEYS = ["type", "name", "description", "input_schema", "strict", "cache_control"]


def _bodies() -> list[JSON]:
    return [recorded_claude_code(), as_json(bench_bodies().claude_code(False))]


def _outcome(parse: Callable[..., Any], *args: Any) -> Any:
    """What a parse gives: its value, or the error a client would read."""
    try:
        return ("value", parse(*args))
    except GatewayError as error:
        return ("error", error.message, error.param)


def _messages() -> list[Any]:
    return [m for body in _bodies() for m in body["messages"]]


def _blocks() -> list[Any]:
    return [b for m in _messages() if isinstance(m["content"], list) for b in m["content"]]


def _edited(rng: random.Random, item: JSON, keys: list[str], kinds: list[Any]) -> Any:
    return edited(rng, item, keys, kinds, VALUES)


def _general_message(item: Any, i: int) -> Message:
    return parser._message_general(item, i)


def test_recorded_messages_parse_alike() -> None:
    messages = _messages()
    assert len(messages) > 10
    for i, item in enumerate(messages):
        fast, general = parser._message(item, i), _general_message(item, i)
        assert fast == general
        assert [type(p) for p in fast.parts] == [type(p) for p in general.parts]


@pytest.mark.parametrize("seed", range(4))
def test_edited_blocks_parse_alike(seed: int) -> None:
    rng = random.Random(seed)
    blocks = _blocks()
    for n in range(1500):
        block = _edited(rng, rng.choice(blocks), BLOCK_KEYS, BLOCK_TYPES)
        # as a message's only block, and after a good one (the index in the path moves)
        for content in ([block], [{"type": "text", "text": "hi"}, block]):
            item = {"role": rng.choice(["user", "assistant", "user"]), "content": content}
            assert _outcome(parser._message, item, n) == _outcome(
                _general_message, item, n), (block, content)


@pytest.mark.parametrize("seed", range(2))
def test_edited_messages_parse_alike(seed: int) -> None:
    rng = random.Random(seed)
    messages = _messages()
    for n in range(800):
        item: Any = _edited(rng, rng.choice(messages), ["role", "content"], [])
        if rng.random() < 0.1:
            item = rng.choice(VALUES)  # not an object at all
        elif rng.random() < 0.3:
            item["role"] = rng.choice(["user", "assistant", "system", "tool", 3, ["user"]])
        assert _outcome(parser._message, item, n) == _outcome(_general_message, item, n), item


@pytest.mark.parametrize("seed", range(3))
def test_edited_tools_parse_alike(seed: int) -> None:
    rng = random.Random(seed)
    tools = [t for body in _bodies() for t in body["tools"]]
    kinds = [None, "custom", "web_search_20250305", "bash_20250124", 7]
    for _ in range(600):
        listed = [_edited(rng, rng.choice(tools), TOOL_KEYS, kinds) for _ in range(3)]
        if rng.random() < 0.05:
            listed.append(rng.choice(VALUES))
        assert _outcome(parser._tools, listed) == _outcome(_general_tools, listed), listed


def _general_tools(listed: list[Any]) -> tuple[Any, ...]:
    return tuple(parser._tool(item, f"tools.{i}") for i, item in enumerate(listed))


def _named_plainly(messages: list[Message]) -> list[Message]:
    """Tool results named after their calls, written the obvious way (the reference)."""
    names: dict[str, str] = {}
    out = []
    for message in messages:
        parts = []
        for part in message.parts:
            if isinstance(part, ToolCall):
                names[part.id] = part.name
            elif isinstance(part, ToolResult) and part.name is None and part.call_id in names:
                parts.append(ToolResult(part.call_id, part.content, part.is_error,
                                        names[part.call_id], part.kind, part.cache))
                continue
            parts.append(part)
        out.append(Message(message.role, tuple(parts)))
    return out


def test_tool_results_named_after_their_calls() -> None:
    reuse: Reuse = unshared(None)
    for body in _bodies():
        messages = list(parser._messages(body["messages"], reuse))
        plain = [parser._message_general(item, i) for i, item in enumerate(body["messages"])]
        assert messages == _named_plainly(plain)
        assert any(isinstance(p, ToolResult) and p.name for m in messages for p in m.parts)
