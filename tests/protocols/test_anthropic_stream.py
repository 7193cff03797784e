"""Streams both ways: recorded Anthropic SSE -> canonical events (fed in random splits), and
canonical events -> SSE a Claude Code client accepts (checked event by event and with the
official SDK's own stream accumulator)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from tests.protocols.contract import check_stream_contract

from babelgate.canonical import (
    Accumulator,
    Event,
    GatewayError,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningDelta,
    Request,
    SignatureDelta,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.canonical.carry import split_id, unpack
from babelgate.protocols.anthropic import codec
from babelgate.protocols.anthropic.stream_decode import AnthropicStreamDecoder
from babelgate.protocols.reuse import Reuse
from babelgate.protocols.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
REQUEST = Request(model="claude-sonnet-4-5", messages=(), max_tokens=4096, stream=True)
SEEDS = range(12)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(body: bytes, seed: int, request: Request = REQUEST) -> list[Event]:
    """Feed `body` in random pieces (cutting lines and UTF-8 sequences anywhere)."""
    rng = random.Random(seed)
    decoder = codec.stream_decoder(request)
    events: list[Event] = []
    position = 0
    while position < len(body):
        size = rng.randint(1, 40)
        events += decoder.feed(body[position : position + size])
        position += size
    return events + decoder.close()


def finished(events: list[Event]) -> list[Any]:
    return [e.part for e in events if isinstance(e, PartStop)]


# ---------------------------------------------------------------- decoder


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_text(seed: int) -> None:
    events = decode(fixture("stream_text.sse"), seed)
    check_stream_contract(events)
    start = events[0]
    assert isinstance(start, MessageStart)
    assert (start.id, start.model) == ("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929")
    assert start.usage == Usage(
        input_tokens=472, output_tokens=2, cache_write_tokens=2048, cache_read_tokens=15360
    )
    assert finished(events) == [Text("Hello, wörld! 👋")]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello, wörld! 👋"
    delta = events[-2]
    assert isinstance(delta, MessageDelta) and delta.stop_reason == "end_turn"
    assert delta.usage == Usage(
        input_tokens=472, output_tokens=15, cache_write_tokens=2048, cache_read_tokens=15360
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_thinking_and_fragmented_tool_input(seed: int) -> None:
    events = decode(fixture("stream_thinking_tool.sse"), seed)
    check_stream_contract(events)
    thinking, text, call = finished(events)
    assert thinking == Reasoning(
        text="The user wants the weather. I should call get_weather for Paris.",
        signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        origin="anthropic",
    )
    assert text == Text("Let me check the weather.")
    assert isinstance(call, ToolCall)
    assert (call.id, call.name) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    assert call.arguments == {"location": "Paris, France", "unit": "celsius"}
    args = [e for e in events if isinstance(e, ToolArgsDelta)]
    assert len(args) == 1 and args[0].index == 2
    assert orjson.loads(args[0].json) == call.arguments
    # The PartStart announced the call with empty arguments, and stays that way.
    starts = [e.part for e in events if isinstance(e, PartStart)]
    assert isinstance(starts[2], ToolCall) and starts[2].arguments == {}
    response = _accumulate(events)
    assert response.stop_reason == "tool_use"
    # message_delta only repeated output_tokens: input stays what message_start said.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2159, 89)


def _accumulate(events: list[Event]) -> Any:
    accumulator = Accumulator()
    for event in events:
        accumulator.feed(event)
    return accumulator.response()


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_repairs_broken_tool_json(seed: int) -> None:
    events = decode(fixture("stream_broken_json.sse"), seed)
    check_stream_contract(events)
    doubled, truncated = finished(events)
    assert doubled.arguments == {"command": "ls -la"}  # {"..."}{"..."} repeated object
    assert truncated.arguments == {"file_path": "/tmp/a.t"}  # cut off by max_tokens
    for event in events:
        if isinstance(event, ToolArgsDelta):
            assert isinstance(orjson.loads(event.json), dict)
    assert _accumulate(events).stop_reason == "max_tokens"


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_error_event(seed: int) -> None:
    events = decode(fixture("stream_error.sse"), seed)
    check_stream_contract(events)
    error = events[-1]
    assert isinstance(error, StreamError)
    assert (error.error.kind, error.error.message) == ("overloaded", "Overloaded")
    assert error.error.retryable
    with pytest.raises(GatewayError):
        _accumulate(events)


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_truncated_stream_is_an_error(seed: int) -> None:
    events = decode(fixture("stream_truncated.sse"), seed)
    check_stream_contract(events)
    assert [type(e) for e in events] == [MessageStart, PartStart, TextDelta, StreamError]
    error = events[-1]
    assert isinstance(error, StreamError) and "message_stop" in error.error.message


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_skips_server_tool_blocks(seed: int) -> None:
    events = decode(fixture("stream_server_tool.sse"), seed)
    check_stream_contract(events)
    assert finished(events) == [Text("I'll search for that."), Text("It is sunny, 22°C.")]
    usage = _accumulate(events).usage
    assert (usage.input_tokens, usage.output_tokens) == (10682, 510)


def test_decode_maps_sanitized_tool_names_back() -> None:
    request = Request(model="m", messages=(), tools=(Tool(name="mcp.github/get issue"),))
    upstream = codec.render_request(request, _quirks())["tools"][0]["name"]
    body = fixture("stream_thinking_tool.sse").replace(b'"get_weather"', f'"{upstream}"'.encode())
    call = finished(decode(body, 0, request))[2]
    assert call.name == "mcp.github/get issue"


def _quirks() -> Any:
    from babelgate.protocols.base import Quirks

    return Quirks()


# ---------------------------------------------------------------- encoder


def sse_events(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    decoder = SSEDecoder()
    events = decoder.feed(data) + decoder.flush()
    return [(e.event, orjson.loads(e.data)) for e in events]


def encode(events: list[Event], request: Request = REQUEST) -> bytes:
    encoder = codec.stream_encoder(request)
    return b"".join(encoder.encode(e) for e in events)


def check_anthropic_sequence(events: list[tuple[str | None, dict[str, Any]]]) -> None:
    """What the Anthropic SDK and Claude Code expect, event by event."""
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names[-2] == "message_delta"
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert {"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} <= set(
        start["usage"]
    )
    expected, open_index = 0, None
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == expected
            open_index = expected
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index, expected = None, expected + 1
        else:
            assert name == "ping"
    assert open_index is None


def sdk_message(events: list[tuple[str | None, dict[str, Any]]]) -> Any:
    snapshot = None
    buffers: dict[int, bytes] = {}
    for name, data in events:
        if name not in ("ping", "error"):
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    return snapshot


def gemini_events() -> list[Event]:
    """What a Gemini decoder might produce: foreign reasoning, an empty text part, text, a
    tool call with a thought signature whose arguments arrive whole."""
    thought = Reasoning(text="Plan: read it.", signature="CiQBgemini", origin="gemini")
    call = ToolCall(
        id="functions.Read:0", name="Read", provider_metadata={"thought_signature": "CiQBts"}
    )
    full_call = ToolCall(
        id="functions.Read:0",
        name="Read",
        arguments={"file_path": "/a.py"},
        provider_metadata={"thought_signature": "CiQBts"},
    )
    return [
        MessageStart(
            id="msg_g1", model="gemini-3-pro", usage=Usage(input_tokens=1200, cache_read_tokens=300)
        ),
        PartStart(0, Reasoning(origin="gemini")),
        ReasoningDelta(0, "Plan: "),
        ReasoningDelta(0, "read it."),
        PartStop(0, thought),
        PartStart(1, Text("")),
        TextDelta(1, ""),
        PartStop(1, Text("")),
        PartStart(2, Text("")),
        TextDelta(2, ""),
        TextDelta(2, "Reading."),
        PartStop(2, Text("Reading.")),
        PartStart(3, call),
        PartStop(3, full_call),
        MessageDelta("tool_use", Usage(input_tokens=1200, output_tokens=42, cache_read_tokens=300)),
        MessageStop(),
    ]


def test_encode_renumbers_and_hides_empty_text() -> None:
    events = sse_events(encode(gemini_events()))
    check_anthropic_sequence(events)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "text", "tool_use"]
    assert events[1][0] == "ping"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 42 and delta["usage"]["input_tokens"] == 1200


def test_encode_is_read_by_the_sdk_accumulator() -> None:
    message = sdk_message(sse_events(encode(gemini_events())))
    thinking, text, call = message.content
    assert thinking.thinking == "Plan: read it."
    assert unpack(thinking.signature) == ("gemini", {"sig": "CiQBgemini"})
    assert text.text == "Reading."
    assert call.input == {"file_path": "/a.py"}  # arguments that never streamed are sent whole
    assert split_id(call.id) == ("functions_Read_0", {"thought_signature": "CiQBts"})
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 300


@pytest.mark.parametrize(
    "name", ["stream_thinking_tool.sse", "stream_text.sse", "stream_server_tool.sse"]
)
def test_decode_then_encode_reproduces_the_message(name: str) -> None:
    """Anthropic in, Anthropic out through canonical events: the client's SDK builds the same
    message the upstream sent (server tool blocks aside)."""
    original = sdk_message(sse_events(fixture(name)))
    relayed = sdk_message(sse_events(encode(decode(fixture(name), 3))))
    kept = [b.to_dict() for b in original.content if b.type in ("text", "thinking", "tool_use")]
    assert [b.to_dict() for b in relayed.content] == kept
    assert relayed.stop_reason == original.stop_reason
    assert relayed.usage.output_tokens == original.usage.output_tokens
    assert relayed.usage.input_tokens == original.usage.input_tokens


def test_encode_stream_error() -> None:
    encoder = codec.stream_encoder(REQUEST)
    head = encoder.encode(MessageStart(id="msg_1", model="m"))
    head += encoder.encode(PartStart(0, Text("")))
    head += encoder.encode(TextDelta(0, "Hal"))
    error = encoder.encode(StreamError(GatewayError("overloaded", "upstream overloaded")))
    assert error.startswith(b"event: error\n")
    assert sse_events(error) == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "upstream overloaded"},
            },
        )
    ]
    assert encoder.encode(MessageStop()) == b""  # nothing after an error


def test_encode_redacted_and_native_signature() -> None:
    events: list[Event] = [
        MessageStart(id="msg_1", model="claude"),
        PartStart(0, Reasoning(redacted="EmwKopaque", origin="anthropic")),
        PartStop(0, Reasoning(redacted="EmwKopaque", origin="anthropic")),
        PartStart(1, Reasoning(origin="anthropic")),
        ReasoningDelta(1, "hm"),
        SignatureDelta(1, "EqQB"),
        SignatureDelta(1, "real"),
        PartStop(1, Reasoning(text="hm", signature="EqQBreal", origin="anthropic")),
        MessageDelta("end_turn", Usage(output_tokens=3)),
        MessageStop(),
    ]
    sse = sse_events(encode(events))
    check_anthropic_sequence(sse)
    signatures = [
        d["delta"]["signature"]
        for n, d in sse
        if n == "content_block_delta" and d["delta"]["type"] == "signature_delta"
    ]
    assert signatures == ["EqQBreal"]  # one delta, just before the stop
    message = sdk_message(sse)
    assert [b.to_dict() for b in message.content] == [
        {"type": "redacted_thinking", "data": "EmwKopaque"},
        {"type": "thinking", "thinking": "hm", "signature": "EqQBreal"},
    ]


def test_ping() -> None:
    assert sse_events(codec.stream_encoder(REQUEST).ping()) == [("ping", {"type": "ping"})]


def test_encode_whitespace_only_text_is_held_back() -> None:
    """ "\n\n" before a tool call (common from OpenAI-style upstreams) would come back in the
    client's history as a whitespace-only block, which Anthropic rejects."""
    events: list[Event] = [
        MessageStart(id="msg_1", model="m"),
        PartStart(0, Text("")),
        TextDelta(0, "\n\n"),
        PartStop(0, Text("\n\n")),
        PartStart(1, Text("")),
        TextDelta(1, "\n"),
        TextDelta(1, "Done."),
        PartStop(1, Text("\nDone.")),
        MessageDelta("end_turn", Usage(output_tokens=2)),
        MessageStop(),
    ]
    sse = sse_events(encode(events))
    check_anthropic_sequence(sse)
    assert [b.to_dict() for b in sdk_message(sse).content] == [{"type": "text", "text": "\nDone."}]


def test_decode_tool_input_sent_whole_at_block_start() -> None:
    """Some Anthropic-compatible hosts put the input in content_block_start and send no
    input_json_delta; the arguments must not be lost."""
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
        b'"model":"kimi-k2","usage":{"input_tokens":5,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"Bash:0","name":"Bash",'
        b'"input":{"command":"pwd"}}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        b'"tool_use"},"usage":{"output_tokens":7}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    events = decode(body, 1)
    check_stream_contract(events)
    (call,) = finished(events)
    assert call.arguments == {"command": "pwd"}
    assert [orjson.loads(e.json) for e in events if isinstance(e, ToolArgsDelta)] == [
        {"command": "pwd"}
    ]


def test_decode_synthesizes_a_missing_message_start() -> None:
    body = fixture("stream_text.sse").split(b"\n\n", 1)[1]  # drop message_start
    events = decode(body, 2)
    check_stream_contract(events)
    start = events[0]
    assert isinstance(start, MessageStart) and start.id.startswith("msg_")
    assert finished(events) == [Text("Hello, wörld! 👋")]


def test_bare_signature_is_held_until_a_block_follows_and_dropped_at_the_end() -> None:
    """A thinking block with no thinking text (a Gemini signature) goes out whole right before
    the next block; at the end of a message it is dropped, so the answer stays the last
    block Claude Code sees."""
    from babelgate.canonical import (
        MessageDelta,
        MessageStart,
        MessageStop,
        PartStart,
        PartStop,
        Reasoning,
        Request,
        SignatureDelta,
        ToolArgsDelta,
        ToolCall,
        Usage,
    )
    from babelgate.protocols import get_codec
    from babelgate.protocols.sse import SSEDecoder

    signed = Reasoning(signature="sig-A", origin="gemini")
    call = ToolCall("call_1", "Bash", {"command": "ls"})
    trailing = Reasoning(signature="sig-B", origin="gemini")
    events = [
        MessageStart("m1", "gemini-3"),
        PartStart(0, Reasoning(origin="gemini")),
        SignatureDelta(0, "sig-A"),
        PartStop(0, signed),
        PartStart(1, ToolCall("call_1", "Bash")),
        ToolArgsDelta(1, '{"command":"ls"}'),
        PartStop(1, call),
        PartStart(2, Reasoning(origin="gemini")),
        SignatureDelta(2, "sig-B"),
        PartStop(2, trailing),
        MessageDelta("tool_use", Usage(input_tokens=5, output_tokens=3)),
        MessageStop(),
    ]
    encoder = get_codec("anthropic").stream_encoder(Request("m", ()))
    out = b"".join(encoder.encode(e) for e in events)
    sse = SSEDecoder()
    parsed = [orjson.loads(e.data) for e in [*sse.feed(out), *sse.flush()]]
    starts = [(e["index"], e["content_block"]["type"]) for e in parsed
              if e["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "tool_use")]
    signatures = [e["delta"]["signature"] for e in parsed
                  if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert len(signatures) == 1 and signatures[0].startswith("bg1.")
    assert parsed[-2]["type"] == "message_delta"


# ------------------------------------------------------------------ message_start, typed


_REST = (b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
         b'"content_block":{"type":"text","text":""}}\n\n'
         b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
         b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
         b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
         b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
         b'"end_turn"},"usage":{"output_tokens":3}}\n\n'
         b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
_USAGES = [
    b"", b',"usage":null', b',"usage":{}', b',"usage":[]', b',"usage":"x"',
    b',"usage":{"input_tokens":5,"output_tokens":1,"cache_creation_input_tokens":2,'
    b'"cache_read_input_tokens":7,"service_tier":"standard"}',
    b',"usage":{"input_tokens":null,"output_tokens":1}',
    b',"usage":{"input_tokens":5.0}', b',"usage":{"input_tokens":true}',
    b',"usage":{"input_tokens":-3}', b',"usage":{"input_tokens":9223372036854775807}',
    b',"usage":{"input_tokens":9223372036854775808}',
    b',"usage":{"input_tokens":18446744073709551616}',
    b',"usage":{"input_tokens":1,"input_tokens":2}',
]
_MESSAGES = [
    b'"id":"msg_1","model":"claude-x"', b'"id":"","model":""', b'"model":"claude-x"',
    b'"id":7,"model":"claude-x"', b'"id":"msg_1","model":null', b'"id":"msg_1","model":[1]',
    b'"id":"m\xc3\xa9","model":"claude-x"', b'"id":"msg_\\u00e9","model":"claude-x"',
]


def _starts() -> list[bytes]:
    """message_start events the typed view reads, and many it leaves to the general path."""
    out = [b'{"type":"message_start","message":{' + message + usage + b'}}'
           for message in _MESSAGES for usage in _USAGES]
    out += [b'{"type":"message_start","message":null}', b'{"type":"message_start"}',
            b'{"type":"message_start","message":[]}', b'{"message":{"id":"msg_1"}}',
            b'{"type":null,"message":{"id":"msg_1"}}', b'{"type":"ping","message":{}}',
            b'{"type":"message_start","message":{"id":"msg_1"}', b'{"type":"message_start",'
            b'"message":{"id":"m\xff"}}', b'[]', b'', b'{"type":"message_start","message":'
            b'{"id":"a"},"message":{"id":"b"}}']
    return out


class _GeneralStart(AnthropicStreamDecoder):
    """The decoder without its typed view of message_start."""

    def _typed_start(self, data: bytes, events: list[Event]) -> bool:
        return False


def _made_up_ids(events: list[Event]) -> list[object]:
    """The events, comparable: made-up ids as their length, errors as what they say."""
    out: list[object] = []
    for e in events:
        if isinstance(e, MessageStart):
            made_up = e.id.startswith("msg_") and len(e.id) == 28
            out.append(("start", len(e.id) if made_up else e.id, e.model, e.usage))
        elif isinstance(e, StreamError):
            out.append(("error", e.error.kind, e.error.message, e.error.status))
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("start", _starts())
def test_typed_message_start_reads_as_the_general_path(start: bytes) -> None:
    """Each message_start, alone or twice, whole or split anywhere: the typed view gives
    the general path's events (ids made up when the upstream sent none aside)."""
    for body in (b"event: message_start\ndata: " + start + b"\n\n" + _REST,
                 (b"event: message_start\ndata: " + start + b"\n\n") * 2 + _REST):
        expected = _decode_with(_GeneralStart, body, [])
        for cut in range(0, len(body), 7):
            assert _decode_with(AnthropicStreamDecoder, body, [cut] if cut else []) == expected


def _decode_with(kind: type[AnthropicStreamDecoder], body: bytes, cuts: list[int]) -> list[object]:
    decoder = kind(REQUEST, Reuse(budget=0))
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        events += decoder.feed(body[start:end])
    return _made_up_ids(events + decoder.close())


# ------------------------------------------------------------ the other events, by their bytes


class _GeneralEvents(AnthropicStreamDecoder):
    """The decoder without its shortcuts for the usual bytes of content_block_start and
    _stop, message_delta and message_stop (nor its typed message_start)."""

    _shaped = {}  # the base's table, emptied

    def _typed_start(self, data: bytes, events: list[Event]) -> bool:
        return False


_END_DELTAS = [
    b"", b',"delta":null', b',"delta":[]', b',"delta":{}', b',"delta":{"stop_reason":"end_turn"}',
    b',"delta":{"stop_reason":"end_turn","stop_sequence":null}',
    b',"delta":{"stop_reason":"stop_sequence","stop_sequence":"\\n\\nHuman:"}',
    b',"delta":{"stop_reason":"max_tokens","stop_sequence":7}',
    b',"delta":{"stop_reason":"pause_turn","stop_sequence":"s","stop_reason":"tool_use"}',
    b',"delta":{"stop_reason":null}', b',"delta":{"stop_reason":5}',
    b',"delta":{"stop_reason":"something new"}', b',"delta":{"stop_reason":"tool_use\xff"}',
]
_BLOCK_STARTS = [
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"thinking",'
    b'"thinking":"","signature":""}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":"hi"}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"redacted_thinking",'
    b'"data":"x"}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"tool_use","id":"t1",'
    b'"name":"Read","input":{}}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"text"}}',
    b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""} }',
    b'{"type":"content_block_stop","index":%d}',
]
_DELTAS = [
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a b"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"t"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta",'
    b'"signature":"sig"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"a\\": 1}"}}',
]
_STOPS = [b'{"type":"content_block_stop","index":%d}', b'{"type":"content_block_stop"}',
          b'{"type":"content_block_stop","index":%d,"x":1}', b'{"type":"message_stop","index":%d}',
          b'{"type":"content_block_stop","index":%d']
_MESSAGE_STOPS = [b'{"type":"message_stop"}', b'{"type": "message_stop"}', b'{"type":"ping"}',
                  b'{"type":"message_stop","x":[]}', b'{}', b'{"type":"message_stop"']


def _ends() -> list[bytes]:
    """message_delta events, as Anthropic writes them and otherwise."""
    out = [b'{"type":"message_delta"' + delta + usage + b"}"
           for delta in _END_DELTAS for usage in _USAGES]
    out += [b'{"delta":{"stop_reason":"max_tokens"}}', b'{"type":null}', b'[]', b'',
            b'{"type":"message_stop","delta":{"stop_reason":"max_tokens"}}',
            b'{"type":"message_delta","delta":{"stop_reason":"max_tokens"}']
    return out


def _random_stream(rng: random.Random) -> bytes:
    """A stream of Anthropic's events, mostly in their usual order and bytes, sometimes not."""
    index = lambda: rng.choice([0, 0, 1, 2, 63, 64, 1000])  # noqa: E731
    names_and_data: list[tuple[bytes, bytes]] = []
    if rng.random() < 0.9:
        names_and_data.append((b"message_start", rng.choice(_starts()[:20])))
    for _ in range(rng.randrange(4)):
        names_and_data.append((b"content_block_start", rng.choice(_BLOCK_STARTS) % index()))
        for _ in range(rng.randrange(4)):
            names_and_data.append((b"content_block_delta", rng.choice(_DELTAS)))
        stop = rng.choice(_STOPS)
        names_and_data.append((b"content_block_stop", stop % index() if b"%d" in stop else stop))
    for _ in range(rng.choice([1, 1, 1, 0, 2])):
        names_and_data.append((b"message_delta", rng.choice(_ends())))
    for _ in range(rng.choice([1, 1, 1, 0, 2])):
        names_and_data.append((b"message_stop", rng.choice(_MESSAGE_STOPS)))
    if rng.random() < 0.1:
        names_and_data.append((b"content_block_start", _BLOCK_STARTS[0] % 0))
    if rng.random() < 0.2:  # another event's name on the usual bytes
        at = rng.randrange(len(names_and_data))
        other = rng.choice([b"message_stop", b"message_delta", b"content_block_stop",
                            b"content_block_start", b"ping"])
        names_and_data[at] = (other, names_and_data[at][1])
    return b"".join(b"event: " + name + b"\ndata: " + data + b"\n\n"
                    for name, data in names_and_data)


@pytest.mark.parametrize("seed", range(40))
def test_usual_event_bytes_read_as_the_general_path(seed: int) -> None:
    """Random streams of content_block_start and _stop, message_delta and message_stop events,
    whole or split anywhere: taken by their usual bytes (or a typed view of message_delta)
    they give the general path's events."""
    rng = random.Random(seed)
    for _ in range(25):
        body = _random_stream(rng)
        expected = _decode_with(_GeneralEvents, body, [])
        cuts = sorted(rng.sample(range(1, len(body)), min(3, len(body) - 1)))
        assert _decode_with(AnthropicStreamDecoder, body, []) == expected, body
        assert _decode_with(AnthropicStreamDecoder, body, cuts) == expected, (body, cuts)


@pytest.mark.parametrize("end", _ends())
def test_typed_message_delta_reads_as_the_general_path(end: bytes) -> None:
    """Each message_delta after a usual start and text block, whole or split anywhere."""
    body = (b"event: message_start\ndata: " + _starts()[5] + b"\n\n"
            + _REST.split(b"event: message_delta")[0]
            + b"event: message_delta\ndata: " + end + b"\n\n"
            + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    expected = _decode_with(_GeneralEvents, body, [])
    for cut in range(0, len(body), 11):
        assert _decode_with(AnthropicStreamDecoder, body, [cut] if cut else []) == expected
