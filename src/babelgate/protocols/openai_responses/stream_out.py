"""Canonical events -> a Responses event stream for a client.

Each event is `event: <type>` + `data: {..., "sequence_number": n}` with n counting from 0.
The sequence: `response.created`, `response.in_progress`, then per part an output item
(added ... done), then exactly one of `response.completed`, `response.incomplete` or
`response.failed`, carrying the full response object. Nothing is written after it.

Tool calls are written whole when their part stops: added, one arguments delta, done. The
call id must be the same in the added and the done item (the openai SDK checks), and the
metadata it may carry (a Gemini thought signature) is only certain once the part is done.
Codex does not display argument deltas, so nothing is lost for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    Usage,
)
from babelgate.canonical.ids import new_id
from babelgate.protocols.base import StreamEncoder
from babelgate.protocols.sse import sse
from babelgate.protocols.sse_templates import CUT, INT, RAW, cut, event_template

from ..reuse import Reuse
from .errors import stream_error
from .response_out import (
    call_item,
    call_item_id,
    echo_settings,
    echo_tail,
    message_item,
    output_text,
    reasoning_item,
    render_usage,
    response_id,
    response_object,
    status_for,
)
from .tools import namespace_map, search_tool_names


@dataclass(slots=True)
class _OpenItem:
    item_id: str
    output_index: int
    chunks: list[str] = field(default_factory=list)  # the summary text streamed so far
    summary_open: bool = False
    delta_head: bytes = b""  # how each text delta event of this item starts





def _template(kind: str, payload: JSON) -> bytes:
    """The template of what _emit(kind, payload) writes (sse_templates.py)."""
    return event_template(kind, {**payload, "type": kind, "sequence_number": INT})


# The events that open a message item (output_index, item id, sequence numbers): what _emit
# writes for message_item(id, None, "in_progress") and output_text("").
_MESSAGE_ADDED = _template(
    "response.output_item.added",
    {"output_index": INT, "item": message_item(RAW, None, "in_progress")},
) + _template(
    "response.content_part.added",
    {"item_id": RAW, "output_index": INT, "content_index": 0, "part": output_text("")},
)
# Those that close it (item id, output index, text, sequence numbers), the item being
# message_item(id, text, "completed").
_TEXT_DONE = _template(
    "response.output_text.done",
    {"item_id": RAW, "output_index": INT, "content_index": 0, "text": RAW, "logprobs": []},
) + _template(
    "response.content_part.done",
    {"item_id": RAW, "output_index": INT, "content_index": 0, "part": output_text(RAW)},
) + _template(
    "response.output_item.done",
    {"output_index": INT, "item": message_item(RAW, RAW, "completed")},
)
# A text delta: its head (item id, output index), the text, its tail (sequence number).
# The tails are made as streams get that far (IndexError: the next 256), and kept for the
# first _KEPT_TAILS numbers (a few hundred kilobytes at most).
_DELTA_HEAD, _TEXT_DELTA_TAIL = cut(_template(
    "response.output_text.delta",
    {"item_id": RAW, "output_index": INT, "content_index": 0, "delta": CUT, "logprobs": []},
))
_TEXT_DELTA_TAILS: list[bytes] = []
_KEPT_TAILS = 4096
# The same tails after the text's closing quote, for a run of deltas written at once
# (_text_run: the texts' JSON strings come without their quotes). Made alongside.
_QUOTED_TAILS: list[bytes] = []


def _tail(seq: int) -> bytes:
    """The text delta tail for `seq`, past those made so far."""
    if seq >= _KEPT_TAILS:
        return _TEXT_DELTA_TAIL % seq
    start, end = len(_TEXT_DELTA_TAILS), min(seq + 256, _KEPT_TAILS)
    _TEXT_DELTA_TAILS.extend(_TEXT_DELTA_TAIL % n for n in range(start, end))
    _QUOTED_TAILS.extend(b'"' + _TEXT_DELTA_TAIL % n for n in range(start, end))
    return _TEXT_DELTA_TAILS[seq]


def _tails(seq: int, count: int, quoted: bool) -> list[bytes]:
    """The tails of `count` text deltas from `seq` on, with the closing quote or not."""
    end = seq + count
    if end > _KEPT_TAILS:
        return [(b'"' if quoted else b"") + _TEXT_DELTA_TAIL % n for n in range(seq, end)]
    if end > len(_QUOTED_TAILS):
        _tail(end - 1)
    return (_QUOTED_TAILS if quoted else _TEXT_DELTA_TAILS)[seq:end]



# Where a call's input goes, and the events that stream it, by whether the call is free-form
# (custom): its item's key, then the delta and done event types.
_CALL_INPUT = {
    False: (
        "arguments",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ),
    True: (
        "input",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    ),
}


def _echo_and_maps(
    tools: tuple[Tool, ...], settings: tuple[object, ...]
) -> tuple[bytes, dict[str, tuple[str, str]], frozenset[str]]:
    """What a stream of a request with these tools and echo settings keeps: the response
    object's echo, serialised (echo_tail), and the tool list's namespace and search maps."""
    return echo_tail(tools, settings), namespace_map(tools), search_tool_names(tools)


class ResponsesStreamEncoder(StreamEncoder):
    def __init__(self, request: Request, reuse: Reuse) -> None:
        # What the response object echoes, serialised now: the encoder keeps no reference to
        # the request, so an open stream does not keep the request's body alive. Clients send
        # the same tools and settings every turn: the echo (~8 KB of tools), and the maps of
        # the tool list, are made once per shared tool list and settings.
        self._echo_tail, self._namespaces, self._searches = reuse.derive(
            _echo_and_maps, request.tools, echo_settings(request))
        self._seq = 0
        self._rid = ""
        self._model = request.model
        self._created_at = 0
        self._output: list[JSON] = []
        self._open: _OpenItem | None = None
        self._stop_reason: StopReason | None = "end_turn"
        self._usage = Usage()
        self._started = False
        self._finished = False
        self._text_head = b""  # see encode

    def ping(self) -> bytes:
        return b": keep-alive\n\n"

    def encode(self, event: Event) -> bytes:
        if type(event) is TextDelta and self._text_head and event.text:
            # What a stream is mostly made of, while a message item is open and nothing else
            # came since its last delta: the event _text_delta writes, from its start.
            seq = self._seq
            self._seq = seq + 1
            try:
                tail = _TEXT_DELTA_TAILS[seq]
            except IndexError:
                tail = _tail(seq)
            return b"".join((self._text_head, orjson.dumps(event.text), tail))
        self._text_head = b""  # set again by _text_delta
        return b"" if self._finished else self._event(event)

    def encode_batch(self, events: list[Event]) -> bytes:
        """As encode for each event, with a run of text deltas written in one go: a read of
        a streaming upstream is mostly such a run (all of a short answer that came at
        once), and one event at a time costs a few calls per delta. The run is found
        without a loop of our own (a batch with other text deltas goes one event at a
        time)."""
        out: list[bytes] = []
        kinds = list(map(type, events))
        count = kinds.count(TextDelta)
        if count > 2:
            first = kinds.index(TextDelta)
            end = first + count
            if kinds[first:end] == [TextDelta] * count:
                for event in events[:first]:
                    self._add(event, out)
                self._text_run(events[first:end], out)
                events = events[end:]
        for event in events:
            self._add(event, out)
        return b"".join(out)

    def _add(self, event: Event, out: list[bytes]) -> None:
        """Append what encode writes for `event`; the response's start and end (each with
        the echo: kilobytes) in pieces, so that they are copied once, by encode_batch."""
        if self._finished or (type(event) is TextDelta and self._text_head):
            out.append(self.encode(event))
        elif not self._started:
            if type(event) is MessageStart:
                self._text_head = b""
                out += self._start_pieces(event.id, event.model, event.usage)
            else:
                out.append(self.encode(event))
        # A started response's other events, as _event writes them (without its tests)
        elif type(event) is PartStart:
            self._text_head = b""
            out.append(self._part_start(event.part))
        elif type(event) is PartStop:
            self._text_head = b""
            out.append(self._part_stop(event.part))
        elif type(event) is MessageDelta:
            self._text_head = b""
            self._stop_reason, self._usage = event.stop_reason, event.usage
        elif type(event) is MessageStop:
            self._text_head = b""
            out += self._finish_pieces()
        else:
            out.append(self.encode(event))

    def _text_run(self, deltas: list[Event], out: list[bytes]) -> None:
        """Append what encode writes for each of `deltas` (text deltas), taken together when
        they are what encode's first branch takes (a message item open, no empty text)."""
        if not self._text_head:  # the item's first delta, or not a message item: as encode
            out.append(self.encode(deltas[0]))
            del deltas[0]
        texts = [delta.text for delta in deltas if type(delta) is TextDelta]  # (all are)
        if not self._text_head or "" in texts:
            out += map(self.encode, deltas)
            return
        try:
            strings = orjson.dumps(texts)
        except TypeError:  # a text orjson refuses (a lone surrogate): encode raises it
            out += map(self.encode, deltas)
            return
        head = self._text_head
        quoted = strings.find(b"\\") < 0
        if quoted:
            # No escape in any of them, so no quote inside one: `","` lies only between
            # two strings, and one split gives them all, without their quotes (the head
            # then ends with the opening quote, the tail starts with the closing one).
            bodies = strings[2:-2].split(b'","')
            head += b'"'
        else:
            bodies = list(map(orjson.dumps, texts))
        # Each event: the head, the string, the tail with its sequence number.
        seq = self._seq
        self._seq = seq + len(bodies)
        pieces = [head] * (3 * len(bodies))
        pieces[1::3] = bodies
        pieces[2::3] = _tails(seq, len(bodies), quoted)
        out += pieces

    def _event(self, event: Event) -> bytes:
        if type(event) is TextDelta and self._started:
            return self._text_delta(event.text)
        if isinstance(event, MessageStart):
            return self._start(event.id, event.model, event.usage)
        out = b"" if self._started else self._start("", "", Usage())
        if isinstance(event, PartStart):
            out += self._part_start(event.part)
        elif isinstance(event, TextDelta):
            out += self._text_delta(event.text)
        elif isinstance(event, ReasoningDelta):
            out += self._reasoning_delta(event.text)
        elif isinstance(event, PartStop):
            out += self._part_stop(event.part)
        elif isinstance(event, MessageDelta):
            self._stop_reason, self._usage = event.stop_reason, event.usage
        elif isinstance(event, MessageStop):
            out += self._finish()
        elif isinstance(event, StreamError):
            out += self._fail(event.error)
        # ToolArgsDelta and SignatureDelta add nothing: calls are written from the finished
        # part, and a signature arrives with its finished reasoning part.
        return out

    # ------------------------------------------------------------ framing

    def _emit(self, kind: str, payload: JSON) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._seq
        self._seq += 1
        return sse(orjson.dumps(payload), kind)

    def _response(
        self,
        status: str,
        usage: JSON | None,
        incomplete_reason: str | None = None,
        error: JSON | None = None,
    ) -> tuple[bytes, bytes]:
        """The response object's JSON, in two pieces: its own fields, and the request echo
        (the same in every response event of a stream, so serialised once). Joined, they are
        the bytes of response_object with the echo in it."""
        own = orjson.dumps(response_object(
            rid=self._rid,
            created_at=self._created_at,
            model=self._model,
            echo={},
            output=self._output,
            status=status,
            usage=usage,
            incomplete_reason=incomplete_reason,
            error=error,
        ))
        return own[:-1], self._echo_tail

    def _response_event(self, kind: str, response: tuple[bytes, bytes]) -> tuple[bytes, ...]:
        """What _emit(kind, {"response": ...}) writes, around the response's JSON, in pieces
        (joined once: it holds the echoed tools, kilobytes)."""
        seq = self._seq
        self._seq += 1
        name = kind.encode()
        return (b"event: ", name, b'\ndata: {"response":', *response, b',"type":"',
                name, b'","sequence_number":', str(seq).encode(), b"}\n\n")

    # ------------------------------------------------------------ lifecycle

    def _start(self, upstream_id: str, model: str, usage: Usage) -> bytes:
        if self._started:
            return b""
        return b"".join(self._start_pieces(upstream_id, model, usage))

    def _start_pieces(self, upstream_id: str, model: str, usage: Usage) -> tuple[bytes, ...]:
        """The response's two opening events, in pieces (each holds the echo)."""
        self._started = True
        self._rid = response_id(upstream_id)
        self._model = model or self._model
        self._created_at = int(time.time())
        self._usage = usage
        own, echo = self._response("in_progress", None)
        seq = self._seq
        self._seq += 2
        return (
            b'event: response.created\ndata: {"response":', own, echo,
            b',"type":"response.created","sequence_number":', b"%d" % seq,
            b'}\n\nevent: response.in_progress\ndata: {"response":', own, echo,
            b',"type":"response.in_progress","sequence_number":', b"%d" % (seq + 1), b"}\n\n")

    def _finish(self) -> bytes:
        return b"".join(self._finish_pieces())

    def _finish_pieces(self) -> tuple[bytes, ...]:
        self._finished = True
        status, reason = status_for(self._stop_reason)
        response = self._response(status, render_usage(self._usage), incomplete_reason=reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return self._response_event(kind, response)

    def _fail(self, error: GatewayError) -> bytes:
        self._finished = True
        response = self._response("failed", None, error=stream_error(error))
        return b"".join(self._response_event("response.failed", response))

    # ------------------------------------------------------------ parts

    def _part_start(self, part: Text | Reasoning | ToolCall) -> bytes:
        index = len(self._output)
        if isinstance(part, ToolCall):
            self._open = _OpenItem(call_item_id(part, self._searches), index)
            return b""
        if isinstance(part, Reasoning):
            self._open = _OpenItem(new_id("rs_"), index)
            item = reasoning_item(self._open.item_id, None)
            return self._emit("response.output_item.added", {"output_index": index, "item": item})
        self._open = _OpenItem(new_id("msg_"), index)
        # The two events _emit would write for message_item(id, None, "in_progress") and
        # output_text(""), from templates: every text part opens so.
        seq, self._seq = self._seq, self._seq + 2
        item_id = orjson.dumps(self._open.item_id)
        return _MESSAGE_ADDED % (index, item_id, seq, item_id, index, seq + 1)

    def _where(self, **extra: object) -> JSON:
        assert self._open is not None
        return {"item_id": self._open.item_id, "output_index": self._open.output_index, **extra}

    def _text_delta(self, text: str) -> bytes:
        if self._open is None or not text:
            return b""
        # Written without building its dict: the same event _emit would write.
        head = self._open.delta_head
        if not head:
            head = self._open.delta_head = _DELTA_HEAD % (
                orjson.dumps(self._open.item_id), self._open.output_index)
        self._text_head = head
        seq = self._seq
        self._seq += 1
        tail = _TEXT_DELTA_TAILS[seq] if seq < len(_TEXT_DELTA_TAILS) else _tail(seq)
        return head + orjson.dumps(text) + tail

    def _reasoning_delta(self, text: str) -> bytes:
        if self._open is None or not text:
            return b""
        out = b""
        if not self._open.summary_open:
            self._open.summary_open = True
            out = self._emit(
                "response.reasoning_summary_part.added",
                self._where(summary_index=0, part={"type": "summary_text", "text": ""}),
            )
        self._open.chunks.append(text)
        return out + self._emit(
            "response.reasoning_summary_text.delta", self._where(summary_index=0, delta=text)
        )

    def _part_stop(self, part: Text | Reasoning | ToolCall) -> bytes:
        out = b""
        if self._open is None:  # a stop without its start: open the item now
            out = self._part_start(part)
        assert self._open is not None
        if isinstance(part, Text):
            out += self._close_text(part.text)
            self._open = None
            return out
        if isinstance(part, Reasoning):
            closing, item = self._close_reasoning(part)
        else:
            closing, item = self._close_call(part)
        out += closing + self._emit(
            "response.output_item.done", {"output_index": self._open.output_index, "item": item}
        )
        self._output.append(item)
        self._open = None
        return out

    def _close_text(self, text: str) -> bytes:
        """output_text.done, content_part.done and output_item.done (the item being
        message_item(id, text, "completed"), kept for the response's output) as _emit
        would write them, from a template with the text serialised once."""
        assert self._open is not None
        seq, self._seq = self._seq, self._seq + 3
        item_id, index = orjson.dumps(self._open.item_id), self._open.output_index
        string = orjson.dumps(text)
        self._output.append(message_item(self._open.item_id, text, "completed"))
        return _TEXT_DONE % (item_id, index, string, seq, item_id, index, string, seq + 1,
                             index, item_id, string, seq + 2)

    def _close_reasoning(self, part: Reasoning) -> tuple[bytes, JSON]:
        assert self._open is not None
        out = b""
        if self._open.summary_open:
            text = "".join(self._open.chunks)
            out += self._emit(
                "response.reasoning_summary_text.done", self._where(summary_index=0, text=text)
            )
            out += self._emit(
                "response.reasoning_summary_part.done",
                self._where(summary_index=0, part={"type": "summary_text", "text": text}),
            )
        return out, reasoning_item(self._open.item_id, part)

    def _close_call(self, call: ToolCall) -> tuple[bytes, JSON]:
        assert self._open is not None
        item = call_item(self._open.item_id, call, self._namespaces, self._searches)
        index = self._open.output_index
        if item["type"] == "tool_search_call":
            # No argument deltas exist for this item: Codex reads it whole from `done`.
            added = {**item, "status": "in_progress"}
            return self._emit(
                "response.output_item.added", {"output_index": index, "item": added}
            ), item
        key, delta_kind, done_kind = _CALL_INPUT[call.kind == "custom"]
        value = item[key]
        added = {**item, key: "", "status": "in_progress"}
        out = self._emit("response.output_item.added", {"output_index": index, "item": added})
        if value:
            out += self._emit(delta_kind, self._where(delta=value))
        out += self._emit(done_kind, self._where(**{key: value}))
        return out, item
