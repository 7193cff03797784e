"""An upstream's Chat Completions SSE stream -> canonical events.

Reasoning and text stream live, each as its own part (one is closed before the other opens).
Tool calls are buffered per call and emitted whole when the upstream says the message is
finished, as PartStart + one ToolArgsDelta of repaired JSON + PartStop: upstreams interleave
parallel calls, repeat ids on every fragment, number every call 0, send whole calls in one
chunk or break the JSON, and a client must only ever see one clean object per call.

Usage may come in a final `choices: []` chunk or next to the finish_reason, so the closing
MessageDelta waits for `[DONE]` or the end of the body. A `{"error":...}` chunk, or a body
that ends before any finish_reason or `[DONE]`, ends the stream with a StreamError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from babelgate.canonical import (
    JSON,
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
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import dump_arguments

from ..reuse import Reuse
from ..sse import SSEEvent
from ..sse_decoder import SSEStreamDecoder
from .calls import arguments_text, make_call
from .errors import error_from_json
from .names import tools_by_wire_name
from .parse_response import reasoning_text
from .stop_reasons import stop_reason
from .usage import parse_usage


@dataclass(slots=True)
class _OpenPart:
    kind: str  # "text" or "reasoning"
    index: int
    chunks: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _CallBuffer:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


# A typed view of a chunk: every field the general path (_take, _choice, reasoning_text)
# reads, so that "all of them empty but one piece" means the same as there.
# The typed views hold decoded JSON only, which cannot make a cycle: gc=False.
class _Delta(msgspec.Struct, gc=False):
    content: Any = None
    reasoning_content: Any = None
    reasoning: Any = None
    reasoning_details: Any = None
    refusal: Any = None
    tool_calls: Any = None
    function_call: Any = None


class _Choice(msgspec.Struct, gc=False):
    index: Any = 0
    delta: _Delta | None = None
    finish_reason: Any = None
    usage: Any = None
    stop_reason: Any = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None
    usage: Any = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_TEXT_KEYS = (b'"content"',)
_PIECES = (TextDelta, ReasoningDelta)
_REASONING_FIELDS = frozenset({"reasoning_content", "reasoning", "reasoning_details"})
_REASONING_KEYS = (b'"reasoning_content"', b'"reasoning"')


def _bare_piece(chunk: _Chunk, kind: str) -> str | None:
    """The text (kind "text") or reasoning (kind "reasoning") of a chunk that carries nothing
    else, else None."""
    choices = chunk.choices
    if chunk.usage is not None or chunk.error is not None or not choices or len(choices) != 1:
        return None
    choice = choices[0]
    delta = choice.delta
    if (
        delta is None
        or choice.index != 0
        or choice.finish_reason is not None
        or choice.usage is not None
        or choice.stop_reason is not None
        or delta.refusal is not None
        or delta.tool_calls is not None
        or delta.function_call is not None
        or delta.reasoning_details is not None
    ):
        return None
    if kind == "text":
        content = delta.content
        if delta.reasoning_content is None and delta.reasoning is None and (
            type(content) is str and content
        ):
            return content
        return None
    reasoning = delta.reasoning_content or delta.reasoning
    if (delta.content is None or delta.content == "") and type(reasoning) is str and reasoning:
        return reasoning
    return None


class ChatStreamDecoder(SSEStreamDecoder):
    def __init__(self, request: Request, reuse: Reuse) -> None:
        super().__init__()
        # Only what the stream needs, not the request: an open stream must not keep the
        # request's body alive.
        self._model = request.model
        self._stop = request.stop
        self._tools = tools_by_wire_name(request, reuse)
        self._started = False
        self._ended = False  # MessageStop or StreamError went out; ignore the rest
        self._next_index = 0
        self._open: _OpenPart | None = None
        self._calls: list[_CallBuffer] = []  # in order of first appearance
        self._by_index: dict[Any, _CallBuffer] = {}
        self._by_id: dict[str, _CallBuffer] = {}
        self._emitted_calls = False
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    # ------------------------------------------------------------ StreamDecoder

    def on_event(self, event: SSEEvent, events: list[Event], at_end: bool) -> None:
        if not self._ended:  # after MessageStop or StreamError, the rest is ignored
            self._handle(event.data, events, at_end)

    def on_data(self, data: bytes, events: list[Event]) -> None:
        if self._ended:
            return
        part = self._open
        if part is not None and not self.missed:
            # The chunk a stream is mostly made of: one more piece of the text (or reasoning)
            # already open. Read into a typed view that skips everything else in the chunk;
            # anything but a bare piece takes the general path below.
            piece = self._read_piece(data)
            if piece is not None:
                part.chunks.append(piece)
                kind = TextDelta if part.kind == "text" else ReasoningDelta
                events.append(kind(part.index, piece))
                self._expect_more(data)
                return
        if data == b"[DONE]":  # what _handle does with it, without a failed JSON decode
            self._end_message(events)
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._handle(data.decode("utf-8", "replace"), events)  # `[DONE]`, or an error
            return
        before = len(events)
        self._take(chunk, data, events)
        if self._open is not None and len(events) > before and type(events[-1]) in _PIECES:
            self._expect_more(data)  # the first piece of a part, or of a stream

    def _expect_more(self, data: bytes) -> None:
        """After a chunk that left a piece in the open part: chunks that differ only in the
        piece can skip the typed view too (see SSEStreamDecoder.expect_more)."""
        part = self._open
        assert part is not None
        kind = TextDelta if part.kind == "text" else ReasoningDelta
        keys = _TEXT_KEYS if part.kind == "text" else _REASONING_KEYS
        self.expect_more(data, keys, self._read_piece, part.chunks, kind, part.index)

    def _read_piece(self, data: bytes) -> str | None:
        """The piece of the open part's kind a chunk carries, if it carries nothing else."""
        assert self._open is not None
        try:
            return _bare_piece(_decode_chunk(data), self._open.kind)
        except ValueError:  # not JSON, or bad UTF-8 in it: the general path decides
            return None

    def on_end(self, events: list[Event]) -> None:
        if self._ended:
            return
        if self._finish is not None:
            self._end_message(events)  # some servers end the body without `[DONE]`
        else:
            # Cut off by the upstream, as the other decoders say it: a 502.
            self._fail(events, GatewayError("connection", "upstream stream ended early"))

    # ------------------------------------------------------------ chunks

    def _handle(self, data: str, events: list[Event], at_end: bool = False) -> None:
        if data.strip() == "[DONE]":
            self._end_message(events)
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            if at_end:
                return  # the body was cut inside its last event: close() reports that
            chunk = None
        self._take(chunk, data, events)

    def _take(self, chunk: Any, data: str | bytes, events: list[Event]) -> None:
        """One decoded chunk (None if it was not JSON), `data` its text for the error."""
        if not isinstance(chunk, dict):
            message = f"upstream sent a malformed stream chunk: {data[:200]!r}"
            self._fail(events, GatewayError("api_error", message, status=502))
            return
        if chunk.get("error"):
            self._fail(events, error_from_json(chunk))
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = parse_usage(usage)
        if not self._started:
            self._start(chunk, events)
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)

    def _start(self, chunk: JSON, events: list[Event]) -> None:
        self._started = True
        events.append(
            MessageStart(
                id=chunk.get("id") or new_id("chatcmpl-"),
                model=chunk.get("model") or self._model,
                usage=self._usage or Usage(),
            )
        )

    def _choice(self, choice: JSON, events: list[Event]) -> None:
        usage = choice.get("usage")  # Moonshot puts usage inside the choice
        if isinstance(usage, dict):
            self._usage = parse_usage(usage)
        delta = choice.get("delta") or {}
        # reasoning_text gives "" without these keys: most chunks have none of them
        reasoning = reasoning_text(delta) if _REASONING_FIELDS & delta.keys() else ""
        if reasoning:
            self._stream_text("reasoning", reasoning, events)
        content = delta.get("content") or delta.get("refusal")
        if isinstance(content, str) and content:
            self._stream_text("text", content, events)
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, dict):
                self._call_fragment(fragment)
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            self._call_fragment({"index": "function_call", "function": legacy})
        matched = choice.get("stop_reason")  # vLLM: the stop string that matched
        if isinstance(matched, str) and matched in self._stop:
            self._stop_sequence = matched
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
            self._close_open(events)
            self._flush_calls(events)

    # ------------------------------------------------------------ text and reasoning

    def _stream_text(self, kind: str, text: str, events: list[Event]) -> None:
        part = self._open
        if part is None or part.kind != kind:
            self._close_open(events)
            part = self._open = _OpenPart(kind, self._next_index)
            self._next_index += 1
            empty = Text(text="") if kind == "text" else Reasoning(text="", origin="openai")
            events.append(PartStart(part.index, empty))
        part.chunks.append(text)
        if kind == "text":
            events.append(TextDelta(part.index, text))
        else:
            events.append(ReasoningDelta(part.index, text))

    def _close_open(self, events: list[Event]) -> None:
        part = self._open
        if part is None:
            return
        self._open = None
        text = "".join(part.chunks)
        done = Text(text=text) if part.kind == "text" else Reasoning(text=text, origin="openai")
        events.append(PartStop(part.index, done))

    # ------------------------------------------------------------ tool calls

    def _call_fragment(self, fragment: JSON) -> None:
        function = fragment.get("function") or {}
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) else None
        buffer = self._buffer_for(fragment.get("index"), call_id)
        if call_id and not buffer.id:
            buffer.id = call_id
            self._by_id[call_id] = buffer
        name = function.get("name")
        if isinstance(name, str) and name and not buffer.name:
            buffer.name = name
        piece = arguments_text(function.get("arguments"))
        if piece:
            buffer.arguments.append(piece)

    def _buffer_for(self, index: Any, call_id: str | None) -> _CallBuffer:
        if call_id and call_id in self._by_id:
            return self._by_id[call_id]  # upstreams that repeat the id on every fragment
        buffer = self._by_index.get(index) if index is not None else None
        if buffer is None and index is None and not call_id and self._calls:
            buffer = self._calls[-1]  # no index, no id: continues the latest call
        if buffer is not None and call_id and buffer.id and buffer.id != call_id:
            buffer = None  # same index, new id: an upstream that numbers every call 0
        if buffer is None:
            buffer = _CallBuffer()
            self._calls.append(buffer)
        if index is not None:
            self._by_index[index] = buffer
        return buffer

    def _flush_calls(self, events: list[Event]) -> None:
        if not self._calls:
            return  # nothing buffered (then _by_index and _by_id are empty too)
        for buffer in self._calls:
            call = make_call(buffer.id, buffer.name, "".join(buffer.arguments), self._tools)
            index = self._next_index
            self._next_index += 1
            header = ToolCall(id=call.id, name=call.name, kind=call.kind)
            events.append(PartStart(index, header))
            events.append(ToolArgsDelta(index, dump_arguments(call.arguments)))
            events.append(PartStop(index, call))
            self._emitted_calls = True
        self._calls.clear()
        self._by_index.clear()
        self._by_id.clear()

    # ------------------------------------------------------------ endings

    def _end_message(self, events: list[Event]) -> None:
        if not self._started:
            self._start({}, events)
        self._close_open(events)
        self._flush_calls(events)
        reason = stop_reason(self._finish, self._emitted_calls)
        if self._stop_sequence is not None and reason == "end_turn":
            reason = "stop_sequence"
        events.append(MessageDelta(reason, self._usage or Usage(), self._stop_sequence))
        events.append(MessageStop())
        self._ended = True

    def _fail(self, events: list[Event], error: GatewayError) -> None:
        # Calls still buffered are incomplete: running half a command is worse than none.
        self._close_open(events)
        self._calls.clear()
        events.append(StreamError(error))
        self._ended = True
