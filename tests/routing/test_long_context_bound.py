"""The `long_context` condition's fast path: for a tool list the reuse table does not keep, a
bound that does not read the tools' schemas (`tokens.quick_bound`) decides first, and the
estimate is made only when the bound is above the threshold. What must hold, over random
requests of every protocol parsed by the real codecs: the bound is never below the estimate,
and a rule decides exactly as the estimate would have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelgate import tokens
from babelgate.canonical import JSONText, Request
from babelgate.config import load_settings
from babelgate.protocols import get_codec
from babelgate.protocols.reuse import Reuse
from babelgate.routing import Router
from babelgate.routing.rules import Rules

PROVIDERS = {"up": {"type": "openai", "base_url": "https://up.test/v1"},
             "long": {"type": "gemini", "base_url": "https://long.test"}}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
PDF = "JVBERi0xLjQK"
EXAMPLES = settings(max_examples=60, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Texts with what makes a wire's bytes and a text's characters differ: escapes, non-ASCII,
# astral characters (two UTF-16 units, four UTF-8 bytes).
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
keys = st.one_of(st.sampled_from(["", "a", "path", "é", "\n", "\U0001f600"]), texts)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), texts)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=8)


@st.composite
def schema_texts(draw: st.DrawFn) -> bytes:
    """A tool schema's JSON text as a client may write it: `properties` with any number of
    members (duplicate keys included, values of any JSON type, the smallest `"":0` too),
    other members around it, compact or spaced, escaped or not."""
    spaced = draw(st.booleans())
    ascii_only = draw(st.booleans())
    comma, colon = (", ", ": ") if spaced else (",", ":")

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=ascii_only, separators=(comma, colon))

    if draw(st.booleans()):
        members = draw(st.lists(st.tuples(keys, st.one_of(st.just(0), values)), max_size=8))
    else:  # the most members a size allows: distinct one-character keys, each worth 0
        members = [(chr(0x61 + i), 0) for i in range(draw(st.integers(16, 80)))]
    properties = "{" + comma.join(dumps(k) + colon + dumps(v) for k, v in members) + "}"
    if draw(st.integers(0, 9)) == 0:  # not an object: no properties counted
        properties = dumps(draw(values))
    around = draw(st.dictionaries(st.sampled_from(["type", "required", "title", "$defs"]),
                                  values, max_size=3))
    outer = [dumps(k) + colon + dumps(v) for k, v in around.items()]
    outer.insert(draw(st.integers(0, len(outer))), '"properties"' + colon + properties)
    return ("{" + comma.join(outer) + "}").encode()


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    """What a request says, before any wire: a system prompt, turns of text, images (by URL
    and inline), documents and tool calls with their results, and tools."""
    turns = draw(st.lists(st.one_of(
        st.tuples(st.just("text"), texts, st.integers(0, 2), st.integers(0, 2),
                  st.booleans()),
        st.tuples(st.just("call"), st.sampled_from(["Bash", "Read", "x"]),
                  st.dictionaries(keys, values, max_size=8), texts),
    ), min_size=1, max_size=6))
    tools = draw(st.lists(st.tuples(st.sampled_from(["Bash", "Read", "Edit", "t"]), texts,
                                    schema_texts()), max_size=5))
    return {"system": draw(texts), "turns": turns, "tools": tools}


def anthropic_body(spec: dict[str, Any]) -> bytes:
    messages: list[dict[str, Any]] = []
    for n, turn in enumerate(spec["turns"]):
        if turn[0] == "text":
            _, text, urls, inline, document = turn
            content: list[dict[str, Any]] = [{"type": "text", "text": text or "."}]
            content += [{"type": "image", "source": {"type": "url", "url": "https://i.test/a.png"}}
                        for _ in range(urls)]
            content += [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": PIXEL}} for _ in range(inline)]
            if document:
                content.append({"type": "document", "source": {
                    "type": "base64", "media_type": "application/pdf", "data": PDF}})
            messages.append({"role": "user", "content": content})
        else:
            _, name, args, result = turn
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args}]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": result}]})
    # The schemas go in as the client wrote them: the typed reader keeps them as that text.
    tools = b",".join(
        orjson.dumps({"name": name, "description": description})[:-1] + b',"input_schema":'
        + schema + b"}" for name, description, schema in spec["tools"])
    head = orjson.dumps({"model": "m", "max_tokens": 100, "system": spec["system"] or ".",
                         "messages": messages})
    return head[:-1] + b',"tools":[' + tools + b"]}"


def chat_body(spec: dict[str, Any]) -> bytes:
    messages: list[dict[str, Any]] = [{"role": "system", "content": spec["system"]}]
    for n, turn in enumerate(spec["turns"]):
        if turn[0] == "text":
            _, text, urls, inline, _ = turn
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
            parts += [{"type": "image_url", "image_url": {"url": "https://i.test/a.png"}}
                      for _ in range(urls)]
            parts += [{"type": "image_url", "image_url": {
                "url": f"data:image/png;base64,{PIXEL}"}} for _ in range(inline)]
            messages.append({"role": "user", "content": parts})
        else:
            _, name, args, result = turn
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{n}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}]})
            messages.append({"role": "tool", "tool_call_id": f"call_{n}", "content": result})
    tools = [{"type": "function", "function": {"name": name, "description": description,
                                               "parameters": orjson.loads(schema)}}
             for name, description, schema in spec["tools"]]
    return orjson.dumps({"model": "m", "messages": messages, **({"tools": tools} if tools else {})})


def responses_body(spec: dict[str, Any]) -> bytes:
    items: list[dict[str, Any]] = []
    for n, turn in enumerate(spec["turns"]):
        if turn[0] == "text":
            _, text, urls, inline, _ = turn
            content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
            content += [{"type": "input_image", "image_url": "https://i.test/a.png"}
                        for _ in range(urls)]
            content += [{"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}
                        for _ in range(inline)]
            items.append({"role": "user", "content": content})
        else:
            _, name, args, result = turn
            items.append({"type": "function_call", "call_id": f"c{n}", "name": name,
                          "arguments": json.dumps(args)})
            items.append({"type": "function_call_output", "call_id": f"c{n}", "output": result})
    tools = [{"type": "function", "name": name, "description": description,
              "parameters": orjson.loads(schema)} for name, description, schema in spec["tools"]]
    return orjson.dumps({"model": "m", "instructions": spec["system"], "input": items,
                         "tools": tools, "store": False})


def gemini_body(spec: dict[str, Any]) -> bytes:
    contents: list[dict[str, Any]] = []
    for turn in spec["turns"]:
        if turn[0] == "text":
            _, text, urls, inline, document = turn
            parts: list[dict[str, Any]] = [{"text": text}]
            parts += [{"fileData": {"mimeType": "image/png", "fileUri": "https://i.test/a.png"}}
                      for _ in range(urls)]
            parts += [{"inlineData": {"mimeType": "image/png", "data": PIXEL}}
                      for _ in range(inline)]
            if document:
                parts.append({"inlineData": {"mimeType": "application/pdf", "data": PDF}})
            contents.append({"role": "user", "parts": parts})
        else:
            _, name, args, result = turn
            contents.append({"role": "model", "parts": [{"functionCall": {"name": name,
                                                                          "args": args}}]})
            contents.append({"role": "user", "parts": [{"functionResponse": {
                "name": name, "response": {"output": result}}}]})
    declarations = [{"name": name, "description": description,
                     "parameters": orjson.loads(schema)}
                    for name, description, schema in spec["tools"]]
    return orjson.dumps({"systemInstruction": {"parts": [{"text": spec["system"]}]},
                         "contents": contents,
                         "tools": [{"functionDeclarations": declarations}]})


WIRES = {"anthropic": anthropic_body, "openai": chat_body,
         "openai-responses": responses_body, "gemini": gemini_body}


def parse(protocol: str, raw: bytes) -> Request:
    """`raw` as the server reads it: the typed reader first (Anthropic's), else the codec's
    parser over the decoded body."""
    codec = get_codec(protocol)
    reuse = Reuse()
    request = codec.read_request(raw, reuse)
    return request if request is not None else codec.parse_request(orjson.loads(raw), reuse)


def long_context_rules(tmp_path: Path, limit: int) -> tuple[Rules, Router]:
    path = tmp_path / f"babelgate-{limit}.yaml"
    path.write_text(yaml.safe_dump({
        "providers": PROVIDERS, "routes": {"default": "up/m"},
        "rules": [{"name": "long", "if": {"long_context": limit}, "to": "long/gemini-pro"}]}))
    config = load_settings(path, env={})
    return Rules(config.rules), Router(config)


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rules")


@pytest.mark.parametrize("protocol", list(WIRES))
@EXAMPLES
@given(spec=conversations())
def test_the_bound_is_never_below_the_estimate(protocol: str, spec: dict[str, Any]) -> None:
    request = parse(protocol, WIRES[protocol](spec))
    assert tokens.quick_bound(request) >= tokens.quick_estimate(request, Reuse())


@EXAMPLES
@given(schema=schema_texts(), description=texts)
def test_a_schema_as_the_client_wrote_it_is_bounded(schema: bytes, description: str) -> None:
    """The typed reader keeps Anthropic schemas as the client's bytes; the smallest members
    (`"":0`), duplicate keys and whitespace are where the bound is tightest or loosest."""
    spec = {"system": "", "turns": [("text", "hi", 0, 0, False)],
            "tools": [("t", description, schema)]}
    request = parse("anthropic", anthropic_body(spec))
    assert type(request.tools[0].parameters) is JSONText
    assert tokens.quick_bound(request) >= tokens.quick_estimate(request, Reuse())


@pytest.mark.parametrize("protocol", list(WIRES))
@settings(max_examples=30, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(spec=conversations(), offset=st.integers(-3, 3), pick=st.integers(0, 2))
def test_a_long_context_rule_decides_as_the_estimate(
    rule_files: Path, protocol: str, spec: dict[str, Any], offset: int, pick: int
) -> None:
    """Thresholds around the estimate and around the bound: the rule matches exactly when
    the estimate is above it, and an estimate it made goes on with the decision."""
    request = parse(protocol, WIRES[protocol](spec))
    estimate = tokens.quick_estimate(request, Reuse())
    around = (estimate, tokens.quick_bound(request), (estimate + tokens.quick_bound(request)) // 2)
    limit = max(0, around[pick] + offset)
    rules, router = long_context_rules(rule_files, limit)
    decision = rules.choose(request, {}, Reuse(), router)
    assert (decision.rule is not None) is (estimate > limit)
    assert decision.estimate in (None, estimate)


def test_a_new_tool_list_well_below_the_threshold_is_not_counted(tmp_path: Path) -> None:
    """A conversation's first request (its tools not kept): the bound decides, no estimate
    goes on; once the table keeps the tool list, the estimate is made and goes on."""
    schema = orjson.dumps({"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "a parameter " * 5} for i in range(8)}})
    spec = {"system": "Be brief.", "turns": [("text", "word " * 50, 0, 0, False)],
            "tools": [(f"tool{i}", "does a thing", schema) for i in range(20)]}
    raw = anthropic_body(spec)
    rules, router = long_context_rules(tmp_path, 100_000)
    first = parse("anthropic", raw)
    decision = rules.choose(first, {}, Reuse(), router)
    assert decision.rule is None and decision.estimate is None
    # Twice seen, the body's pieces are kept by the caller's table (protocols/reuse.py).
    reuse = Reuse()
    codec = get_codec("anthropic")
    for _ in range(3):
        data = reuse.lookup(raw)
        kept = codec.parse_request(data if data is not None else reuse.loads(raw), reuse)
    assert reuse.keeps(kept.tools)
    decision = rules.choose(kept, {}, reuse, router)
    assert decision.rule is None and decision.estimate == tokens.quick_estimate(kept, reuse)
    # Above the threshold the estimate decides, whether the tools are kept or not.
    low_rules, low_router = long_context_rules(tmp_path, 10)
    for request, table in ((first, Reuse()), (kept, reuse)):
        decision = low_rules.choose(request, {}, table, low_router)
        assert decision.rule is not None
        assert decision.estimate == tokens.quick_estimate(request, table)
