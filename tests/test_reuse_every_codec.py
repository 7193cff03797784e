"""Every codec's output with the reuse table on and off: the same bytes.

Each recorded client request (tests/fixtures, padded so that every piece is worth keeping) is
sent as a session would send it, turn after turn with random edits (a new last turn, an
earlier item changed or dropped, the tool list changed), and each turn goes through all of
it twice: once through one reuse table, as the gateway does for a caller, and once decoded in
one go with no table. Compared byte for byte (ids and clocks a codec makes up aside):
the parsed Request; the upstream body every upstream codec renders, under two sets of
quirks, as sent and after each routing rule's edits (and the client's own body edited for
pass-through, which must leave the shared pieces as they were); the upstream's recorded
answer parsed back; the client's response body and its stream, encoded from that answer.
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from msgspec.structs import replace

from babelgate.canonical import Request, Response, Text
from babelgate.canonical.stream import response_events
from babelgate.protocols import PROTOCOL_NAMES, Quirks, get_codec
from babelgate.protocols.gemini.endpoint import GeminiCall
from babelgate.protocols.reuse import MIN_BODY, Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS
from babelgate.routing.rules import Edits
from babelgate.server.rule_edits import edit_body

FIXTURES = Path(__file__).parent / "fixtures"
PAD = "lorem ipsum dolor sit amet " * 30  # ~800 B: every padded piece is kept

# client protocol -> (request fixture, conversation key)
CLIENTS = {
    "anthropic": ("anthropic/claude_code_request.json", "messages"),
    "openai": ("openai_chat/requests/agent_turn.json", "messages"),
    "openai-responses": ("openai_responses/codex_request_second_turn.json", "input"),
    "gemini": ("gemini/client_request.json", "contents"),
}
# upstream protocol -> a recorded answer of it
ANSWERS = {
    "anthropic": "anthropic/response_tool_use.json",
    "openai": "openai_chat/responses/openai_parallel_tools.json",
    "gemini": "gemini/gemini3_parallel_calls.json",
    "openai-responses": "openai_responses/upstream_response_tool_call.json",
}
# What routing rules do to a request (routing/rules.py Edits): on the canonical request when
# it is translated, on the client's body when it passes through (server/rule_edits.py).
RULE_EDITS = (
    Edits(fields=(("temperature", 0.3),), set=(("temperature", 0.3),),
          prepend=Text("Rule: be brief."), append=Text("Rule: answer in French."),
          max_tokens=512),
    Edits(fields=(("tools", ()), ("tool_choice", None)), remove=("tools", "tool_choice"),
          prepend=Text("Rule: no tools here.")),
)
OTHER_QUIRKS = Quirks(images=False, documents=True, auto_cache=True, echo_reasoning=True,
                      reasoning_control="thinking", strict_fields=False)
_MADE_UP = re.compile(rb'"(?:resp|msg|rs|tsc|ctc|fc|call|toolu|chatcmpl)_[A-Za-z0-9_-]+"'
                      rb'|"created(?:_at)?":\d+')


def padded(protocol: str) -> dict[str, Any]:
    path, key = CLIENTS[protocol]
    body: dict[str, Any] = orjson.loads((FIXTURES / path).read_bytes())
    for item in body[key]:
        if isinstance(item, dict):
            item["pad"] = PAD  # an unknown field: every codec ignores it
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        tools.append(copy.deepcopy(tools[0]))
        tools[-1]["pad"] = PAD
    system = body.get("systemInstruction")  # Gemini's: a Content, kept when large enough
    if isinstance(system, dict):
        system["pad"] = PAD
    return body


def edited(body: dict[str, Any], key: str, rng: random.Random, turn: int) -> dict[str, Any]:
    """The next turn of the session: the last item again with new text, and sometimes an
    edit elsewhere (an item dropped or its padding changed, the tool list changed)."""
    body = copy.deepcopy(body)
    items = body[key]
    new = copy.deepcopy(items[0])
    new["pad"] = f"turn {turn} " + PAD
    items.append(new)
    roll = rng.random()
    if roll < 0.2 and len(items) > 3:
        del items[rng.randrange(1, len(items) - 1)]
    elif roll < 0.4:
        items[rng.randrange(len(items))]["pad"] = f"edited {turn} " + PAD
    elif roll < 0.5 and isinstance(body.get("tools"), list):
        body["tools"] = body["tools"][::-1]
    return body


def same(shared: Any, plain: Any) -> None:
    """The bytes that go out (shared pieces pre-serialised), made-up ids and clocks aside."""
    a = shared if isinstance(shared, bytes) else orjson.dumps(shared)
    b = plain if isinstance(plain, bytes) else orjson.dumps(plain)
    assert _MADE_UP.sub(b"*", a) == _MADE_UP.sub(b"*", b)


def answer(upstream: str, request: Request, table: Reuse | None) -> Response | None:
    path = ANSWERS.get(upstream)
    if path is None:
        return None
    body = orjson.loads((FIXTURES / path).read_bytes())
    return get_codec(upstream).parse_response(body, request, table)


def stream(client: str, request: Request, response: Response, table: Reuse | None) -> bytes:
    encoder = get_codec(client).stream_encoder(request, table)
    return b"".join(encoder.encode(event) for event in response_events(response))


def upstream_request(request: Request) -> Request:
    """What the gateway renders for a target (the gateway's own _upstream_request)."""
    return replace(request, model="upstream-model", previous_response_id=None)


# How the table admits pieces: at first sight; at the second (the default); and giving up on
# splitting after one body that found nothing, every other body split.
POLICIES = {"first-sight": {"seen_once": 0}, "second-sight": {},
            "giving-up": {"give_up_after": 1, "probe_every": 2}}


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_codec_gives_the_same_bytes_with_the_table_and_without(
    client: str, policy: str
) -> None:
    rng = random.Random(13)
    table = Reuse(**POLICIES[policy])
    codec = get_codec(client)
    key = CLIENTS[client][1]
    body = padded(client)
    for turn in range(6):
        body = edited(body, key, rng, turn)
        raw = orjson.dumps(body)
        assert len(raw) >= MIN_BODY
        shared = codec.parse_request(table.loads(raw), table)
        plain = codec.parse_request(orjson.loads(raw))
        assert shared == plain
        for edits in RULE_EDITS:
            data, fresh = table.loads(raw), orjson.loads(raw)
            same(edit_body(client, data, edits), edit_body(client, fresh, edits))
            assert data == orjson.loads(raw)  # the shared pieces are as they came
        for upstream in PROTOCOL_NAMES:
            out = get_codec(upstream)
            up_shared, up_plain = upstream_request(shared), upstream_request(plain)
            for quirks in (DEFAULT_QUIRKS[upstream], OTHER_QUIRKS):
                same(out.render_request(up_shared, quirks, table),
                     out.render_request(up_plain, quirks))
                same(out.render_count_tokens(up_shared, quirks, table),
                     out.render_count_tokens(up_plain, quirks))
                for edits in RULE_EDITS:
                    same(out.render_request(edits.apply(up_shared), quirks, table),
                         out.render_request(edits.apply(up_plain), quirks))
            got_shared = answer(upstream, up_shared, table)
            got_plain = answer(upstream, up_plain, None)
            if got_shared is None or got_plain is None:
                continue
            same(msgspec.json.encode(got_shared), msgspec.json.encode(got_plain))
            same(codec.render_response(got_shared, shared, table),
                 codec.render_response(got_plain, plain))
            same(stream(client, shared, got_shared, table),
                 stream(client, plain, got_plain, None))
    assert table.hits > 0  # later turns did find earlier pieces
    assert shared == plain  # the rules' edits built new values, the shared ones stayed


def test_gemini_cli_session_parses_its_resent_pieces_once() -> None:
    """Gemini CLI's recorded request, sent turn after turn: the canonical request is the same
    with the table and without, and from the second turn on the system instruction and the
    function declarations come from the table (the very same canonical values). Through
    GeminiCall, the codec the Gemini API endpoint parses with."""
    codec = GeminiCall("gemini-2.5-flash", stream=True)
    table = Reuse(seen_once=0)
    body: dict[str, Any] = orjson.loads((FIXTURES / "gemini/gemini_cli_request.json").read_bytes())
    seen: list[Request] = []
    for turn in range(4):
        body = copy.deepcopy(body)
        body["contents"].append({"role": "model" if turn % 2 else "user",
                                 "parts": [{"text": f"turn {turn}"}]})
        raw = orjson.dumps(body)
        shared = codec.parse_request(table.loads(raw), table)
        assert shared == codec.parse_request(orjson.loads(raw))
        assert (codec.parse_count_tokens_request(table.loads(raw), table)
                == codec.parse_count_tokens_request(orjson.loads(raw)))
        seen.append(shared)
    first, *later = seen
    assert len(first.tools) == 15 and first.system
    for request in later:
        assert request.system is first.system and request.tools is first.tools
