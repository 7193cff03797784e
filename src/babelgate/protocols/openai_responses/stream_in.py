"""An OpenAI Responses upstream's event stream -> canonical events.

Output items map to parts one to one (message -> Text, reasoning -> Reasoning,
function_call / custom_tool_call -> ToolCall; built-in tool items are skipped). Text and
reasoning summary deltas pass straight through; a new summary part is separated from the
previous one by a blank line. Call arguments are buffered and emitted as one repaired
`ToolArgsDelta` when the item is done, since the canonical contract promises valid JSON.

`response.completed` / `response.incomplete` end the stream with the stop reason and usage;
`response.failed` and `error` events become a StreamError; a body that ends without any of
them is a StreamError too (Codex treats such a stream as failed, and so do we).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from msgspec.structs import replace

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
)
from babelgate.canonical.tool_args import dump_arguments
from babelgate.protocols.sse import SSEEvent
from babelgate.protocols.sse_decoder import SSEStreamDecoder

from .envelope import ORIGIN
from .errors import error_from_event
from .names import name_map
from .response_in import (
    call_from_item,
    message_text,
    parse_usage,
    reasoning_from_item,
    stop_reason,
)

_PART_ITEMS = frozenset({"message", "reasoning", "function_call", "custom_tool_call"})
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})


@dataclass(slots=True)
class _Open:
    """The output item being streamed, as its `output_item.added` announced it."""

    output_index: Any
    part_index: int
    item: JSON
    chunks: list[str] = field(default_factory=list)


class ResponsesStreamDecoder(SSEStreamDecoder):
    def __init__(self, request: Request) -> None:
        super().__init__()
        self._names = name_map(request)
        self._model = request.model
        self._started = False
        self._finished = False
        self._next_part = 0
        self._open: _Open | None = None
        self._has_calls = False

    def on_end(self, events: list[Event]) -> None:
        if not self._finished:
            self._finished = True
            error = GatewayError("connection", "upstream stream ended before response.completed")
            events.append(StreamError(error))

    # ------------------------------------------------------------ dispatch

    def on_event(self, sse: SSEEvent, events: list[Event], at_end: bool) -> None:
        if self._finished:
            return
        data = _json(sse.data)
        if data is None:
            return
        kind = data.get("type") or sse.event
        if not isinstance(kind, str):
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, kind, data, events)

    def _on_argument_delta(self, kind: str, data: JSON, events: list[Event]) -> None:
        if self._matches(data) and isinstance(data.get("delta"), str):
            assert self._open is not None
            self._open.chunks.append(data["delta"])

    def _on_lifecycle(self, kind: str, data: JSON, events: list[Event]) -> None:
        self._start(data.get("response"), events)

    def _on_failed(self, kind: str, data: JSON, events: list[Event]) -> None:
        response = data.get("response")
        self._fail(response.get("error") if isinstance(response, dict) else None, events)

    def _on_error(self, kind: str, data: JSON, events: list[Event]) -> None:
        self._fail(data.get("error") if isinstance(data.get("error"), dict) else data, events)

    def _start(self, response: Any, events: list[Event]) -> None:
        if self._started:
            return
        self._started = True
        response = response if isinstance(response, dict) else {}
        events.append(
            MessageStart(
                id=str(response.get("id") or ""),
                model=str(response.get("model") or self._model),
            )
        )

    def _matches(self, data: JSON) -> bool:
        index = data.get("output_index")
        return self._open is not None and (index is None or index == self._open.output_index)

    # ------------------------------------------------------------ items

    def _item_added(self, kind: str, data: JSON, events: list[Event]) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or item.get("type") not in _PART_ITEMS:
            return
        self._start(None, events)
        if self._open is not None:  # the previous item never said done
            self._close(self._open.item, events)
        self._open = _Open(data.get("output_index"), self._next_part, item)
        self._next_part += 1
        events.append(PartStart(self._open.part_index, self._empty_part(item)))

    def _empty_part(self, item: JSON) -> Text | Reasoning | ToolCall:
        kind = item.get("type")
        if kind == "message":
            return Text("")
        if kind == "reasoning":
            return Reasoning(origin=ORIGIN)
        self._has_calls = True
        call = call_from_item({**item, "arguments": "", "input": ""}, self._names)
        return replace(call, arguments={})

    def _delta(self, kind: str, data: JSON, events: list[Event]) -> None:
        delta = data.get("delta")
        if not self._matches(data) or not isinstance(delta, str) or not delta:
            return
        assert self._open is not None
        self._open.chunks.append(delta)
        index = self._open.part_index
        events.append(
            TextDelta(index, delta) if kind in _TEXT_DELTAS else ReasoningDelta(index, delta)
        )

    def _summary_part(self, kind: str, data: JSON, events: list[Event]) -> None:
        if not self._matches(data) or not data.get("summary_index"):
            return
        assert self._open is not None
        if self._open.chunks:  # a blank line between summary parts
            self._open.chunks.append("\n\n")
            events.append(ReasoningDelta(self._open.part_index, "\n\n"))

    def _item_done(self, kind: str, data: JSON, events: list[Event]) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or item.get("type") not in _PART_ITEMS:
            return
        if not self._matches(data):
            self._item_added(kind, data, events)  # done without added: open it first
        self._close(item, events)

    def _close(self, item: JSON, events: list[Event]) -> None:
        """Finish the open part from the final item and what was streamed."""
        assert self._open is not None
        index, streamed = self._open.part_index, "".join(self._open.chunks)
        self._open = None
        kind = item.get("type")
        part: Text | Reasoning | ToolCall
        if kind == "message":
            text = streamed or message_text(item)
            if text and not streamed:
                events.append(TextDelta(index, text))
            part = Text(text)
        elif kind == "reasoning":
            part = reasoning_from_item(item)
            if part.text and not streamed:
                events.append(ReasoningDelta(index, part.text))
            if streamed:
                part = replace(part, text=streamed)
        else:
            part = call_from_item(item, self._names, streamed)
            events.append(ToolArgsDelta(index, dump_arguments(part.arguments)))
        events.append(PartStop(index, part))

    # ------------------------------------------------------------ endings

    def _complete(self, kind: str, data: JSON, events: list[Event]) -> None:
        response = data.get("response")
        response = response if isinstance(response, dict) else {}
        self._start(response, events)
        if self._open is not None:
            self._close(self._open.item, events)
        status = "incomplete" if kind == "response.incomplete" else response.get("status")
        stop = stop_reason(status, response.get("incomplete_details"), self._has_calls)
        events.append(MessageDelta(stop_reason=stop, usage=parse_usage(response.get("usage"))))
        events.append(MessageStop())
        self._finished = True

    def _fail(self, error: Any, events: list[Event]) -> None:
        # No MessageStart is made up here: an error before any output can still become a
        # plain HTTP error (and a fallback) for the client.
        events.append(StreamError(error_from_event(error)))
        self._finished = True


_Handler = Callable[[ResponsesStreamDecoder, str, JSON, list[Event]], None]
_HANDLERS: dict[str, _Handler] = {
    "response.output_text.delta": ResponsesStreamDecoder._delta,
    "response.refusal.delta": ResponsesStreamDecoder._delta,
    "response.reasoning_summary_text.delta": ResponsesStreamDecoder._delta,
    "response.reasoning_text.delta": ResponsesStreamDecoder._delta,
    "response.function_call_arguments.delta": ResponsesStreamDecoder._on_argument_delta,
    "response.custom_tool_call_input.delta": ResponsesStreamDecoder._on_argument_delta,
    "response.reasoning_summary_part.added": ResponsesStreamDecoder._summary_part,
    "response.output_item.added": ResponsesStreamDecoder._item_added,
    "response.output_item.done": ResponsesStreamDecoder._item_done,
    "response.created": ResponsesStreamDecoder._on_lifecycle,
    "response.in_progress": ResponsesStreamDecoder._on_lifecycle,
    "response.completed": ResponsesStreamDecoder._complete,
    "response.incomplete": ResponsesStreamDecoder._complete,
    "response.failed": ResponsesStreamDecoder._on_failed,
    "error": ResponsesStreamDecoder._on_error,
}


def _json(data: str) -> JSON | None:
    if not data or data == "[DONE]":
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
