"""An Anthropic-compatible upstream's SSE stream -> canonical events.

Keeps canonical.stream's contract, and in particular:
- usage comes from `message_start` and the cumulative `message_delta`; `MessageDelta` is
  emitted once, at `message_stop`, with the merged totals;
- `input_json_delta` fragments are collected and emitted as ONE ToolArgsDelta of repaired,
  valid JSON at the block's stop (upstreams break JSON; clients validate it strictly);
- blocks we cannot represent (server_tool_use, web_search_tool_result...) are skipped and
  canonical indexes stay 0, 1, 2...;
- `event: error` becomes a StreamError, and so does a body that ends before `message_stop`;
  nothing is emitted after either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

import msgspec
import orjson
from msgspec.structs import replace

from babelgate.canonical import (
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
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import dump_arguments, parse_arguments

from ..reuse import Reuse
from ..sse import SSEEvent
from ..sse_decoder import SSEStreamDecoder
from .carrier import ANTHROPIC
from .errors import error_from_object
from .response import upstream_call
from .tool_names import custom_tool_names, name_map
from .wire import canonical_stop_reason, update_usage

JSON = dict[str, Any]
_NEEDS_START = frozenset(
    {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


class _Block:
    """One open upstream block: the part announced at its start (never mutated, so a
    consumer may keep it) and the pieces that will make the finished part."""

    __slots__ = ("args", "citations", "index", "initial_input", "part", "signature", "texts")

    def __init__(self, index: int, part: Text | Reasoning | ToolCall) -> None:
        self.index = index
        self.part = part
        self.texts: list[str] = []  # text or thinking pieces
        self.args: list[str] = []  # input_json_delta fragments
        self.signature: list[str] = []
        self.citations: list[JSON] = []
        self.initial_input: JSON = {}  # a tool_use start's own input (see _block_stop)


# The typed views hold decoded JSON only, which cannot make a cycle: gc=False.
class _Delta(msgspec.Struct, gc=False):
    type: Any = None
    text: Any = None
    thinking: Any = None
    partial_json: Any = None


class _DeltaEvent(msgspec.Struct, gc=False):
    delta: _Delta | None = None


_decode_delta_event = msgspec.json.Decoder(_DeltaEvent).decode


# message_start as the general path reads it, strictly typed: a value of another type (an
# id that is a number, a count that is a float) raises, and the general path decides.
# (Counts in the int64 range, which orjson reads as ints: it reads numbers past its range
# as floats, which the general path ignores.)
_Count = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _StartUsage(msgspec.Struct, gc=False):
    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    cache_creation_input_tokens: _Count | None = None
    cache_read_input_tokens: _Count | None = None


class _StartMessage(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    usage: _StartUsage | None = None


class _StartEvent(msgspec.Struct, gc=False):
    type: str | None = None
    message: _StartMessage | None = None


_decode_start_event = msgspec.json.Decoder(_StartEvent).decode


# message_delta as _message_delta reads it, as strictly (see _StartEvent).
class _EndDelta(msgspec.Struct, gc=False):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _EndEvent(msgspec.Struct, gc=False):
    type: str | None = None
    delta: _EndDelta | None = None
    usage: _StartUsage | None = None


_decode_end_event = msgspec.json.Decoder(_EndEvent).decode


def _counted_over(usage: Usage, counted: _StartUsage) -> Usage:
    """`usage` with the counts a typed message_start or message_delta carries in place of
    its own (a count the event leaves out keeps the one before)."""
    return Usage(
        input_tokens=usage.input_tokens if counted.input_tokens is None
        else counted.input_tokens,
        output_tokens=usage.output_tokens if counted.output_tokens is None
        else counted.output_tokens,
        cache_read_tokens=usage.cache_read_tokens
        if counted.cache_read_input_tokens is None else counted.cache_read_input_tokens,
        cache_write_tokens=usage.cache_write_tokens
        if counted.cache_creation_input_tokens is None
        else counted.cache_creation_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )

# Events whose data says nothing but their kind, byte for byte as Anthropic writes them:
# what the general path does with them follows from these bytes alone (a block's index is
# not read: a stop closes the open block). The start of an empty text or thinking block
# maps to the block the general path reads from it.
_BLOCK_STOPS = frozenset(b'{"type":"content_block_stop","index":%d}' % i for i in range(64))
_MESSAGE_STOP = b'{"type":"message_stop"}'
_EMPTY_BLOCKS = {
    **{b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}'
       % i: "text" for i in range(64)},
    **{b'{"type":"content_block_start","index":%d,"content_block":{"type":"thinking",'
       b'"thinking":"","signature":""}}' % i: "thinking" for i in range(64)},
}
_TEXT_KEYS = (b'"text"',)
_THINKING_KEYS = (b'"thinking"',)
def _tool_names(tools: tuple[Tool, ...]) -> tuple[dict[str, str], frozenset[str]]:
    """The request's renamed tools (upstream name -> its own) and custom tools."""
    return name_map(tools), custom_tool_names(tools)


def _read_piece(data: bytes) -> str | None:
    """The text or thinking piece of a content_block_delta event, as on_named reads it."""
    try:
        delta = _decode_delta_event(data).delta
    except ValueError:
        return None
    if delta is None:
        return None
    if delta.type == "text_delta" and type(delta.text) is str:
        return delta.text
    if delta.type == "thinking_delta" and type(delta.thinking) is str:
        return delta.thinking
    return None


class AnthropicStreamDecoder(SSEStreamDecoder):
    input_at_start = True  # message_start's usage
    idle_event = b'event: ping\ndata: {"type":"ping"}'  # as on_named skips it
    __slots__ = (
        "_block",
        "_custom",
        "_done",
        "_model",
        "_names",
        "_next_index",
        "_started",
        "_stop_reason",
        "_stop_sequence",
        "_usage",
    )

    def __init__(self, request: Request, reuse: Reuse) -> None:
        super().__init__(reuse.stream_layouts)
        self._model = request.model  # not the request: a stream must not keep its body alive
        # Clients send the same tools every turn: the maps are made once per shared list.
        self._names, self._custom = reuse.derive(_tool_names, request.tools)
        self._block: _Block | None = None
        self._next_index = 0
        self._usage = Usage()
        self._stop_reason: StopReason | None = None
        self._stop_sequence: str | None = None
        self._started = False
        self._done = False

    def on_end(self, events: list[Event]) -> None:
        if not self._done:
            self._done = True
            message = "upstream stream ended before message_stop"
            events.append(StreamError(GatewayError("connection", message)))

    # ------------------------------------------------ dispatch

    def on_named(self, name: bytes, data: bytes, events: list[Event]) -> None:
        if name == b"ping" and data == b'{"type":"ping"}':
            return  # carries nothing (on_event would decode it to find that out)
        if (
            name == b"content_block_delta"
            and self._block is not None
            and not self._done
            and self._piece(data, events)
        ):
            return
        if name == b"message_start" and not self._started and self._typed_start(data, events):
            return
        shaped = self._shaped.get(name)  # the usual bytes of the stream's other events
        if shaped is not None and self._started and not self._done and shaped(self, data, events):
            return
        # Any other event: as on_event, with the JSON read from the bytes (no SSEEvent, no
        # text decoding); bytes orjson cannot read (bad UTF-8 among them) go the text way.
        if self._done or not data:
            return
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            super().on_named(name, data, events)
            return
        if isinstance(parsed, dict):
            self._on_json(parsed, name, events)

    def _piece(self, data: bytes, events: list[Event]) -> bool:
        """Most of a stream is content_block_delta events: text, thinking and tool-argument
        pieces go straight to the open block through a typed view of just the delta. False
        for anything else."""
        current = self._block
        assert current is not None
        try:
            delta = _decode_delta_event(data).delta
        except ValueError:  # not JSON, or bad UTF-8 in it: the general path decides
            return False
        if delta is None:
            return False
        kind = delta.type
        if kind == "text_delta" and type(delta.text) is str:
            if delta.text:
                self._add_text(delta.text, events)
                self._expect_more(data, _TEXT_KEYS)
            return True
        if kind == "thinking_delta" and type(delta.thinking) is str:
            if delta.thinking:
                self._add_text(delta.thinking, events)
                self._expect_more(data, _THINKING_KEYS)
            return True
        if kind == "input_json_delta" and type(delta.partial_json) is str:
            current.args.append(delta.partial_json)
            return True
        return False

    def _typed_start(self, data: bytes, events: list[Event]) -> bool:
        """A stream's message_start, read through a typed view: what _message_start makes
        of it. False (nothing done) for anything the view does not read the same way."""
        try:
            event = _decode_start_event(data)
        except (ValueError, UnicodeDecodeError):  # (a ValidationError is a ValueError)
            return False
        message = event.message
        if event.type != "message_start" or message is None or self._done:
            return False
        self._started = True
        usage, counted = self._usage, message.usage
        if counted is not None:
            usage = self._usage = _counted_over(usage, counted)
        events.append(MessageStart(id=message.id or new_id("msg_"),
                                   model=message.model or self._model, usage=usage))
        return True

    def _typed_end(self, data: bytes, events: list[Event]) -> bool:
        """message_delta through a typed view: what _message_delta makes of it. False
        (nothing done) for anything the view does not read the same way."""
        try:
            event = _decode_end_event(data)
        except (ValueError, UnicodeDecodeError):  # (a ValidationError is a ValueError)
            return False
        if event.type != "message_delta":
            return False
        delta, counted = event.delta, event.usage
        if delta is not None:
            self._stop_reason = canonical_stop_reason(delta.stop_reason)
            self._stop_sequence = delta.stop_sequence
        if counted is not None:
            self._usage = _counted_over(self._usage, counted)
        return True

    def _known_stop(self, data: bytes, events: list[Event]) -> bool:
        if data not in _BLOCK_STOPS:
            return False
        self._block_stop(events)
        return True

    def _known_start(self, data: bytes, events: list[Event]) -> bool:
        """An empty text or thinking block's start: what _block_start does with its
        content_block, written out for the two kinds."""
        kind = _EMPTY_BLOCKS.get(data)
        if kind is None:
            return False
        if self._block is not None:
            self._block_stop(events)
        text = kind == "text"
        current = self._block = _Block(self._next_index,
                                       Text("") if text else Reasoning(origin=ANTHROPIC))
        self._next_index += 1
        events.append(PartStart(current.index, current.part))
        self.resume(current.texts, TextDelta if text else ReasoningDelta, current.index)
        return True

    def _known_end(self, data: bytes, events: list[Event]) -> bool:
        if data != _MESSAGE_STOP:
            return False
        self._message_stop(events)
        return True

    # By event name: a started stream's other events taken without decoding their JSON
    # into dicts, when their bytes are the usual ones (each returns False, having done
    # nothing, otherwise).
    _shaped: ClassVar[dict[bytes, Callable[[Any, bytes, list[Event]], bool]]] = {
        b"content_block_start": _known_start,
        b"content_block_stop": _known_stop,
        b"message_delta": _typed_end,
        b"message_stop": _known_end,
    }

    def _expect_more(self, data: bytes, keys: tuple[bytes, ...]) -> None:
        """After a text or thinking piece: more events that differ only in the piece can
        skip the typed view too (see SSEStreamDecoder.expect_more)."""
        current = self._block
        assert current is not None
        if isinstance(current.part, Text):
            self.expect_more(data, keys, _read_piece, current.texts, TextDelta, current.index)
        elif isinstance(current.part, Reasoning) and not current.part.redacted:
            self.expect_more(data, keys, _read_piece, current.texts, ReasoningDelta,
                             current.index)

    def on_event(self, sse_event: SSEEvent, events: list[Event], at_end: bool) -> None:
        if self._done or not sse_event.data:
            return
        try:
            data = orjson.loads(sse_event.data)
        except orjson.JSONDecodeError:
            self._fail(events, f"upstream sent invalid JSON in a stream event: {sse_event.data!r}")
            return
        if isinstance(data, dict):
            self._on_json(data, sse_event.event, events)

    def _on_json(self, data: JSON, name: str | bytes | None, events: list[Event]) -> None:
        """One event's JSON object; `name` its `event:` field, read if it has no `type`."""
        kind = data.get("type") or (name.decode("utf-8", "replace") if type(name) is bytes
                                    else name)
        if not self._started and kind in _NEEDS_START:
            self._message_start({}, events)  # an upstream that skipped message_start
        if kind == "content_block_delta":
            self._delta(data.get("delta"), events)
        elif kind == "content_block_start":
            self._block_start(data.get("content_block"), events)
        elif kind == "content_block_stop":
            self._block_stop(events)
        elif kind == "message_start":
            self._message_start(data.get("message"), events)
        elif kind == "message_delta":
            self._message_delta(data)
        elif kind == "message_stop":
            self._message_stop(events)
        elif kind == "error":
            error = data.get("error")
            self._done = True
            events.append(StreamError(error_from_object(error if isinstance(error, dict) else {})))
        # ping and unknown events carry nothing for us

    def _fail(self, events: list[Event], message: str) -> None:
        self._done = True
        # A stream that breaks the protocol: the upstream's fault, a 502.
        events.append(StreamError(GatewayError("api_error", message, status=502)))

    # ------------------------------------------------ message

    def _message_start(self, message: object, events: list[Event]) -> None:
        if self._started or not isinstance(message, dict):
            return
        self._started = True
        self._usage = update_usage(self._usage, message.get("usage"))
        events.append(
            MessageStart(
                id=str(message.get("id") or new_id("msg_")),
                model=str(message.get("model") or self._model),
                usage=self._usage,
            )
        )

    def _message_delta(self, data: JSON) -> None:
        delta = data.get("delta")
        if isinstance(delta, dict):
            self._stop_reason = canonical_stop_reason(delta.get("stop_reason"))
            sequence = delta.get("stop_sequence")
            self._stop_sequence = sequence if isinstance(sequence, str) else None
        self._usage = update_usage(self._usage, data.get("usage"))

    def _message_stop(self, events: list[Event]) -> None:
        if self._block is not None:  # an upstream that forgot a content_block_stop
            self._block_stop(events)
        self._done = True
        events.append(MessageDelta(self._stop_reason, self._usage, self._stop_sequence))
        events.append(MessageStop())

    # ------------------------------------------------ blocks

    def _block_start(self, block: object, events: list[Event]) -> None:
        if self._block is not None:
            self._block_stop(events)
        part = self._new_part(block) if isinstance(block, dict) else None
        if part is None:
            return  # skipped: its deltas and stop find no open block
        assert isinstance(block, dict)
        current = self._block = _Block(self._next_index, part)
        self._next_index += 1
        events.append(PartStart(current.index, part))
        if isinstance(part, ToolCall) and isinstance(block.get("input"), dict):
            current.initial_input = block["input"]
        initial = block.get("text") if isinstance(part, Text) else block.get("thinking")
        if isinstance(initial, str) and initial:
            self._add_text(initial, events)
        # Its pieces may come as they did in the caller's last stream (_expect_more's kinds).
        if isinstance(part, Text):
            self.resume(current.texts, TextDelta, current.index)
        elif isinstance(part, Reasoning) and not part.redacted:
            self.resume(current.texts, ReasoningDelta, current.index)

    def _new_part(self, block: JSON) -> Text | Reasoning | ToolCall | None:
        kind = block.get("type")
        if kind == "text":
            return Text("")
        if kind == "thinking":
            return Reasoning(origin=ANTHROPIC)
        if kind == "redacted_thinking":
            return Reasoning(redacted=str(block.get("data") or ""), origin=ANTHROPIC)
        if kind == "tool_use":
            return upstream_call(block, {}, self._names, self._custom)
        return None

    def _delta(self, delta: object, events: list[Event]) -> None:
        current = self._block
        if current is None or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind in ("text_delta", "thinking_delta"):
            text = delta.get("text") if kind == "text_delta" else delta.get("thinking")
            if isinstance(text, str) and text:
                self._add_text(text, events)
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if isinstance(fragment, str):
                current.args.append(fragment)
        elif kind == "signature_delta" and isinstance(current.part, Reasoning):
            signature = delta.get("signature")
            if isinstance(signature, str) and signature:
                current.signature.append(signature)
                events.append(SignatureDelta(current.index, signature))
        elif kind == "citations_delta" and isinstance(current.part, Text):
            citation = delta.get("citation")
            if isinstance(citation, dict):
                current.citations.append(citation)

    def _add_text(self, text: str, events: list[Event]) -> None:
        current = self._block
        assert current is not None
        if isinstance(current.part, Text):
            current.texts.append(text)
            events.append(TextDelta(current.index, text))
        elif isinstance(current.part, Reasoning) and not current.part.redacted:
            current.texts.append(text)
            events.append(ReasoningDelta(current.index, text))

    def _block_stop(self, events: list[Event]) -> None:
        current, self._block = self._block, None
        if current is None:
            return  # the stop of a skipped block
        part: Text | Reasoning | ToolCall
        if isinstance(current.part, Text):
            # A new Text with all of the start's fields (what replace() gives, faster)
            start = current.part
            citations = tuple(current.citations) if current.citations else start.citations
            part = Text("".join(current.texts), cache=start.cache, citations=citations)
        elif isinstance(current.part, Reasoning):
            signature = "".join(current.signature) or None
            part = replace(current.part, text="".join(current.texts), signature=signature)
        else:
            # Arguments come only from input_json_delta (the start's `input` is a `{}`
            # placeholder); a compatible upstream that sends the whole input at the start and
            # no deltas is the exception.
            arguments = parse_arguments("".join(current.args)) if current.args else None
            part = replace(current.part, arguments=arguments or current.initial_input)
            events.append(ToolArgsDelta(current.index, dump_arguments(part.arguments)))
        events.append(PartStop(current.index, part))

