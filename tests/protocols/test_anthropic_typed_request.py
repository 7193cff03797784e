"""The typed reader of Messages bodies against the general path (differential).

`protocols/anthropic/typed_request.py` reads the usual body straight from its bytes into
msgspec structs and keeps each tool's schema as the client's text. Whatever it takes, the
general path (orjson, then `request.parse_request`) must give the same Request once the
schemas are decoded, and the same OpenAI upstream body: byte for byte for a body written as
orjson writes JSON, the same JSON values otherwise. Whatever it hands back (None), the
general path reads. Checked over the recorded Claude Code request, the benchmark's bodies
and random edits of their fields, blocks, messages and tools, and edits of the bytes
(numbers orjson and msgspec read differently, broken UTF-8, whitespace). Fixed seeds: a
failure repeats.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest
from msgspec.structs import replace
from tests.bodies_support import as_json, bench_bodies, compact, edited, recorded_claude_code

from babelgate.canonical import GatewayError, JSONText, Request, schema_of
from babelgate.protocols.anthropic.request import parse_request
from babelgate.protocols.anthropic.typed_request import read_request
from babelgate.protocols.openai_chat.render_request import render_request
from babelgate.protocols.reuse import Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS

JSON = dict[str, Any]
QUIRKS = DEFAULT_QUIRKS["openai"]

VALUES: list[Any] = [
    None, "", "x", 0, 1, -1, 32000, 1.5, True, False, [], ["a"], {}, {"type": "ephemeral"},
    {"type": "ephemeral", "ttl": 5}, 2**63, 2**64, 10**30, -(2**64),
    [{"type": "text", "text": "t"}], [{"type": "text", "text": "t", "cache_control": {}}],
    [{"type": "image", "source": {"type": "url", "url": "https://e.x/a.png"}}],
    [{"type": "text", "text": 5}], [{"type": "tool_use", "id": "a", "name": "b", "input": {}}],
    {"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "enabled"},
    {"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}, {"effort": "high"},
    {"type": "tool", "name": "Bash"}, {"type": "any", "disable_parallel_tool_use": True},
    {"user_id": "u"}, {"user_id": 5},
    "bg1.eyJvIjoiZ2VtaW5pIiwicCI6eyJzaWciOiJhYmMifX0",  # our envelope (a thinking signature)
    "toolu_1__bg1_eyJ0aG91Z2h0X3NpZ25hdHVyZSI6Inh5eiJ9",  # an id carrying metadata
]
TOP_KEYS = ["model", "max_tokens", "messages", "system", "tools", "temperature", "top_p",
            "top_k", "stop_sequences", "stream", "metadata", "thinking", "tool_choice",
            "output_config", "context_management", "service_tier", "unknown"]
BLOCK_KEYS = ["type", "text", "id", "name", "input", "tool_use_id", "content", "is_error",
              "thinking", "signature", "cache_control", "citations", "data"]
BLOCK_TYPES = ["text", "tool_use", "tool_result", "thinking", "redacted_thinking", "image",
               "server_tool_use", "nonsense", 5, None]
TOOL_KEYS = ["type", "name", "description", "input_schema", "strict", "cache_control"]


def _bodies() -> list[JSON]:
    recorded = recorded_claude_code()
    # The recorded body has an image, redacted thinking and a server tool, which the typed
    # reader leaves to the general path: also without those, so that it is read here too.
    usual = copy.deepcopy(recorded)
    usual["tools"] = [tool for tool in usual["tools"] if "type" not in tool]
    for message in usual["messages"]:
        if isinstance(message["content"], list):
            message["content"] = [b for b in message["content"]
                                  if b["type"] not in ("image", "redacted_thinking")] or "x"
    bench = bench_bodies()
    return [recorded, usual, *(as_json(make(stream)) for stream in (False, True)
                               for make in (bench.claude_code, bench.claude_code_distinct,
                                            bench.hello))]


def _decoded(request: Request) -> Request:
    """`request` with its tools' schemas decoded, as the general path makes them."""
    return replace(request, tools=tuple(replace(tool, parameters=schema_of(tool))
                                        for tool in request.tools))


def _general(raw: bytes) -> Request | tuple[str, str | None]:
    try:
        return parse_request(orjson.loads(raw), Reuse(0))
    except GatewayError as error:
        return (error.message, error.param)
    except orjson.JSONDecodeError as error:
        return (str(error), None)


def _upstream(request: Request) -> bytes:
    """The OpenAI upstream's body, or b"too deep" where the gateway answers 400 (TOO_DEEP)."""
    try:
        return orjson.dumps(render_request(replace(request, model="m"), QUIRKS, Reuse(0)))
    except (TypeError, RecursionError):
        return b"too deep"


def _check(raw: bytes, *, same_bytes: bool = True) -> bool:
    """The typed reader and the general path agree on `raw`; True if the reader took it."""
    typed = read_request(raw, Reuse(0))
    general = _general(raw)
    if typed is None:
        return False
    assert isinstance(general, Request), (general, raw[:300])
    assert _decoded(typed) == general
    fast, slow = _upstream(typed), _upstream(general)
    if same_bytes or b"too deep" in (fast, slow):
        assert fast == slow
    else:
        assert orjson.loads(fast) == orjson.loads(slow)
    return True


def test_the_usual_bodies_are_read_alike() -> None:
    taken = [_check(orjson.dumps(body)) for body in _bodies()]
    assert taken == [False] + [True] * (len(taken) - 1)  # the recorded one has an image
    # the schemas stay the client's text, and only an OpenAI upstream copies them as such
    request = read_request(orjson.dumps(_bodies()[2]), Reuse(0))
    assert request is not None and request.tools
    assert all(isinstance(tool.parameters, JSONText) for tool in request.tools)


def test_a_body_written_with_whitespace_gives_the_same_json() -> None:
    for body in _bodies()[1:]:
        assert _check(json.dumps(body, indent=2).encode(), same_bytes=False)
        assert _check(json.dumps(body).encode(), same_bytes=False)  # ", " and ": "


def _edited(rng: random.Random, item: JSON, keys: list[str], kinds: list[Any]) -> JSON:
    return edited(rng, item, keys, kinds, VALUES)


@pytest.mark.parametrize("seed", range(3))
def test_edited_bodies_are_read_alike(seed: int) -> None:
    rng = random.Random(seed)
    bodies = _bodies()[1:]
    blocks = [b for body in bodies for m in body["messages"] if isinstance(m["content"], list)
              for b in m["content"]]
    tools = [t for body in bodies for t in body.get("tools", ())]
    taken = 0
    for _ in range(700):
        body = copy.deepcopy(rng.choice(bodies))
        roll = rng.random()
        if roll < 0.3:
            body = _edited(rng, body, TOP_KEYS, [])
        elif roll < 0.6 and body["messages"]:
            message = rng.choice(body["messages"])
            edited = _edited(rng, rng.choice(blocks), BLOCK_KEYS, BLOCK_TYPES)
            message["content"] = [edited] if isinstance(message["content"], str) else [
                *message["content"][:1], edited]
        elif roll < 0.8 and body.get("tools"):
            body["tools"][rng.randrange(len(body["tools"]))] = _edited(
                rng, rng.choice(tools), TOOL_KEYS, [None, "custom", "web_search_20250305", 7])
        else:
            message = rng.choice(body["messages"])
            message.update(_edited(rng, message, ["role", "content"], []))
            if rng.random() < 0.3:
                message["role"] = rng.choice(["user", "assistant", "system", "tool", 3])
        taken += _check(compact(body))
    assert 100 < taken < 650  # both ways were taken often


# Byte edits: what orjson and msgspec read differently, put where each field is.
ODD_TOKENS = [b"1e400", b"-1e400", b"1" * 400, b"18446744073709551616", b"-9223372036854775809",
              b"18446744073709551615", b"1E5", b"-0", b"1.0e-400", b'"\\ud800"', b'"\xff"',
              b'"\\u00e9"', b"[" * 300 + b"]" * 300]


@pytest.mark.parametrize("token", ODD_TOKENS)
def test_odd_numbers_and_strings_are_read_alike(token: bytes) -> None:
    body = _bodies()[2]  # the benchmark's Claude Code body
    template = dict(body, tools=[dict(body["tools"][0], input_schema={
        "type": "object", "properties": {"n": {"type": "integer", "maximum": "@@"}}})])
    raw = orjson.dumps(template)
    for field in ("max_tokens", "top_k", "temperature", "metadata", "thinking", "tool_choice",
                  "context_management"):
        _check(orjson.dumps(dict(body, **{field: "@@"})).replace(b'"@@"', token))
    message = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash",
                                                 "input": {"command": "@@"}}]}
    _check(orjson.dumps(dict(body, messages=[message])).replace(b'"@@"', token))
    text = {"role": "user", "content": [{"type": "text", "text": "@@"}]}
    _check(orjson.dumps(dict(body, messages=[text])).replace(b'"@@"', token))
    # In a schema the typed reader takes the client's text as it is: a schema of the JSON
    # the general path reads gives the same JSON values upstream, one it refuses is copied.
    edited = raw.replace(b'"@@"', token)
    typed, general = read_request(edited, Reuse(0)), _general(edited)
    if token == b'"\xff"':  # broken UTF-8: never copied
        assert typed is None
    elif typed is None:
        assert not isinstance(general, Request)  # msgspec refused it too (the 300 lists)
    elif isinstance(general, Request) and _upstream(general) != b"too deep":
        assert token in _upstream(typed)
        assert orjson.loads(_upstream(typed)) == orjson.loads(_upstream(general))
    else:  # past a double's range, nested past orjson's encoder: left to the upstream
        assert token in (b"1e400", b"-1e400", b"1" * 400, b"[" * 300 + b"]" * 300)
        assert token in _upstream(typed)
