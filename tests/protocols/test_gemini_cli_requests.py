"""Gemini CLI's own requests (recorded from @google/gemini-cli 0.61.0 against a capturing fake
upstream) through the client-facing Gemini codec and on to every upstream codec, and the
other direction: what a Gemini client receives, and what it sends back, for each kind of
reasoning. Also the URL side of the Gemini API (endpoint.py): paths and the JSON-array
stream framing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    MessageDelta,
    MessageStart,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
    Response,
    Text,
    ToolCall,
    ToolResult,
    Usage,
)
from babelgate.protocols import Quirks, get_codec
from babelgate.protocols.gemini import codec
from babelgate.protocols.gemini.endpoint import (
    ArrayFraming,
    GeminiCall,
    GeminiPath,
    parse_path,
)
from babelgate.protocols.gemini.parts import SIGNATURE_PREFIX
from babelgate.server.passthrough import can_pass_through

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
SKIP = "skip_thought_signature_validator"  # what Gemini CLI puts on calls it got unsigned


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def cli_request() -> Request:
    return GeminiCall("gemini-3.1-pro-preview", True).parse_request(
        load("gemini_cli_request.json"))


def test_parse_gemini_cli_turn() -> None:
    request = cli_request()
    assert (request.model, request.stream) == ("gemini-3.1-pro-preview", True)
    assert request.system and request.system[0].text.lstrip().startswith("You are Gemini CLI")
    assert (request.temperature, request.top_p, request.top_k) == (1, 0.95, 64)
    # thinkingLevel "HIGH" (upper case, as the CLI sends it) with includeThoughts
    assert request.reasoning == ReasoningConfig(enabled=True, effort="high")
    names = [tool.name for tool in request.tools]
    assert len(names) == 15 and "run_shell_command" in names
    shell = request.tools[names.index("run_shell_command")]
    assert shell.parameters["type"] == "object" and "command" in shell.parameters["properties"]
    ask, model, results = request.messages
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    context, prompt = ask.parts  # the CLI's session context, then the user's words
    assert isinstance(context, Text) and "<session_context>" in context.text
    assert isinstance(prompt, Text) and "RUN<<cat marker.txt>>" in prompt.text
    (call,) = model.parts
    assert isinstance(call, ToolCall)
    assert call.id.startswith("run_shell_command_") and call.name == "run_shell_command"
    assert call.arguments == {"command": "cat marker.txt"}
    assert call.provider_metadata == {"thought_signature": SKIP}
    (result,) = results.parts
    assert isinstance(result, ToolResult)
    assert result.call_id == call.id and result.name == "run_shell_command"
    assert isinstance(result.content[0], Text) and "tok-abc123" in result.content[0].text
    assert not result.is_error


def test_gemini_cli_turn_for_anthropic() -> None:
    body = get_codec("anthropic").render_request(
        replace(cli_request(), model="claude-x"), Quirks())
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    use = body["messages"][1]["content"][0]
    assert use["type"] == "tool_use" and use["name"] == "run_shell_command"
    result = body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    assert "tok-abc123" in json.dumps(result["content"])
    # The CLI dropped its thoughts from the history, so the tool turn is unsigned: thinking
    # must be off for this request (Anthropic would refuse it), and no foreign signature leaks.
    assert "thinking" not in body or body["thinking"].get("type") == "disabled"
    assert SKIP not in orjson.dumps(body).decode()
    assert len(body["tools"]) == 15


def test_gemini_cli_turn_for_openai_chat_and_responses() -> None:
    chat = get_codec("openai").render_request(
        replace(cli_request(), model="gpt-x"), Quirks())
    tool_msgs = [m for m in chat["messages"] if m["role"] == "tool"]
    calls = [c for m in chat["messages"] for c in m.get("tool_calls") or []]
    assert len(calls) == 1 and tool_msgs[0]["tool_call_id"] == calls[0]["id"]
    assert chat["reasoning_effort"] == "high"
    responses = get_codec("openai-responses").render_request(
        replace(cli_request(), model="gpt-x"), Quirks())
    kinds = [item.get("type") for item in responses["input"]]
    assert "function_call" in kinds and "function_call_output" in kinds
    assert SKIP not in orjson.dumps([chat, responses]).decode()


def test_gemini_cli_turn_for_gemini_keeps_the_cli_signature() -> None:
    body = codec.render_request(replace(cli_request(), model="gemini-x"), Quirks())
    model_turn = body["contents"][-2]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["thoughtSignature"] == SKIP
    response = body["contents"][-1]["parts"][0]["functionResponse"]
    assert response["name"] == "run_shell_command"


def test_gemini_cli_classifier_schema_is_json_schema() -> None:
    """The CLI's router asks for JSON with a Schema-style (`OBJECT`) responseJsonSchema;
    other upstreams get standard JSON Schema."""
    request = GeminiCall("gemini-3.5-flash-lite", False).parse_request(
        load("gemini_cli_classifier.json"))
    assert request.response_format is not None
    schema = request.response_format["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["complexity_score"]["type"] == "integer"
    chat = get_codec("openai").render_request(replace(request, model="gpt-x"), Quirks())
    assert chat["response_format"]["type"] == "json_schema"


# ---------------------------------------------------------------- towards the client and back


def anthropic_thinking() -> Reasoning:
    return Reasoning(text="Let me check the weather.", signature="EqMBsig==", origin="anthropic")


def weather_call() -> ToolCall:
    return ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Paris"})


def test_foreign_reasoning_round_trips_through_a_whole_response() -> None:
    request = Request(model="gemini-x", messages=())
    response = Response(id="r1", model="claude-x", parts=(anthropic_thinking(), weather_call()),
                        stop_reason="tool_use",
                        usage=Usage(input_tokens=10, output_tokens=30, reasoning_tokens=12,
                                    cache_read_tokens=5))
    body = codec.render_response(response, request)
    parts = body["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[0]["text"] == "Let me check the weather."
    signature = parts[0]["thoughtSignature"]
    assert signature.startswith(SIGNATURE_PREFIX)
    # Valid base64, as the SDKs require of a bytes field; they may resend it URL-safe.
    resent = base64.urlsafe_b64encode(base64.b64decode(signature, validate=True)).decode()
    assert echo([{**parts[0], "thoughtSignature": resent}, parts[1]])[0] == anthropic_thinking()
    assert parts[1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"},
                                        "id": "toolu_01"}
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"] == {"promptTokenCount": 15, "candidatesTokenCount": 18,
                                     "totalTokenCount": 45, "thoughtsTokenCount": 12,
                                     "cachedContentTokenCount": 5}
    back = echo(parts)
    assert back[0] == anthropic_thinking()
    assert back[1] == weather_call()


def test_foreign_reasoning_round_trips_through_a_stream() -> None:
    """Streamed, the thought reaches the client in pieces and its signature in a last empty
    thought part; sent back so, it is one signed thinking block again."""
    request = Request(model="gemini-x", messages=(), stream=True)
    encoder = codec.stream_encoder(request)
    thinking = anthropic_thinking()
    events = [
        MessageStart("r1", "claude-x", Usage(input_tokens=10)),
        PartStart(0, Reasoning(origin="anthropic")),
        ReasoningDelta(0, "Let me check "),
        ReasoningDelta(0, "the weather."),
        PartStop(0, thinking),
        PartStart(1, weather_call()),
        PartStop(1, weather_call()),
        MessageDelta("tool_use", Usage(input_tokens=10, output_tokens=30)),
    ]
    raw = b"".join(encoder.encode(e) for e in events)
    chunks = [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: ")]
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    assert [p.get("text") for p in parts if p.get("thought")] == [
        "Let me check ", "the weather.", ""]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    kept = [p for p in parts if p.get("text") or "functionCall" in p or "thoughtSignature" in p]
    back = echo(kept)
    assert back == [thinking, weather_call()]


def echo(parts: list[Any]) -> list[Any]:
    """The model turn a client sends back (with a response to its call), parsed again."""
    body = {"contents": [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": parts},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"output": "sunny"}}}]},
    ]}
    request = codec.parse_request(body)
    result = request.messages[2].parts[0]
    assert isinstance(result, ToolResult) and result.call_id == "toolu_01"
    return list(request.messages[1].parts)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_turn_reasoning_rides_on_the_first_call(streamed: bool) -> None:
    """Gemini CLI drops thought parts from its history but keeps a call's thoughtSignature:
    the turn's foreign reasoning (DeepSeek's text, which it needs echoed; Anthropic's signed
    thinking) comes back through the first call alone, once, before the calls."""
    deepseek = Reasoning(text="I will run two commands.", origin="openai")
    second_call = ToolCall(id="toolu_02", name="get_weather", arguments={"city": "Rome"})
    parts_in = (anthropic_thinking(), deepseek, weather_call(), second_call)
    request = Request(model="gemini-x", messages=(), stream=streamed)
    if streamed:
        encoder = codec.stream_encoder(request)
        events: list[Any] = [MessageStart("r1", "x", Usage())]
        for i, part in enumerate(parts_in):
            events += [PartStart(i, part), PartStop(i, part)]
        raw = b"".join(encoder.encode(e) for e in events)
        chunks = [orjson.loads(line[6:]) for line in raw.splitlines()
                  if line.startswith(b"data: ")]
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    else:
        response = Response(id="r", model="x", parts=parts_in, stop_reason="tool_use")
        parts = codec.render_response(response, request)["candidates"][0]["content"]["parts"]
    calls = [p for p in parts if "functionCall" in p]
    assert calls[0]["thoughtSignature"].startswith(SIGNATURE_PREFIX)
    assert "thoughtSignature" not in calls[1]
    # What Gemini CLI sends back: the calls only (it keeps no thoughts)...
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]},
                         {"role": "model", "parts": calls}]}
    assert list(codec.parse_request(body).messages[1].parts) == list(parts_in)
    # ...and a client that keeps everything gets the same, not the reasoning twice.
    kept = [p for p in parts if p.get("text") or "functionCall" in p]
    body["contents"][1]["parts"] = kept
    assert list(codec.parse_request(body).messages[1].parts) == list(parts_in)


def test_history_with_our_envelope_is_translated_not_passed_through() -> None:
    """A conversation that went through another upstream carries our envelopes: a Gemini
    upstream must not see them, so such a body is translated (the codec drops them)."""
    response = Response(id="r", model="c", parts=(anthropic_thinking(), weather_call()))
    parts = codec.render_response(response, Request(model="g", messages=()))[
        "candidates"][0]["content"]["parts"]
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]},
                         {"role": "model", "parts": parts}]}
    assert not can_pass_through("gemini", "gemini", orjson.dumps(body))
    assert can_pass_through("gemini", "gemini", orjson.dumps(load("gemini_cli_request.json")))
    rendered = codec.render_request(codec.parse_request(body), Quirks())
    assert SIGNATURE_PREFIX not in orjson.dumps(rendered).decode()


def test_gemini_reasoning_keeps_its_signatures() -> None:
    thought = Reasoning(text="Thinking.", signature="CpoBgemini", origin="gemini")
    signed_call = ToolCall(id="call_1", name="f", arguments={},
                           provider_metadata={"thought_signature": "CpoBcall"})
    response = Response(id="r", model="g", parts=(thought, Text("Done."), signed_call))
    parts = codec.render_response(response, Request(model="g", messages=()))[
        "candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "Thinking.", "thought": True, "thoughtSignature": "CpoBgemini"}
    assert parts[2]["thoughtSignature"] == "CpoBcall"
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]},
                         {"role": "model", "parts": parts}]}
    back = codec.parse_request(body).messages[1].parts
    assert back[0] == thought
    assert isinstance(back[2], ToolCall) and back[2].provider_metadata == {
        "thought_signature": "CpoBcall"}
    assert SIGNATURE_PREFIX not in str(parts)  # Gemini's own signatures are not wrapped


def test_refusal_and_max_tokens_finish_reasons() -> None:
    request = Request(model="g", messages=())
    for stop, finish in (("refusal", "SAFETY"), ("max_tokens", "MAX_TOKENS"),
                         ("end_turn", "STOP"), ("tool_use", "STOP")):
        response = Response(id="r", model="g", parts=(Text("x"),), stop_reason=stop)
        body = codec.render_response(response, request)
        assert body["candidates"][0]["finishReason"] == finish


# ---------------------------------------------------------------- URLs and framing


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1beta/models/gemini-2.5-pro:generateContent",
     GeminiPath("gemini-2.5-pro", "generateContent")),
    ("/v1/models/gemini-2.5-pro:streamGenerateContent",
     GeminiPath("gemini-2.5-pro", "streamGenerateContent")),
    ("/v1beta/models/models/gemini-2.5-pro:countTokens",
     GeminiPath("gemini-2.5-pro", "countTokens")),
    ("/v1beta/models/ollama/qwen3:8b:generateContent",
     GeminiPath("ollama/qwen3:8b", "generateContent")),
    ("/v1beta/models/ollama/qwen3:8b", GeminiPath("ollama/qwen3:8b", None)),
    ("/v1beta/models/gemini-2.5-pro:embedContent", GeminiPath("gemini-2.5-pro:embedContent",
                                                              None)),
    ("/v1beta/models", GeminiPath("", None)),
    ("/v1beta/files/abc", None),
    ("/v1/messages", None),
])
def test_parse_path(path: str, expected: GeminiPath | None) -> None:
    assert parse_path(path) == expected


def test_array_framing_any_split() -> None:
    sse = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n: comment\r\n\r\ndata: {"c":3}\r\n\r\n'
    for size in (1, 3, 7, len(sse)):
        framing = ArrayFraming()
        out = b"".join(framing.feed(sse[i:i + size]) for i in range(0, len(sse), size))
        out += framing.close()
        assert orjson.loads(out) == [{"a": 1}, {"b": 2}, {"c": 3}]
        assert out.startswith(b'[{"a":1}')
    empty = ArrayFraming()
    assert orjson.loads(empty.feed(b": keep-alive\n\n") + empty.close()) == []
