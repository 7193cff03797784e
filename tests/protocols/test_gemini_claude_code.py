"""Claude Code on Gemini, through the real Anthropic codec: what Gemini signs, Claude Code
echoes back in its own format, and the next Gemini request gets every signature back on the
right part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from msgspec.structs import replace

from babelgate.canonical import Accumulator, Message, Request, Text, Tool
from babelgate.protocols import get_codec
from babelgate.protocols.base import Quirks
from babelgate.protocols.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
SEARCH = "mcp__my server/search"


def test_signatures_survive_a_claude_code_turn() -> None:
    gemini, anthropic = get_codec("gemini"), get_codec("anthropic")
    request = Request(
        model="gemini-3-pro-preview",
        messages=(Message("user", (Text("Fix the failing test"),)),),
        tools=(Tool(name="Read"), Tool(name=SEARCH)),
        stream=True,
    )
    decoder = gemini.stream_decoder(request)
    acc = Accumulator()
    body = (FIXTURES / "gemini3_stream_tool_calls.sse").read_bytes()
    for event in [*decoder.feed(body), *decoder.close()]:
        acc.feed(event)
    shown: dict[str, Any] = anthropic.render_response(acc.response(), request)

    # Claude Code sends the assistant content back unchanged, with its tool results.
    calls = [b for b in shown["content"] if b["type"] == "tool_use"]
    assert [c["name"] for c in calls] == ["Read", SEARCH]
    next_turn = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "messages": [
            {"role": "user", "content": "Fix the failing test"},
            {"role": "assistant", "content": shown["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c["id"], "content": f"result {i}"}
                    for i, c in enumerate(calls)
                ],
            },
        ],
        "tools": [
            {"name": "Read", "input_schema": {"type": "object", "properties": {}}},
            {"name": SEARCH, "input_schema": {"type": "object", "properties": {}}},
        ],
    }
    parsed = replace(anthropic.parse_request(next_turn), model="gemini-3-pro-preview")
    contents = gemini.render_request(parsed, Quirks())["contents"]
    model, results = contents[1]["parts"], contents[2]["parts"]
    assert model[0] == {
        "text": "Checking both files.",
        "thought": True,
        "thoughtSignature": "EpQFsigOnThought==",
    }
    assert model[1] == {"text": "Let me read them."}
    assert model[2]["thoughtSignature"] == "EpQFCpEFAdHtim9G3sigFIRSTcallONLY=="
    assert model[2]["functionCall"] == {"name": "Read", "args": {"file_path": "/repo/src/app.py"}}
    assert "thoughtSignature" not in model[3]
    assert model[3]["functionCall"]["name"] == "mcp__my_server_search_589b6e8c"
    assert [r["functionResponse"]["name"] for r in results] == [
        "Read",
        "mcp__my_server_search_589b6e8c",
    ]
    assert [r["functionResponse"]["response"] for r in results] == [
        {"output": "result 0"},
        {"output": "result 1"},
    ]


def test_trailing_text_signature_is_not_shown_to_claude_code() -> None:
    """Gemini signs its last text chunk. Claude Code takes the last block of a message as the
    answer, so the bare signature is not shown after the text (Gemini does not require text
    signatures back), and the next turn reaches Gemini without it."""
    gemini, anthropic = get_codec("gemini"), get_codec("anthropic")
    request = Request(model="gemini-3-pro-preview", messages=(Message("user", (Text("run"),)),))
    decoder = gemini.stream_decoder(request)
    acc = Accumulator()
    body = (FIXTURES / "gemini3_stream_text_signature.sse").read_bytes()
    for event in [*decoder.feed(body), *decoder.close()]:
        acc.feed(event)
    shown: dict[str, Any] = anthropic.render_response(acc.response(), request)
    assert shown["content"] == [{"type": "text", "text": "All tests pass now."}]
    next_turn = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [
            {"role": "user", "content": "run"},
            {"role": "assistant", "content": shown["content"]},
            {"role": "user", "content": "thanks"},
        ],
    }
    parsed = replace(anthropic.parse_request(next_turn), model="gemini-3-pro-preview")
    model = gemini.render_request(parsed, Quirks())["contents"][1]["parts"]
    assert model == [{"text": "All tests pass now."}]


def test_trailing_text_signature_is_not_streamed_to_claude_code() -> None:
    gemini, anthropic = get_codec("gemini"), get_codec("anthropic")
    request = Request(model="gemini-3-pro-preview", messages=(Message("user", (Text("run"),)),))
    decoder = gemini.stream_decoder(request)
    encoder = anthropic.stream_encoder(request)
    body = (FIXTURES / "gemini3_stream_text_signature.sse").read_bytes()
    out = b"".join(encoder.encode(e) for e in [*decoder.feed(body), *decoder.close()])
    sse = SSEDecoder()
    starts = [
        orjson.loads(e.data)["content_block"]["type"]
        for e in [*sse.feed(out), *sse.flush()]
        if e.event == "content_block_start"
    ]
    assert starts == ["text"]
