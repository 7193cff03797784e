"""Canonical events -> a client's chat.completion.chunk SSE stream.

The shape follows OpenAI's own streams: a first chunk with `role: assistant`; text as
`content` deltas, reasoning as `reasoning_content` deltas; each tool call under its own
`tool_calls[].index`, whose first fragment carries id, type and name with `arguments: ""`
and later fragments pieces of arguments; a chunk with the finish_reason; a usage chunk with
`choices: []` when the client asked for `stream_options.include_usage`; then `[DONE]`.
A StreamError becomes a `data: {"error":...}` chunk followed by `[DONE]`.

A call's id goes out once, in its first fragment, so it carries what must round-trip then
(carrier.py): the call's own provider_metadata (known at PartStart by the stream contract)
and, on the first call, the reasoning parts finished before it (reasoning precedes tool calls
in every upstream's stream, so their signatures are known by then).

Every chunk shares the same id/created/model head, serialised once per stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from babelgate.canonical import (
    JSON,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    ReasoningDelta,
    Request,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)

from ..base import StreamEncoder, writer_by_kind
from ..text_run import text_run, write_texts
from .carrier import client_call_id, reasoning_entries
from .errors import render_error
from .stop_reasons import finish_reason
from .usage import render_usage

_DONE = b"data: [DONE]\n\n"
_TAIL_OPEN = b',"logprobs":null,"finish_reason":null}]}\n\n'
_DELTA_TAIL = b"}" + _TAIL_OPEN


class ChatStreamEncoder(StreamEncoder):
    def __init__(self, request: Request) -> None:
        self._include_usage = request.include_usage
        self._model = request.model
        self._meta: JSON = {}
        self._head = b""
        self._text_head = self._reasoning_head = b""  # _head and the delta's key
        self._usage_head = b""  # the usage chunk up to its usage
        self._tool_slot: dict[int, int] = {}  # part index -> tool_calls[].index
        self._custom: set[int] = set()  # part indexes of free-form (custom) calls
        self._thoughts: list[Reasoning] = []  # finished reasoning, for the first call's id
        self._usage = Usage()

    def encode(self, event: Event) -> bytes:
        # What a stream is mostly made of, written without building its dict: the same
        # bytes as _chunk({"content": text}) once the stream has started.
        if type(event) is TextDelta and self._text_head:
            return self._text_head + orjson.dumps(event.text) + _DELTA_TAIL
        if type(event) is ReasoningDelta and self._reasoning_head:
            return self._reasoning_head + orjson.dumps(event.text) + _DELTA_TAIL
        # Each other event by its type: one lookup, where a chain of isinstance tests cost
        # ~1-3 k instructions a test on these structs.
        write = _WRITERS.get(type(event)) or writer_by_kind(_WRITERS, event)
        if write is not None:
            return write(self, event)
        return b""  # SignatureDelta: Chat has nowhere to put a signature

    def _text(self, event: TextDelta) -> bytes:
        return self._chunk({"content": event.text})

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        return self._chunk({"reasoning_content": event.text})

    def _end(self, event: MessageDelta) -> bytes:
        self._usage = event.usage
        reason = finish_reason(event.stop_reason, bool(self._tool_slot))
        return self._chunk({}, reason)

    def _stop(self, event: MessageStop) -> bytes:
        return self._usage_chunk() + _DONE if self._include_usage else _DONE

    def _error(self, event: StreamError) -> bytes:
        return b"data: " + orjson.dumps(render_error(event.error)) + b"\n\n" + _DONE

    def encode_batch(self, events: list[Event]) -> bytes:
        """As encode for each event, with a run of text deltas written in one go
        (text_run.py) once the stream has started: each delta is then the text head, the
        text's JSON string and the same tail."""
        run = text_run(events)
        if run is None:
            return b"".join(map(self.encode, events))
        first, end = run
        out = list(map(self.encode, events[:first]))  # the start, if in this read
        if self._text_head:
            out.append(write_texts(events[first:end], self._text_head, _DELTA_TAIL))
        else:  # before any MessageStart (it breaks the contract): as encode
            out += map(self.encode, events[first:end])
        out += map(self.encode, events[end:])
        return b"".join(out)

    def _start(self, event: MessageStart) -> bytes:
        self._meta = {
            "id": event.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": event.model or self._model,
        }
        meta = b"data: " + orjson.dumps(self._meta)[:-1]
        self._head = meta + b',"choices":[{"index":0,"delta":'
        self._usage_head = meta + b',"choices":[],"usage":'
        self._text_head = self._head + b'{"content":'
        self._reasoning_head = self._head + b'{"reasoning_content":'
        # _chunk({"role": "assistant", "content": ""}), written out
        return self._head + b'{"role":"assistant","content":""}' + _TAIL_OPEN

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        if not self._head:  # events before MessageStart break the contract; stay parseable
            self._start(MessageStart(id="chatcmpl-unknown", model=self._model))
        if finish is None:
            return self._head + orjson.dumps(delta) + _TAIL_OPEN
        tail = b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"
        return self._head + orjson.dumps(delta) + tail

    def _part_start(self, event: PartStart) -> bytes:
        call = event.part
        if not isinstance(call, ToolCall):
            return b""  # text and reasoning need no opening chunk
        slot = self._tool_slot[event.index] = len(self._tool_slot)
        entries = reasoning_entries(self._thoughts) if slot == 0 else None
        entry: JSON = {"index": slot, "id": client_call_id(call, entries)}
        if call.kind == "custom":
            self._custom.add(event.index)
            entry["type"] = "custom"
            entry["custom"] = {"name": call.name, "input": ""}
        else:
            entry["type"] = "function"
            entry["function"] = {"name": call.name, "arguments": ""}
        return self._chunk({"tool_calls": [entry]})

    def _args(self, event: ToolArgsDelta) -> bytes:
        slot = self._tool_slot.get(event.index)
        if slot is None or event.index in self._custom or not event.json:
            return b""  # a custom call's input goes out whole at its PartStop
        return self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": event.json}}]})

    def _part_stop(self, event: PartStop) -> bytes:
        if isinstance(event.part, Reasoning):
            self._thoughts.append(event.part)
            return b""
        call = event.part
        if event.index not in self._custom or not isinstance(call, ToolCall):
            return b""
        raw = call.arguments.get("input")
        text = raw if isinstance(raw, str) else orjson.dumps(call.arguments).decode()
        entry = {"index": self._tool_slot[event.index], "custom": {"input": text}}
        return self._chunk({"tool_calls": [entry]})

    def _usage_chunk(self) -> bytes:
        # dict(self._meta, choices=[], usage=...) serialised, from the head made at the start
        if not self._usage_head:  # no MessageStart came (it breaks the contract)
            body = dict(self._meta, choices=[], usage=render_usage(self._usage))
            return b"data: " + orjson.dumps(body) + b"\n\n"
        return self._usage_head + orjson.dumps(render_usage(self._usage)) + b"}\n\n"


# The writer of each kind of event, in the order encode tests a subclass.
_WRITERS: Mapping[type[Event], Callable[[ChatStreamEncoder, Any], bytes]] = MappingProxyType({
    TextDelta: ChatStreamEncoder._text,
    ReasoningDelta: ChatStreamEncoder._reasoning,
    ToolArgsDelta: ChatStreamEncoder._args,
    PartStart: ChatStreamEncoder._part_start,
    PartStop: ChatStreamEncoder._part_stop,
    MessageStart: ChatStreamEncoder._start,
    MessageDelta: ChatStreamEncoder._end,
    MessageStop: ChatStreamEncoder._stop,
    StreamError: ChatStreamEncoder._error,
})
