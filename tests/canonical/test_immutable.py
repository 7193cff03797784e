"""Canonical values are immutable: assigning to any field of any of them raises, and what
every codec parses holds tuples, never lists, so a value shared between requests (see
babelgate.protocols.reuse) cannot be changed by one of them."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from msgspec.structs import replace

from babelgate import canonical
from babelgate.canonical import (
    Document,
    Image,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
    Response,
    SignatureDelta,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
)
from babelgate.canonical.errors import GatewayError
from babelgate.protocols import get_codec

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _values() -> list[Any]:
    text = Text("hi", citations=({"url": "u"},))
    call = ToolCall("c1", "Read", {"path": "a"})
    result = ToolResult("c1", (text,), name="Read")
    message = Message("assistant", (text, call))
    usage = Usage(input_tokens=3)
    return [
        text,
        Image(media_type="image/png", data="AAAA"),
        Document(text="doc"),
        Reasoning("thinking", summary=("short",)),
        call,
        result,
        message,
        Tool("Read", parameters={"type": "object"}),
        ToolChoice("tool", "Read"),
        ReasoningConfig(enabled=True, budget_tokens=1024),
        Request("m", (message,), system=(text,), stop=("END",), tools=(Tool("Read"),)),
        Response("r", "m", (text,), usage=usage),
        usage,
        MessageStart("r", "m", usage),
        PartStart(0, text),
        TextDelta(0, "a"),
        ReasoningDelta(0, "a"),
        SignatureDelta(0, "s"),
        ToolArgsDelta(0, "{}"),
        PartStop(0, text),
        MessageDelta("end_turn", usage),
        MessageStop(),
        StreamError(GatewayError("api_error", "boom")),
    ]


@pytest.mark.parametrize("value", _values(), ids=lambda value: type(value).__name__)
def test_assigning_to_any_field_raises(value: Any) -> None:
    for name in value.__struct_fields__:
        with pytest.raises(AttributeError):
            setattr(value, name, getattr(value, name))
    with pytest.raises(AttributeError):
        value.not_a_field = 1  # no __dict__ to add to either


def test_an_edit_builds_a_new_value_and_leaves_the_old_one() -> None:
    request = Request("m", (Message("user", (Text("hi"),)),))
    edited = replace(request, system=(Text("be brief"),), max_tokens=10)
    assert request.system == () and request.max_tokens is None
    assert edited.system == (Text("be brief"),) and edited.messages is request.messages
    with pytest.raises(AttributeError):
        request.messages[0].parts[0].text = "changed"  # type: ignore[misc]
    assert not hasattr(request.messages, "append")  # a tuple


def _lists(value: Any, where: str) -> list[str]:
    """Where in a canonical value a list hides (JSON payload dicts are not looked into)."""
    if isinstance(value, list):
        return [where]
    if isinstance(value, tuple):
        return [w for i, item in enumerate(value) for w in _lists(item, f"{where}[{i}]")]
    if isinstance(value, msgspec.Struct):
        return [
            w for name in value.__struct_fields__
            for w in _lists(getattr(value, name), f"{where}.{name}")
        ]
    return []


REQUESTS = [
    ("anthropic", "anthropic/claude_code_request.json"),
    ("gemini", "gemini/client_request.json"),
    ("openai-responses", "openai_responses/codex_request_first_turn.json"),
    ("openai-responses", "openai_responses/codex_request_second_turn.json"),
    ("openai-responses", "openai_responses/codex_request_tool_search.json"),
    *[("openai", f"openai_chat/requests/{p.name}")
      for p in sorted((FIXTURES / "openai_chat" / "requests").glob("*.json"))],
]


@pytest.mark.parametrize(("protocol", "fixture"), REQUESTS)
def test_every_parser_builds_tuples(protocol: str, fixture: str) -> None:
    body = orjson.loads((FIXTURES / fixture).read_bytes())
    request = get_codec(protocol).parse_request(body)
    assert request.messages
    assert _lists(request, "request") == []


RESPONSES = [
    ("anthropic", "anthropic/response_tool_use.json"),
    ("gemini", "gemini/gemini3_parallel_calls.json"),
    ("gemini", "gemini/gemini3_text_signature.json"),
    *[("openai", f"openai_chat/responses/{p.name}")
      for p in sorted((FIXTURES / "openai_chat" / "responses").glob("*.json"))],
]


@pytest.mark.parametrize(("protocol", "fixture"), RESPONSES)
def test_every_response_parser_builds_tuples(protocol: str, fixture: str) -> None:
    body = orjson.loads((FIXTURES / fixture).read_bytes())
    request = Request("m", (Message("user", (Text("hi"),)),), tools=(Tool("Read"),))
    response = get_codec(protocol).parse_response(body, request)
    assert response.parts
    assert _lists(response, "response") == []


# ------------------------------------------------------------------ the suite's own values

TESTS = Path(__file__).resolve().parent.parent
CANONICAL = frozenset(name for name in dir(canonical)
                      if isinstance(getattr(canonical, name), type)
                      and issubclass(getattr(canonical, name), msgspec.Struct))


def lists_given_to_canonical_values(source: str) -> list[int]:
    """Lines where a canonical value is built with a list (a literal, a comprehension,
    list() or sorted()): msgspec does not check types when a struct is built, so such a
    value would hold a list where the code holds tuples, and a test could change it."""
    tree = ast.parse(source)
    names = {alias.asname or alias.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                 "babelgate.canonical")
             for alias in node.names if alias.name in CANONICAL}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                node.func.id in names):
            for value in (*node.args, *(keyword.value for keyword in node.keywords)):
                if isinstance(value, (ast.List, ast.ListComp)) or (
                        isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                        and value.func.id in ("list", "sorted")):
                    found.append(value.lineno)
    return found


def test_the_suite_builds_canonical_values_with_tuples() -> None:
    found = [f"{path.relative_to(TESTS)}:{line}"
             for path in sorted(TESTS.rglob("*.py"))
             for line in lists_given_to_canonical_values(path.read_text())]
    assert found == []


def test_the_check_finds_lists_given_to_canonical_values() -> None:
    source = ("from babelgate.canonical import Message, Text\n"
              "from tests.fakes import Reply\n"
              "a = Message('user', [Text('hi')])\n"
              "b = Message('user', (Text('hi'),))\n"
              "c = Message('user', parts=[t for t in ()])\n"
              "d = Reply(tool_calls=[])\n")  # not a canonical value
    assert lists_given_to_canonical_values(source) == [3, 5]
