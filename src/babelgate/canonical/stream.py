"""Canonical stream events, and an accumulator that folds them into a Response.

The contract every stream decoder keeps and every stream encoder may rely on:
- `MessageStart` comes first, exactly once; `MessageStop` (or `StreamError`) comes last.
- Parts are sequential: `PartStart(i)`, its deltas, `PartStop(i)`, and only then
  `PartStart(i + 1)`. Indexes count from 0 within the response.
- `PartStart.part` is the part with empty content (a ToolCall carries its id, name, kind and
  `provider_metadata` — clients that get the call id at the start need them there —
  with `arguments` empty); deltas add to it; `PartStop.part` is the finished part (text joined,
  tool arguments parsed and repaired, signatures set).
- `ToolArgsDelta.json` fragments concatenate to valid JSON for the call's arguments: decoders
  repair broken upstream JSON before emitting it, never after.
- `MessageDelta` comes once, after the last part, with the stop reason and the final,
  cumulative usage.
"""

from __future__ import annotations

import msgspec

from .errors import GatewayError
from .model import NO_USAGE, Part, Reasoning, Response, StopReason, Text, ToolCall, Usage


class MessageStart(msgspec.Struct, frozen=True, gc=False):
    id: str
    model: str
    usage: Usage = NO_USAGE  # input tokens when the upstream told us


class PartStart(msgspec.Struct, frozen=True, gc=False):
    index: int
    part: Text | Reasoning | ToolCall


# Every event is a frozen msgspec struct, as the canonical values are (see model.py): built
# in C, and a decoder can make a run of deltas with one map().
class TextDelta(msgspec.Struct, frozen=True, gc=False):
    index: int
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, gc=False):
    index: int
    text: str


class SignatureDelta(msgspec.Struct, frozen=True, gc=False):
    index: int
    signature: str


class ToolArgsDelta(msgspec.Struct, frozen=True, gc=False):
    index: int
    json: str


class PartStop(msgspec.Struct, frozen=True, gc=False):
    index: int
    part: Text | Reasoning | ToolCall


class MessageDelta(msgspec.Struct, frozen=True, gc=False):
    stop_reason: StopReason | None
    usage: Usage
    stop_sequence: str | None = None


class MessageStop(msgspec.Struct, frozen=True, gc=False):
    pass


class StreamError(msgspec.Struct, frozen=True):
    # Tracked by the collector (no gc=False): an exception's traceback may lead back here.
    error: GatewayError


Event = (
    MessageStart
    | PartStart
    | TextDelta
    | ReasoningDelta
    | SignatureDelta
    | ToolArgsDelta
    | PartStop
    | MessageDelta
    | MessageStop
    | StreamError
)


class Accumulator:
    """Folds a canonical event stream into a Response (for a non-streaming client served by
    a streaming upstream, and for reading usage off any stream)."""

    __slots__ = ("error", "id", "model", "parts", "stop_reason", "stop_sequence", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.parts: list[Part] = []
        self.stop_reason: StopReason | None = None
        self.stop_sequence: str | None = None
        self.usage = Usage()
        self.error: GatewayError | None = None

    def feed(self, event: Event) -> None:
        if isinstance(event, PartStop):
            self.parts.append(event.part)
        elif isinstance(event, MessageDelta):
            self.stop_reason = event.stop_reason
            self.stop_sequence = event.stop_sequence
            self.usage = event.usage
        elif isinstance(event, MessageStart):
            self.id, self.model, self.usage = event.id, event.model, event.usage
        elif isinstance(event, StreamError):
            self.error = event.error

    def response(self) -> Response:
        if self.error is not None:
            raise self.error
        return Response(
            id=self.id,
            model=self.model,
            parts=tuple(self.parts),
            stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
            usage=self.usage,
        )


def response_events(response: Response) -> list[Event]:
    """The event sequence that streams `response` (for an upstream that answered a stream
    request with a whole body, and for tests)."""
    from .tool_args import dump_arguments  # local: keeps this module's import graph flat

    events: list[Event] = [MessageStart(response.id, response.model, _input_usage(response.usage))]
    index = 0
    for part in response.parts:
        if isinstance(part, Text):
            if not part.text:
                continue
            events += [PartStart(index, Text("")), TextDelta(index, part.text)]
        elif isinstance(part, Reasoning):
            start = Reasoning(origin=part.origin, redacted=part.redacted)
            events.append(PartStart(index, start))
            if part.text:
                events.append(ReasoningDelta(index, part.text))
            if part.signature:
                events.append(SignatureDelta(index, part.signature))
        elif isinstance(part, ToolCall):
            start_call = ToolCall(part.id, part.name, {}, part.kind, part.provider_metadata)
            events += [
                PartStart(index, start_call),
                ToolArgsDelta(index, dump_arguments(part.arguments)),
            ]
        else:
            continue
        events.append(PartStop(index, part))
        index += 1
    events += [
        MessageDelta(response.stop_reason, response.usage, response.stop_sequence),
        MessageStop(),
    ]
    return events


def _input_usage(usage: Usage) -> Usage:
    """What message_start knows: the input side only."""
    return Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
