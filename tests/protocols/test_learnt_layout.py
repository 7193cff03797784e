"""The stream decoders' fast path for bare pieces of text (protocols/learnt_layout.py, learnt
by SSEStreamDecoder.expect_more) must give exactly the events of the general path, for any
stream and any split of it.

Each case decodes the same body twice, with the fast path and with it turned off
(`fast_text = False`), whole, in random pieces and byte by byte, and compares the events (or
the exception). The bodies are upstream streams of the three decoders that learn layouts
(OpenAI Chat, Anthropic, Gemini), written by several JSON writers (compact or spaced, UTF-8
or ASCII-escaped, `/` and HTML characters escaped as Go and Google write them), with CRLF,
LF or mixed line ends, pieces of every awkward kind (quotes, backslashes at the end, escapes,
non-ASCII, control characters, empty strings), chunks that differ in something else than
the text (a new id, usage, a finish reason, reasoning, tool calls), and broken bytes spliced
into a piece (bad UTF-8, a lone surrogate, a raw control character).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    Event,
    Message,
    PartStart,
    PartStop,
    Request,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolCall,
)
from babelgate.protocols import get_codec
from babelgate.protocols.learnt_layout import Learnt
from babelgate.protocols.reuse import Reuse
from babelgate.protocols.sse_decoder import SSEStreamDecoder

JSON = dict[str, Any]
REQUEST = Request(
    model="m",
    messages=(Message("user", (Text("hi"),)),),
    tools=(Tool(name="Read", parameters={"type": "object"}),),
    stream=True,
)
PIECES = [
    "The handler",
    " reads",
    ' say "hi"',
    "ends with a backslash \\",
    "\\",
    '"',
    "line\nbreak\ttab",
    "\x01\x1f\x7f",
    "h\u00e9llo w\u00f6rld",
    "\U0001f600 emoji",
    "\u2028\u2029",
    "</script> & 'q' = 1/2",
    "\\u0041 not an escape",
    "a",
    " ",
    "",
]


# ------------------------------------------------------------------ JSON writers


def _compact(value: object) -> bytes:
    return orjson.dumps(value)


def _spaced_ascii(value: object) -> bytes:
    return json.dumps(value).encode()  # ", " and ": ", everything non-ASCII as \u escapes


def _go_like(value: object) -> bytes:
    # Go and Google escape <, >, & (and we add /) even in compact output
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("/", "\\/")):
        text = text.replace(char, escape)
    return text.encode()


WRITERS = [_compact, _spaced_ascii, _go_like]


# ------------------------------------------------------------------ upstream streams


Writer = Callable[[object], bytes]


def _chat(pieces: list[tuple[str, str]], write: Writer) -> list[bytes]:
    """OpenAI Chat chunks: (kind, text) with kind text, reasoning, id (a new id from here
    on), usage, finish, tool, role, decoy (a text chunk with the same key again after the
    text), odd (a text chunk of another choice: the same bytes but one)."""
    chunk_id, created = "chatcmpl-1", 1700000000
    out: list[bytes] = []

    def chunk(delta: JSON, finish: str | None = None, choice: int = 0, **extra: object) -> None:
        body: JSON = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                      "model": "m",
                      "choices": [{"index": choice, "delta": delta, "logprobs": None,
                                   "finish_reason": finish}]}
        body.update(extra)
        out.append(b"data: " + write(body))

    chunk({"role": "assistant", "content": ""})
    for kind, text in pieces:
        if kind == "text":
            chunk({"content": text})
        elif kind == "reasoning":
            chunk({"reasoning_content": text})
        elif kind == "id":
            chunk_id, created = f"chatcmpl-{text}", created + 1
        elif kind == "usage":
            chunk({"content": text}, usage={"prompt_tokens": 3, "completion_tokens": 1})
        elif kind == "decoy":
            chunk({"content": text}, x={"content": f"decoy{len(out)}"})
        elif kind == "odd":
            chunk({"content": text}, choice=1)
        elif kind == "finish":
            chunk({"content": text}, finish="length")
        elif kind == "tool":
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "Read", "arguments": '{"path":'}}
            chunk({"tool_calls": [call]})
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'"{len(text)}"}}'}}]})
        elif kind == "role":
            chunk({"role": "assistant", "content": text})
    chunk({}, finish="stop")
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    out.append(b"data: " + write({"id": chunk_id, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]")
    return out


def _anthropic(pieces: list[tuple[str, str]], write: Writer) -> list[bytes]:
    """Anthropic events: kind text, reasoning (thinking), usage (a ping between pieces),
    finish (a new text block after a text block), tool (a tool_use block), id (a text delta
    with an extra field), role (a citation), decoy (a text delta with the same key again
    after it), odd (a delta of an unknown type: the same bytes but one)."""
    out: list[bytes] = []
    blocks: list[str] = []  # the kinds of the blocks so far; the last one is open

    def event(name: str, body: JSON) -> None:
        out.append(b"event: " + name.encode() + b"\ndata: " + write({"type": name, **body}))

    def delta(kind: str, body: JSON, **extra: object) -> None:
        if not blocks or blocks[-1] != kind:
            if blocks:
                event("content_block_stop", {"index": len(blocks) - 1})
            blocks.append(kind)
            event("content_block_start", {"index": len(blocks) - 1, "content_block": {
                "text": {"type": "text", "text": ""},
                "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                "tool_use": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}},
            }[kind]})
        event("content_block_delta", {"index": len(blocks) - 1, "delta": body, **extra})

    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
               "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}
    event("message_start", {"message": message})
    for kind, text in pieces:
        if kind == "usage":
            event("ping", {})
            continue
        if kind in ("finish", "tool"):
            blocks.append("")  # the next delta opens a new block (text after a text block)
        extra: JSON = {"id": {"x": 1}, "decoy": {"x": {"text": f"decoy{len(out)}"}}}
        block, body = {
            "role": ("text", {"type": "citations_delta",
                              "citation": {"type": "char_location", "cited_text": text}}),
            "odd": ("text", {"type": "text_deltx", "text": text}),
            "reasoning": ("thinking", {"type": "thinking_delta", "thinking": text}),
            "tool": ("tool_use", {"type": "input_json_delta",
                                  "partial_json": orjson.dumps({"path": text}).decode()}),
            "finish": ("text", {"type": "text_delta", "text": text}),  # in a new text block
        }.get(kind, ("text", {"type": "text_delta", "text": text}))
        delta(block, body, **extra.get(kind, {}))
    if blocks:
        event("content_block_stop", {"index": len(blocks) - 1})
    event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}})
    event("message_stop", {})
    return out


def _gemini(pieces: list[tuple[str, str]], write: Writer) -> list[bytes]:
    """Gemini chunks: kind text, reasoning (thought), usage (new usage numbers from here on),
    id (a new responseId from here on), finish (a thought signature on the text), tool (a
    function call), role (two text parts in one chunk), decoy (a text chunk with the same
    key again after the text), odd (a part with an unknown key: the same bytes but one)."""
    out: list[bytes] = []
    usage = {"promptTokenCount": 10, "totalTokenCount": 10}
    response_id = "r1"

    def chunk(parts: list[JSON], finish: str | None = None, **extra: object) -> None:
        candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out.append(b"data: " + write({"candidates": [candidate], "usageMetadata": usage,
                                      "modelVersion": "gemini-x", "responseId": response_id,
                                      **extra}))

    for kind, text in pieces:
        if kind == "usage":
            usage = {"promptTokenCount": 10, "candidatesTokenCount": len(out),
                     "totalTokenCount": 10 + len(out)}
        elif kind == "id":
            response_id = f"r{len(out)}"
        parts = {
            "reasoning": [{"text": text, "thought": True}],
            "finish": [{"text": text, "thoughtSignature": "c2ln"}],
            "tool": [{"functionCall": {"name": "Read", "args": {"path": text}}}],
            "role": [{"text": text}, {"text": text}],
            "odd": [{"texx": text}],
        }.get(kind, [{"text": text}])
        chunk(parts, **({"x": {"text": f"decoy{len(out)}"}} if kind == "decoy" else {}))
    chunk([{"text": "."}], finish="STOP")
    return out


STREAMS: dict[str, Callable[[list[tuple[str, str]], Writer], list[bytes]]] = {
    "openai": _chat,
    "anthropic": _anthropic,
    "gemini": _gemini,
}
OTHERS = ["reasoning", "id", "usage", "finish", "tool", "role", "decoy", "odd"]
KINDS = ["text"] * 12 + ["reasoning"] * 3 + OTHERS


def _body(events: list[bytes], rng: random.Random, ends: str) -> bytes:
    """SSE framing with LF, CRLF or a random mix of line ends (lone CR among them)."""
    out = []
    for event in events:
        if ends == "mixed":
            line, blank = rng.choice([(b"\n", b"\n"), (b"\r\n", b"\r\n"), (b"\r", b"\r"),
                                      (b"\r\n", b"\n"), (b"\n", b"\r\n")])
        else:
            line = blank = b"\r\n" if ends == "crlf" else b"\n"
        out.append(event.replace(b"\n", line) + line + blank)
    return b"".join(out)


# ------------------------------------------------------------------ decoding both ways


def _general(decoder: SSEStreamDecoder) -> SSEStreamDecoder:
    """The same decoder with the fast path turned off."""
    decoder.__class__ = type("General", (type(decoder),), {"fast_text": False})
    return decoder


def _decode(protocol: str, body: bytes, cuts: list[int], fast: bool) -> list[object]:
    decoder = get_codec(protocol).stream_decoder(REQUEST)
    assert isinstance(decoder, SSEStreamDecoder)
    if not fast:
        decoder = _general(decoder)
    events: list[Event] = []
    try:
        for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
            events += decoder.feed(body[start:end])
        events += decoder.close()
    except Exception as error:  # the general path's failures must be the fast path's too
        return [*events, ("raised", type(error).__name__, str(error))]
    return [_comparable(event) for event in events]


def _comparable(event: Event) -> object:
    if isinstance(event, StreamError):
        return ("error", event.error.kind, event.error.message)
    if isinstance(event, PartStart | PartStop) and isinstance(event.part, ToolCall):
        return (type(event), event.index, replace(event.part, id=""))  # ids may be made up
    return event


def _check(protocol: str, body: bytes, rng: random.Random, every_cut: bool = False) -> None:
    expected = _decode(protocol, body, [], fast=False)
    splits: list[list[int]] = [[]]
    if every_cut:
        splits += [[cut] for cut in range(1, len(body))]
    for _ in range(4):
        count = rng.randint(1, max(1, len(body) // 30))
        splits.append(sorted(rng.sample(range(1, len(body)), min(count, len(body) - 1))))
    splits.append(list(range(1, len(body))))  # byte by byte
    for cuts in splits:
        assert _decode(protocol, body, cuts, fast=True) == expected, cuts
        assert _decode(protocol, body, cuts, fast=False) == expected, cuts


def _corrupt(events: list[bytes], rng: random.Random) -> list[bytes]:
    """Splice broken bytes into the string of one event after the first few."""
    if len(events) < 5:
        return events
    at = rng.randrange(3, len(events) - 1)
    event = events[at]
    quote = event.rfind(b'":"')
    if quote < 0:
        quote = event.rfind(b'": "')
    if quote < 0:
        return events
    spot = event.find(b'"', quote + 3) if event.find(b'"', quote + 3) > 0 else len(event)
    bad = rng.choice([b"\xff", b"\xc3", b"\\ud83d", b"\\ude00x", b"\x01", b"\\x", b"\\"])
    return [*events[:at], event[:spot] + bad + event[spot:], *events[at + 1 :]]


# ------------------------------------------------------------------ cases


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize("piece", PIECES)
def test_every_kind_of_piece_at_every_cut(protocol: str, piece: str) -> None:
    rng = random.Random(piece)
    pieces = [("text", "first"), ("text", piece), ("text", piece + "x"), ("text", piece)]
    for write, ends in zip(WRITERS, ("lf", "crlf", "lf"), strict=True):
        events = STREAMS[protocol](pieces, write)
        _check(protocol, _body(events, rng, ends), rng, every_cut=write is _compact)


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize("kind", OTHERS)
def test_other_chunks_between_bare_pieces(protocol: str, kind: str) -> None:
    rng = random.Random(kind)
    pieces = [("text", "a"), ("text", "b"), (kind, "c"), ("text", "d"), ("text", "e"),
              (kind, ""), ("text", "f"), ("text", "g")]
    for write, ends in zip(WRITERS, ("lf", "crlf", "mixed"), strict=True):
        body = _body(STREAMS[protocol](pieces, write), rng, ends)
        _check(protocol, body, rng, every_cut=ends == "crlf")


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize("seed", range(40))
def test_random_streams(protocol: str, seed: int) -> None:
    rng = random.Random(seed)
    pieces = []
    for _ in range(rng.randint(1, 30)):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
        pieces.append((rng.choice(KINDS), text))
    events = STREAMS[protocol](pieces, rng.choice(WRITERS))
    if seed % 3 == 0:
        events = _corrupt(events, rng)
    _check(protocol, _body(events, rng, rng.choice(["lf", "crlf", "mixed"])), rng)


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_plain_text_skips_the_general_path(protocol: str) -> None:
    """Twenty pieces of text take the general path only until the layout is learnt."""
    rng = random.Random(1)
    pieces = [("text", f" word{n} \u00e9 \"q\" \\") for n in range(20)]
    events = STREAMS[protocol](pieces, _compact)
    body = _body(events, rng, "crlf" if protocol == "gemini" else "lf")
    calls = []
    decoder = get_codec(protocol).stream_decoder(REQUEST)
    hook = "on_named" if protocol == "anthropic" else "on_data"
    general = getattr(decoder, hook)

    def counting(*args: Any) -> None:
        calls.append(args)
        general(*args)

    setattr(decoder, hook, counting)
    events = decoder.feed(body) + decoder.close()
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts[: len(pieces)] == [text for _, text in pieces]
    assert len(calls) < 10  # the pieces but the first two or so come without the hook
    assert _decode(protocol, body, [], fast=True) == _decode(protocol, body, [], fast=False)


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_a_layout_that_cannot_be_learnt(protocol: str) -> None:
    """The text's key again after it, with another string each time: the probe shows the
    last one is not the text's, so nothing is learnt, and every chunk takes the general
    path."""
    rng = random.Random(2)
    pieces = [("decoy", "same") for _ in range(12)]
    body = _body(STREAMS[protocol](pieces, _compact), rng, "lf")
    _check(protocol, body, rng, every_cut=True)


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize(
    "bad", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\ud83d", b"\\ude00x", b"\x01", b"\\x", b"\\"]
)
def test_broken_bytes_in_a_piece(protocol: str, bad: bytes) -> None:
    """Bad UTF-8, a lone surrogate, a raw control character, a bad or cut escape in the
    middle of a run of pieces: the general path decides what they are, whole or split."""
    rng = random.Random(bad)
    events = STREAMS[protocol]([("text", f"w{n}") for n in range(8)], _compact)
    at = next(i for i, e in enumerate(events) if b'"w4"' in e)
    events[at] = events[at].replace(b'"w4"', b'"w4' + bad + b'"')
    _check(protocol, _body(events, rng, "lf"), rng, every_cut=True)


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_bad_utf8_in_a_piece_is_no_exception(protocol: str) -> None:
    """The typed views raise UnicodeDecodeError, not a DecodeError, for bad UTF-8 in a
    string: the decoders take it as any chunk they cannot read their fast way (the general
    path decides; before, the exception escaped feed() and cut the client's stream)."""
    events = STREAMS[protocol]([("text", "w0"), ("text", "w1"), ("text", "w2")], _compact)
    at = next(i for i, e in enumerate(events) if b'"w2"' in e)
    events[at] = events[at].replace(b'"w2"', b'"w2\xff"')
    decoded = _decode(protocol, _body(events, random.Random(0), "lf"), [], fast=True)
    assert not any(isinstance(event, tuple) and event[0] == "raised" for event in decoded)


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize("kind", OTHERS)
def test_long_runs_cut_in_bulk(protocol: str, kind: str) -> None:
    """Runs long enough to be cut up in one go (learnt_layout.take_in_bulk), ended by
    each other kind of chunk, in bodies that hold many events at once."""
    rng = random.Random(kind)
    pieces: list[tuple[str, str]] = []
    for run in range(4):
        pieces += [("text", rng.choice(PIECES) or "x") for _ in range(3 + 5 * run)]
        pieces.append((kind, "z" * run))
    pieces += [("text", f"t{n}") for n in range(40)]
    for write, ends in zip(WRITERS, ("lf", "crlf", "lf"), strict=True):
        body = _body(STREAMS[protocol](pieces, write), rng, ends)
        expected = _decode(protocol, body, [], fast=False)
        assert _decode(protocol, body, [], fast=True) == expected
        for _ in range(6):
            cuts = sorted(rng.sample(range(1, len(body)), rng.randint(1, 4)))
            assert _decode(protocol, body, cuts, fast=True) == expected, cuts


@pytest.mark.parametrize("protocol", list(STREAMS))
@pytest.mark.parametrize("run", [3, 4, 5])
def test_a_short_run_before_a_long_tail(protocol: str, run: int) -> None:
    """A run just long enough to be tried in bulk, then only other events for long: the
    window holds no two bare events in a row (or one at most)."""
    rng = random.Random(run)
    pieces = [("text", f"t{n}") for n in range(run)] + [("usage", "")] * 30
    for ends in ("lf", "crlf"):
        _check(protocol, _body(STREAMS[protocol](pieces, _compact), rng, ends), rng)


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_a_field_that_changes_in_every_event(protocol: str) -> None:
    """A new id (Chat) or new usage (Gemini) in every chunk: no layout is ever used twice,
    the decoder gives up learning, and the events stay those of the general path."""
    rng = random.Random(5)
    kind = "usage" if protocol == "gemini" else "id"
    pieces = [(kind, f"w{n} ") for n in range(30)]
    if protocol == "openai":
        pieces = [p for n in range(30) for p in (("id", str(n)), ("text", f"w{n} "))]
    for ends in ("lf", "crlf"):
        _check(protocol, _body(STREAMS[protocol](pieces, _compact), rng, ends), rng)


# ------------------------------------------------------------------ kept for the next stream


def _decode_with(table: Reuse, protocol: str, body: bytes, cuts: list[int]) -> list[object]:
    """As _decode (fast), with the caller's table: what its last stream learnt is resumed."""
    decoder = get_codec(protocol).stream_decoder(REQUEST, table)
    events: list[Event] = []
    try:
        for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
            events += decoder.feed(body[start:end])
        events += decoder.close()
    except Exception as error:
        return [*events, ("raised", type(error).__name__, str(error))]
    return [_comparable(event) for event in events]


def _taught(teacher: bytes) -> Reuse:
    """A caller's table after one stream (the teacher) went through it."""
    table = Reuse()
    _decode_with(table, "anthropic", teacher, [])
    return table


def _anthropic_body(pieces: list[tuple[str, str]], write: Writer, ends: str,
                    rng: random.Random) -> bytes:
    return _body(_anthropic(pieces, write), rng, ends)


TEACHERS = [
    [("text", f"t{n}") for n in range(6)],
    [("reasoning", f"r{n}") for n in range(4)] + [("text", f"t{n}") for n in range(4)],
]


@pytest.mark.parametrize("seed", range(40))
def test_a_kept_layout_decodes_the_next_stream_exactly(seed: int) -> None:
    """The caller's last stream left its layouts in its table; the next stream, written
    alike or not (another JSON writer, line ends, pings, thinking, tool calls, citations,
    broken bytes, split anywhere), decodes to the general path's events all the same."""
    rng = random.Random(seed)
    teacher = _anthropic_body(rng.choice(TEACHERS), rng.choice(WRITERS), rng.choice(["lf", "crlf"]),
                              rng)
    pieces = []
    for _ in range(rng.randint(1, 30)):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
        pieces.append((rng.choice(KINDS), text))
    events = _anthropic(pieces, rng.choice(WRITERS))
    if seed % 3 == 0:
        events = _corrupt(events, rng)
    body = _body(events, rng, rng.choice(["lf", "lf", "crlf", "mixed"]))
    expected = _decode("anthropic", body, [], fast=False)
    splits: list[list[int]] = [[], list(range(1, len(body)))]
    for _ in range(4):
        count = rng.randint(1, max(1, len(body) // 30))
        splits.append(sorted(rng.sample(range(1, len(body)), min(count, len(body) - 1))))
    for cuts in splits:
        assert _decode_with(_taught(teacher), "anthropic", body, cuts) == expected, cuts


@pytest.mark.parametrize("bad", [b"\xff", b"\\ud83d", b"\x01", b"\\x", b"\\", b'"'])
def test_a_kept_layout_and_a_broken_first_piece(bad: bytes) -> None:
    """The first piece of the next stream, which the kept layout takes without learning,
    is broken: the general path decides, whole or split at every byte."""
    rng = random.Random(bad)
    teacher = _anthropic_body(TEACHERS[0], _compact, "lf", rng)
    events = _anthropic([("text", f"w{n}") for n in range(6)], _compact)
    at = next(i for i, e in enumerate(events) if b'"w0"' in e)
    events[at] = events[at].replace(b'"w0"', b'"w0' + bad + b'"')
    body = _body(events, rng, "lf")
    expected = _decode("anthropic", body, [], fast=False)
    for cut in range(len(body)):
        assert _decode_with(_taught(teacher), "anthropic", body, [cut] if cut else []) == expected


def test_a_kept_layout_skips_learning_in_the_next_stream() -> None:
    """With the table of a caller whose last stream came from the same upstream, every
    piece of the next one, its first among them, comes the fast way: past a ping, and
    whether the stream comes whole or one event per read."""
    rng = random.Random(3)
    pieces = [("text", f" word{n}") for n in range(3)] + [("usage", "")] + [
        ("text", f" more{n}") for n in range(5)]
    events = _anthropic(pieces, _compact)
    body = _body(events, rng, "lf")
    table = _taught(body)
    for reads in ([body], [event + b"\n\n" for event in events]):
        names, decoded = _names_read(table, reads)
        assert [e.text for e in decoded if isinstance(e, TextDelta)] == [t for k, t in pieces
                                                                        if k == "text"]
        assert b"content_block_delta" not in names


def _names_read(table: Reuse, reads: list[bytes]) -> tuple[list[bytes], list[Event]]:
    """The names of the events an Anthropic decoder with `table` took the general way, and
    its events, for a stream that came in `reads`."""
    decoder = get_codec("anthropic").stream_decoder(REQUEST, table)
    assert isinstance(decoder, SSEStreamDecoder)
    names: list[bytes] = []
    general = decoder.on_named

    def counting(name: bytes, data: bytes, out: list[Event]) -> None:
        names.append(name)
        general(name, data, out)

    decoder.on_named = counting  # type: ignore[method-assign]
    decoded: list[Event] = []
    for read in reads:
        decoded += decoder.feed(read)
    return names, decoded + decoder.close()


def test_a_layout_is_kept_per_table_and_never_changed() -> None:
    """What a stream learnt is its caller's table's: another caller's stream starts without
    it, and the value kept is immutable (replaced, not changed, by a later stream)."""
    rng = random.Random(4)
    body = _anthropic_body(TEACHERS[0], _compact, "lf", rng)
    mine, other = _taught(body), Reuse()
    (learnt,) = mine.stream_layouts.values()
    assert isinstance(learnt, Learnt) and isinstance(learnt, tuple)
    assert other.stream_layouts == {}
    spaced = _anthropic_body(TEACHERS[0], _spaced_ascii, "lf", rng)
    _decode_with(mine, "anthropic", spaced, [])
    (relearnt,) = mine.stream_layouts.values()
    assert relearnt != learnt and learnt == _taught(body).stream_layouts[
        next(iter(mine.stream_layouts))]
