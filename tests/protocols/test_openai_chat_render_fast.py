"""The Chat renderer's shortcuts give what its general path gives.

`_render_tools` writes the usual tool (a function with a description and no `strict`) in one
expression and leaves every other shape to `_tool`; `_plain_user` joins a text-only user
message without a part dict per text. Both are held here to the general path, over every
combination of the fields they look at, byte for byte once serialised.
"""

from __future__ import annotations

import itertools

import orjson
import pytest

from babelgate.canonical import (
    Document,
    Image,
    JSONText,
    Message,
    Part,
    Text,
    Tool,
    ToolResult,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.openai_chat.names import wire_name
from babelgate.protocols.openai_chat.render_messages import _plain_user, _user_message
from babelgate.protocols.openai_chat.render_request import _render_tools, _tool
from babelgate.protocols.reuse import Reuse

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
FORMAT = {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}


def _tools() -> list[Tool]:
    """Every shape the shortcut must take or leave: kinds, descriptions, strictness,
    schemas as dicts and as the client's text, names the wire must rename."""
    found: list[Tool] = []
    shapes = itertools.product(
        ("function", "custom", "hosted"),
        (None, "", "Reads a file.\nSay \"why\" \u00e9"),
        (None, True, False),
        (SCHEMA, JSONText(orjson.dumps(SCHEMA)), JSONText(b'{ "type" : "object" }')),
        ("Read", "mcp__server__a tool name that is far too long for the chat wire"),
    )
    for kind, description, strict, parameters, name in shapes:
        found.append(Tool(name, description, parameters, kind, strict,
                          FORMAT if kind == "custom" else None,
                          "web_search" if kind == "hosted" else None))
    return found


def test_tools_shortcut_renders_what_the_general_path_renders() -> None:
    tools = tuple(_tools())
    expected = [_tool(tool, wire_name(tool.name)) for tool in tools if tool.kind != "hosted"]
    rendered = _render_tools(tools, Reuse())
    assert len(rendered) == len(expected) == 108  # (Fragments compare by identity: bytes)
    assert orjson.dumps(rendered) == orjson.dumps(expected)
    # The client's schema text goes out as it came, spaces and all.
    assert b'"parameters":{ "type" : "object" }' in orjson.dumps(rendered)


def test_tools_shortcut_names_found_again_are_the_same() -> None:
    reuse, tools = Reuse(), tuple(_tools())
    first = orjson.dumps(_render_tools(tools, reuse))
    assert orjson.dumps(_render_tools(tools, reuse)) == first  # names from the table's memo
    assert orjson.dumps(_render_tools(tools[::-1], reuse)) == orjson.dumps(
        _render_tools(tools, Reuse())[::-1])


TEXTS = (Text(""), Text("hi"), Text("two\nlines", cache=True), Text("\u00e9 \"q\""))
OTHERS: tuple[Part, ...] = (
    Image(media_type="image/png", data="AAAA"),
    Document(text="notes", title="t"),
)


@pytest.mark.parametrize("quirks", [Quirks(), Quirks(images=False, documents=False)])
def test_text_only_user_message_renders_what_the_general_path_renders(quirks: Quirks) -> None:
    messages = [Message("user", ())]
    for size in (1, 2, 3):
        for parts in itertools.product(TEXTS + OTHERS, repeat=size):
            messages.append(Message("user", parts))
    for message in messages:
        plain, wire = _plain_user(message, quirks)
        assert plain
        expected = _user_message(message, [], set(), quirks)
        assert wire == expected, message
        assert orjson.dumps(wire) == orjson.dumps(expected)


def test_user_message_with_results_is_left_to_the_conversation() -> None:
    message = Message("user", (Text("see"), ToolResult("call_1", (Text("out"),))))
    assert _plain_user(message, Quirks()) == (False, None)
