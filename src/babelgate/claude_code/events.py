"""The CLI's stream-json output of one turn, as canonical stream events.

`claude -p --output-format stream-json --verbose --include-partial-messages` writes one JSON
object a line: `system` lines (init, status), `stream_event` lines wrapping the Anthropic
Messages stream of each API call it makes, `assistant` and `user` lines with whole messages
(its tool calls and their results), and one `result` line that ends the turn with the
turn's usage and cost. One turn may hold several API calls (the CLI's own tool loop); the
client sees one message: the first call's start, then the text and thinking of every call,
numbered anew; the CLI's tool calls stay inside the CLI (a client would try to run them).
The usage and stop reason come from the `result` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    SignatureDelta,
    Text,
    TextDelta,
    Usage,
)
from babelgate.canonical.errors import kind_for_status
from babelgate.canonical.model import StopReason

from .chunking import Chunker, Chunking

_STOP_REASONS: frozenset[str] = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "pause_turn", "refusal"})

JSON = dict[str, Any]


@dataclass(slots=True, frozen=True)
class TurnResult:
    """What the `result` line says of the whole turn."""

    usage: Usage
    cost_usd: float
    session_id: str | None
    text: str


class TurnReader:
    """Feed it each output line (parsed) of one turn; it gives the canonical events, and
    `result` once the turn has ended. Raises GatewayError for a turn the CLI ended in
    error."""

    __slots__ = ("_chunker", "_index", "_kind", "_open", "_signature", "_stop", "_text",
                 "id", "model", "result", "session_id", "started")

    def __init__(self, model: str, chunking: Chunking = "token") -> None:
        self.model = model
        self.id = ""
        self.started = False
        self.session_id: str | None = None
        self.result: TurnResult | None = None
        self._chunker = Chunker(chunking)
        self._index = 0  # the next canonical part's index
        self._open: int | None = None  # the CLI's index of the block being passed on
        self._kind = ""
        self._text: list[str] = []
        self._signature: str | None = None
        self._stop: StopReason = "end_turn"

    def feed(self, line: JSON) -> list[Event]:
        kind = line.get("type")
        if kind == "stream_event":
            event = line.get("event")
            return self._stream_event(event) if isinstance(event, dict) else []
        if kind == "system" and line.get("subtype") == "init":
            session = line.get("session_id")
            self.session_id = session if isinstance(session, str) else None
            return []
        if kind == "result":
            return self._result(line)
        return []

    # ------------------------------------------------------------------ the API calls
    def _stream_event(self, event: JSON) -> list[Event]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_stop":
            return self._block_stop(event)
        if kind == "message_start":
            return self._start(event.get("message") or {})
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason in _STOP_REASONS:
                self._stop = reason
        return []

    def _start(self, message: JSON) -> list[Event]:
        if self.started:  # a later API call of the same turn: its parts join the message
            return []
        self.started = True
        self.id = str(message.get("id") or "")
        return [MessageStart(self.id, self.model, usage_of(message.get("usage") or {}))]

    def _block_start(self, event: JSON) -> list[Event]:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind not in ("text", "thinking", "redacted_thinking"):
            return []  # the CLI's own tool calls (and server tools) stay with it
        self._open, self._kind = event.get("index"), kind
        self._text, self._signature = [], None
        part: Text | Reasoning
        if kind == "text":
            part = Text("")
        elif kind == "thinking":
            part = Reasoning(origin="anthropic")
        else:
            part = Reasoning(origin="anthropic", redacted=str(block.get("data") or ""))
        return [PartStart(self._index, part)]

    def _delta(self, event: JSON) -> list[Event]:
        if self._open is None or event.get("index") != self._open:
            return []
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text") or "")
            self._text.append(text)
            out = self._chunker.feed(text)
            return [TextDelta(self._index, out)] if out else []
        if kind == "thinking_delta":
            text = str(delta.get("thinking") or "")
            self._text.append(text)
            return [ReasoningDelta(self._index, text)] if text else []
        if kind == "signature_delta":
            self._signature = str(delta.get("signature") or "")
            return [SignatureDelta(self._index, self._signature)]
        return []

    def _block_stop(self, event: JSON) -> list[Event]:
        if self._open is None or event.get("index") != self._open:
            return []
        index, self._open = self._index, None
        self._index += 1
        text = "".join(self._text)
        if self._kind == "text":
            rest = self._chunker.flush()
            events: list[Event] = [TextDelta(index, rest)] if rest else []
            events.append(PartStop(index, Text(text)))
            return events
        part = Reasoning(text=text, signature=self._signature, origin="anthropic")
        return [PartStop(index, part)]

    # ------------------------------------------------------------------ the end
    def _result(self, line: JSON) -> list[Event]:
        usage = usage_of(line.get("usage") or {})
        session = line.get("session_id")
        text = line.get("result")
        self.result = TurnResult(usage, turn_cost(line),
                                 session if isinstance(session, str) else self.session_id,
                                 text if isinstance(text, str) else "")
        if line.get("is_error") or line.get("subtype") not in (None, "success"):
            raise turn_error(line)
        events: list[Event] = []
        if not self.started:  # a turn that made no API call (a local command)
            events.append(self._start({}) [0])
            if self.result.text:
                events += [PartStart(0, Text("")), TextDelta(0, self.result.text),
                           PartStop(0, Text(self.result.text))]
        events += [MessageDelta(self._stop, usage), MessageStop()]
        return events


def turn_cost(line: JSON) -> float:
    """The turn's cost in USD. `total_cost_usd` counts the whole session, turns before a
    --resume included; `model_usage_since_last_result` has this turn's, per model."""
    since = line.get("model_usage_since_last_result")
    if isinstance(since, dict) and since:
        costs = [m.get("costUSD") for m in since.values() if isinstance(m, dict)]
        return float(sum(c for c in costs if isinstance(c, int | float)))
    total = line.get("total_cost_usd")
    return float(total) if isinstance(total, int | float) else 0.0


def usage_of(data: JSON) -> Usage:
    """An Anthropic-style usage object (the CLI's result line, a message_start) as Usage."""
    details = data.get("output_tokens_details") or {}
    return Usage(
        input_tokens=_count(data.get("input_tokens")),
        output_tokens=_count(data.get("output_tokens")),
        cache_read_tokens=_count(data.get("cache_read_input_tokens")),
        cache_write_tokens=_count(data.get("cache_creation_input_tokens")),
        reasoning_tokens=_count(details.get("thinking_tokens") if isinstance(details, dict)
                                else None),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def turn_error(line: JSON) -> GatewayError:
    """The error a `result` line reports: the status of the CLI's failed API call when it
    says one, else a 502 (the CLI, our upstream, failed)."""
    status = line.get("api_error_status")
    text = line.get("result")
    errors = line.get("errors")
    detail = text if isinstance(text, str) and text else (
        "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors
        else str(line.get("subtype") or "error"))
    message = f"Claude Code ended the turn with an error: {detail[:500]}"
    if isinstance(status, int) and 400 <= status < 600:
        return GatewayError(kind_for_status(status), message, status=status)
    return GatewayError("connection", message, status=502)
