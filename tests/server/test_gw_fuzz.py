"""Mutated request bodies against the real gateway: whatever a client sends, the answer is a
success or a 4xx in the client's own error format, never a 5xx, and the gateway stays up.

Each example starts from a body a real client sent (the recorded fixtures: Claude Code,
Codex, a Chat agent's turn, Gemini CLI, whose model and streaming go in the URL) and changes
it in one to three places: a value anywhere replaced by one of the wrong type (null, numbers
up to huge, strings that look like numbers, lists, objects, a value from elsewhere in the
body), keys deleted or added, nesting thousands deep, long and odd strings; with and without
`stream`; on every endpoint that takes a body to generate or count from (Gemini's
:countTokens too). The upstreams are the suite's fakes, which
answer whatever reaches them, so any 5xx is the gateway's own.

The seed is fixed (derandomized) and the budget fits CI: 1,000 bodies per endpoint, the
whole file in ~35 s on the 2-core dev box (a body costs ~1 ms to make: seeds are copied by
decoding their JSON, the first mutation picks from the seed's paths found once, and choices
from lists made anew are drawn as indexes, not as strategies built per draw). To hunt for
more, raise it:
    BABELGATE_FUZZ_EXAMPLES=10000 .venv/bin/pytest -q tests/server/test_gw_fuzz.py
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Stack, reset

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXAMPLES = int(os.environ.get("BABELGATE_FUZZ_EXAMPLES", "1000"))  # per endpoint
HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "authorization": "Bearer client-key", "anthropic-version": "2023-06-01"}
# One route per kind of upstream, so a body that parses reaches every renderer.
MODELS = ["gpt-client", "claude-client", "gem-client", "resp-client", "ds-client"]
JSON = Any


def fixture(path: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / path).read_bytes())
    return data


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {
    "anyOf": [{"type": "integer"}, {"type": "null"}]}}, "required": ["answer"]}
GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": "start: WORD"}
PDF = "JVBERi0xLjQK"
# Fields the recorded bodies do not use, in bodies of our own making.
MORE_ANTHROPIC = {
    "model": "claude-client", "max_tokens": 100, "temperature": 0.5, "top_k": 5,
    "stop_sequences": ["END"], "tool_choice": {"type": "tool", "name": "Answer"},
    "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    "tools": [{"name": "Answer", "input_schema": SCHEMA}],
    "messages": [{"role": "user", "content": [
        {"type": "document", "title": "t", "source": {"type": "base64",
                                                      "media_type": "application/pdf",
                                                      "data": PDF}},
        {"type": "document", "source": {"type": "content", "content": [
            {"type": "text", "text": "inline"}]}},
        {"type": "search_result", "title": "r", "source": "s",
         "content": [{"type": "text", "text": "found"}]},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "Answer.", "citations": [{"type": "char_location"}]}]}],
}
MORE_CHAT = {
    "model": "gpt-client", "max_tokens": 100, "n": 1, "logprobs": False,
    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
    "tools": [{"type": "custom", "custom": {"name": "patch", "format": {
        "type": "grammar", "grammar": {"syntax": "lark", "definition": "start: WORD"}}}},
              {"type": "function", "function": {"name": "Answer", "parameters": SCHEMA}}],
    "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required"}},
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Look."},
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}",
                                      "filename": "a.pdf"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "custom", "custom": {"name": "patch", "input": "x"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"}],
}
MORE_RESPONSES = {
    "model": "resp-client", "max_output_tokens": 100, "temperature": 0.2,
    "text": {"format": {"type": "json_schema", "name": "a", "schema": SCHEMA}},
    "tools": [{"type": "custom", "name": "patch", "format": GRAMMAR},
              {"type": "function", "name": "Answer", "parameters": SCHEMA, "strict": True}],
    "tool_choice": {"type": "function", "name": "Answer"},
    "input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "Look."},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
            {"type": "input_file", "file_data": f"data:application/pdf;base64,{PDF}",
             "filename": "a.pdf"}]},
        {"type": "custom_tool_call", "call_id": "c1", "name": "patch", "input": "x"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
        {"type": "function_call", "call_id": "c2", "name": "Answer",
         "arguments": '{"answer": "a"}'},
        {"type": "function_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "ok"}]}],
}
GEMINI = "/v1beta/models/{model}:generateContent"
GEMINI_COUNT = "/v1beta/models/{model}:countTokens"
MORE_GEMINI = {
    "systemInstruction": "Answer in JSON.",
    "contents": [
        {"role": "user", "parts": [
            {"text": "Look."},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}]},
        {"role": "model", "parts": [
            {"text": "Thinking.", "thought": True, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "Answer", "args": {"answer": "a"}}},
            {"functionCall": {"id": "c2", "name": "Answer", "args": {"answer": "b"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "Answer", "response": {"error": "no"}}},
            {"functionResponse": {"id": "c2", "name": "Answer", "response": {"output": "ok"},
                                  "parts": [{"inlineData": {"mimeType": "image/png",
                                                            "data": "iVBORw0KGgo="}}]}}]}],
    "tools": [{"functionDeclarations": [{"name": "Answer", "parameters": {
        "type": "OBJECT", "properties": {"answer": {"type": "STRING", "nullable": True}},
        "required": ["answer"]}}]}, {"googleSearch": {}}, {"codeExecution": {}}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Answer"]}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "generation_config": {"max_output_tokens": 100, "candidate_count": 1, "stop_sequences": ["X"],
                          "response_mime_type": "application/json",
                          "response_schema": {"type": "OBJECT", "properties": {
                              "answer": {"type": "STRING"}}},
                          "thinking_config": {"thinking_budget": -1}},
}
CLAUDE_CODE = fixture("anthropic/claude_code_request.json")
SEEDS: dict[str, list[dict[str, Any]]] = {
    "/v1/messages": [CLAUDE_CODE, MORE_ANTHROPIC],
    "/v1/messages/count_tokens": [without(body, "stream", "max_tokens", "metadata")
                                  for body in (CLAUDE_CODE, MORE_ANTHROPIC)],
    "/v1/chat/completions": [fixture("openai_chat/requests/agent_turn.json"), MORE_CHAT],
    "/v1/responses": [
        *(fixture(f"openai_responses/codex_request_{name}.json")
          for name in ("first_turn", "second_turn", "tool_search")),
        MORE_RESPONSES,
    ],
    # The model and streaming go into the URL (gemini_url); the rest is the body.
    GEMINI: [fixture("gemini/gemini_cli_request.json"), fixture("gemini/client_request.json"),
             MORE_GEMINI],
    # `contents` alone, or a whole generateContentRequest.
    GEMINI_COUNT: [fixture("gemini/client_request.json"),
                   {"generateContentRequest": {"model": "models/gem-client", **MORE_GEMINI}}],
}


# ------------------------------------------------------------------ raw JSON text
# Values no Python object serialises to: nesting deeper than any encoder recurses, numbers
# out of every range, tokens JSON does not have. They ride in the body as placeholders that
# `encode` swaps for their text.


class Raw:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def deep(depth: int, kind: str) -> Raw:
    if kind == "object":
        return Raw('{"a":' * depth + "1" + "}" * depth)
    if kind == "array":
        return Raw("[" * depth + "]" * depth)
    # what a schema or a content list nests: objects in lists in objects
    return Raw('{"type":"object","items":[' * depth + "1" + "]}" * depth)


RAW_TOKENS = [Raw("NaN"), Raw("-Infinity"), Raw("1e400"), Raw("-1e400"), Raw("1" * 400),
              Raw("-" + "9" * 30), Raw('"\\ud800"'), Raw('"\\u0000"'), Raw("1.0e-400")]


def encode(body: JSON) -> bytes:
    raws: list[Raw] = []

    def placeholder(value: JSON) -> JSON:  # called by the encoder for what it cannot write
        if isinstance(value, Raw):
            raws.append(value)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(f"not JSON: {value!r}")

    text = json.dumps(body, ensure_ascii=False, default=placeholder)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw.text, 1)
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ mutations


def walk(value: JSON, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in `value` (the root is ())."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += walk(item, (*path, i))
    return found


def words(seeds: list[dict[str, Any]]) -> tuple[list[str], list[str], list[JSON]]:
    """The keys, the short strings and the values found in `seeds`: what a mutation puts in
    the wrong place."""
    keys: set[str] = set()
    strings: set[str] = set()
    values: list[JSON] = []
    for seed in seeds:
        for path in walk(seed):
            value = get(seed, path)
            if path and isinstance(path[-1], str):
                keys.add(path[-1])
            if isinstance(value, str) and len(value) < 40:
                strings.add(value)
            if path and len(orjson.dumps(value)) < 2000:
                values.append(value)
    return sorted(keys), sorted(strings), values


def get(value: JSON, path: tuple[Any, ...]) -> JSON:
    for step in path:
        value = value[step]
    return value


ODD = [None, True, False, 0, -1, 1, 7, 1.5, -0.0, 2**31, 2**63 - 1, -(2**63), 2**64, 10**30,
       "", " ", "0", "1", "-1", "1.5", "NaN", "Infinity", "1e309", "null", "true", "false",
       "[]", "{}", "x" * 100_000, "\u2028\ud83d\ude00\u0301", "\x00", "a\r\nb: c",
       [], [None], [0], [""], [[]], [{}], [True], {}, {"type": None}, {"type": 1},
       {"type": "text"}, {"type": "text", "text": None}, {"": None}]
# Around the gateway's limit (240 levels in all), orjson's encoder's (254) and decoder's
# (1,024) and Python's recursion limit (1,000).
DEEP = [deep(depth, kind) for depth in (60, 200, 230, 236, 250, 500, 990, 1100, 2000, 50_000)
        for kind in ("object", "array", "mixed")]


def odd_value(strings: list[str], values: list[JSON]) -> st.SearchStrategy[JSON]:
    # Copied as drawn: later mutations edit what is in the body, and the shared originals
    # must stay as they were, or the strategy would draw differently from run to run.
    return st.one_of(
        st.sampled_from(ODD),
        st.sampled_from(strings),
        st.sampled_from(values),  # right shape, wrong place
        st.sampled_from(RAW_TOKENS + DEEP),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.lists(st.sampled_from(ODD[:20]), max_size=3),
        st.dictionaries(st.sampled_from(strings), st.sampled_from(ODD[:30]), max_size=3),
    ).map(copy.deepcopy)


class Example:
    """A mutated body; shown (in a failure report) as the mutations that made it."""

    def __init__(self, body: JSON, steps: list[str]) -> None:
        self.body = body
        self.steps = "; ".join(steps)

    def __repr__(self) -> str:
        return self.steps


def alike(value: JSON, strings: list[str]) -> st.SearchStrategy[JSON]:
    """A value of the same JSON type as `value`, odd in another way: empty, extreme, long,
    duplicated; what a parser accepts and a renderer must still cope with."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63)]) | st.integers(-9, 9)
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(value, str):
        odd = ["", " ", "x" * 100_000, "\u2028\U0001f600\u0301", "a\r\nb: c"]
        return st.sampled_from([*odd, *strings])
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], value[::-1], value + value]).map(copy.deepcopy)
    if isinstance(value, dict):
        return st.sets(st.sampled_from(sorted(value)) if value else st.nothing()).map(
            lambda keep: {k: copy.deepcopy(v) for k, v in value.items() if k in keep})
    return st.none()


class Seed:
    """A seed body as JSON text (decoding it is the cheapest deep copy) and its paths, all
    and those at the top, with `model` set and with or without `stream` (scalars, so the
    other paths are the same either way): what the first mutation picks from."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.raw = orjson.dumps(body)
        self.paths = {stream: walk({**body, "model": "m", **({"stream": True} if stream else {})
                                    })[1:] for stream in (False, True)}
        self.top = {stream: [p for p in paths if len(p) <= 3]
                    for stream, paths in self.paths.items()}


def pick(draw: st.DrawFn, choices: list[Any]) -> Any:
    """One of `choices`, drawn as an index: no strategy is built for a list made anew."""
    return choices[draw(st.integers(0, len(choices) - 1))]


ACTIONS = st.sampled_from(["replace", "alike", "alike", "delete", "add", "wrap"])


class Mutation:
    """One change at a path of a body, drawn from an endpoint's words (see `words`)."""

    def __init__(self, seeds: list[dict[str, Any]]) -> None:
        keys, self.strings, values = words(seeds)
        self.odd = odd_value(self.strings, values)
        self.key = st.one_of(st.sampled_from(keys), st.text(max_size=12))

    def apply(self, draw: st.DrawFn, body: JSON, path: tuple[Any, ...]) -> str:
        """Change `body` at `path`; what was done, for a failure's report."""
        target = get(body, path)
        action = draw(ACTIONS)
        if action == "add" and isinstance(target, dict):
            name = draw(self.key)
            target[name] = draw(self.odd)
            return f"add {path}+{name!r}"
        if action == "add" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(self.odd))
            return f"insert into {path}"
        parent = get(body, path[:-1])
        if action == "delete":
            del parent[path[-1]]
        elif action == "alike":
            parent[path[-1]] = draw(alike(target, self.strings))
        elif action == "wrap":  # the same value one level down: a shape one off
            parent[path[-1]] = draw(st.sampled_from([[target], {"value": target}]))
        else:
            parent[path[-1]] = draw(self.odd)
            action = "replace"
        return f"{action} {path}"


def bodies(endpoint: str) -> st.SearchStrategy[Example]:
    seeds = [Seed(seed) for seed in SEEDS[endpoint]]
    mutation = Mutation(SEEDS[endpoint])

    @st.composite
    def mutated(draw: st.DrawFn) -> Example:
        seed = pick(draw, seeds)
        body: JSON = orjson.loads(seed.raw)
        body["model"] = draw(st.sampled_from(MODELS))
        stream = draw(st.sampled_from([True, False, None]))
        if stream is not None:
            body["stream"] = stream
        body_model = body["model"]
        steps: list[str] = []
        if draw(st.integers(0, 30)) == 0:  # now and then, no object at all
            return Example(draw(mutation.odd), ["the body replaced"])
        for step in range(draw(st.integers(1, 3))):
            top = draw(st.booleans())  # the top of the body, where every parser starts
            if step == 0:  # the seed's own paths
                paths = (seed.top if top else seed.paths)["stream" in body]
            else:
                paths = walk(body)[1:]
                if top:
                    paths = [p for p in paths if len(p) <= 3]
            if not paths:
                break
            steps.append(mutation.apply(draw, body, pick(draw, paths)))
        return Example(body, [f"model={body_model}, stream={stream}", *steps])

    return mutated()


# ------------------------------------------------------------------ the checks


def protocol_error(endpoint: str, status: int, raw: bytes) -> None:
    """An error answer as the client's SDK expects it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AssertionError(f"{status} with a body that is not JSON: {raw[:300]!r}") from None
    if endpoint.startswith("/v1/messages"):
        assert body.get("type") == "error", body
        error = body.get("error")
        assert isinstance(error, dict) and isinstance(error.get("type"), str), body
    elif endpoint in (GEMINI, GEMINI_COUNT):
        error = body.get("error")
        assert isinstance(error, dict) and isinstance(error.get("status"), str), body
        assert error.get("code") == status, body
    else:
        error = body.get("error")
        assert isinstance(error, dict), body
    assert isinstance(error.get("message"), str) and error["message"], body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


async def check(stack: Stack, session: aiohttp.ClientSession, endpoint: str, body: JSON,
                steps: str) -> None:
    for fake in stack.fakes:
        reset(fake)  # the fakes keep every request: forget the last example's
    logged = stack.gw.log_path.stat().st_size
    path = gemini_url(body, endpoint == GEMINI_COUNT) if endpoint.startswith("/v1beta/") \
        else endpoint
    async with session.post(stack.gw.url + path, data=encode(body),
                            headers=HEADERS) as resp:
        status, raw = resp.status, await resp.read()
    where = f"{endpoint} after {steps}: {status} {raw[:400]!r}"
    assert status < 500, where
    if status >= 400:
        protocol_error(endpoint, status, raw)
    else:
        assert b"internal gateway error" not in raw, where  # an error event inside a stream
    with stack.gw.log_path.open("rb") as log:
        log.seek(logged)
        new = log.read()
    assert b"Traceback" not in new, f"{where}\n{new.decode(errors='replace')[-3000:]}"
    assert stack.gw.process.poll() is None, where


def gemini_url(body: JSON, count: bool = False) -> str:
    """A Gemini body's model and streaming, as its URL carries them (taken out of the body,
    whatever the mutations made of them); `count`: the model's :countTokens."""
    model, stream = "gem-client", None
    if isinstance(body, dict):
        model, stream = body.pop("model", model), body.pop("stream", None)
    if not isinstance(model, str):
        model = json.dumps(model, default=repr)[:200]  # integers past 64 bits too
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    if count:
        action = "countTokens"
    return f"/v1beta/models/{quote(model, safe='')}:{action}"


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same bodies on every run
    database=None,
    deadline=None,  # the gateway's time is not the property
    # `stack` is function-scoped but hands every test the session's one gateway; `check`
    # resets the fakes before each example.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
    print_blob=False,
)


STRATEGIES = {endpoint: bodies(endpoint) for endpoint in SEEDS}


@pytest.mark.parametrize("endpoint", list(SEEDS))
@FUZZ
@given(data=st.data())
async def test_mutated_bodies_never_get_a_5xx(
    stack: Stack, session: aiohttp.ClientSession, endpoint: str, data: st.DataObject
) -> None:
    example = data.draw(STRATEGIES[endpoint], label="body")
    await check(stack, session, endpoint, example.body, example.steps)


async def test_the_gateway_still_serves_after_the_fuzzing(stack: Stack) -> None:
    async with aiohttp.ClientSession() as s, s.get(stack.gw.url + "/health") as resp:
        assert resp.status == 200


@pytest.mark.parametrize("endpoint", list(SEEDS))
async def test_values_nested_past_what_a_step_follows_are_a_4xx(
    stack: Stack, session: aiohttp.ClientSession, endpoint: str
) -> None:
    """Nothing checks depth in advance (canonical.nesting): a value deeper than orjson encodes
    (254), than Python's walkers recurse (~1,000 frames) or than orjson decodes (1,024) fails
    where it is rendered, walked or decoded, and that step's failure must still be the
    client's 4xx. Here in every object of a seed body, for every kind of upstream."""
    seed = SEEDS[endpoint][-1]
    paths = [p for p in walk(seed)[1:] if isinstance(get(seed, p), dict)]
    assert paths
    for n, path in enumerate(paths):
        for value in (deep(250, "schema"), deep(600, "object"), deep(990, "schema")):
            body = copy.deepcopy(seed)
            body["model"] = MODELS[n % len(MODELS)]
            get(body, path[:-1])[path[-1]] = value
            await check(stack, session, endpoint, body, f"{value!r} at {path}")
