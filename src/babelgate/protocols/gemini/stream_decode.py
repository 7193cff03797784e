"""Gemini `:streamGenerateContent?alt=sse` body -> canonical events.

Each SSE `data:` line is a whole GenerateContentResponse chunk. What the decoder promises,
on top of canonical/stream.py's contract:
- Text and thought text stream as deltas; consecutive chunks of the same kind extend the
  open part. A functionCall arrives whole: PartStart, one ToolArgsDelta, PartStop.
- A thoughtSignature on a thought chunk -> SignatureDelta on the open reasoning part; on a
  text chunk -> the text part closes and an empty Reasoning part carrying the signature
  follows (the same shape parse_response gives, see response.py).
- Usage comes from the last chunk that had usageMetadata; MessageStart carries the prompt
  side of the first one (Claude Code reads input tokens there).
- MessageDelta and MessageStop come when the body ends. A chunk with `error`, a body that
  ends without a finishReason (and no blocked prompt), or a failed function call ->
  StreamError, and nothing after it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson
from msgspec.structs import asdict, replace

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
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
)
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import dump_arguments
from babelgate.protocols.reuse import Reuse
from babelgate.protocols.sse import SSEEvent
from babelgate.protocols.sse_decoder import SSEStreamDecoder

from .errors import error_from_body
from .parts import BARE_THOUGHT, ORIGIN
from .response import (
    ToolNames,
    first_candidate,
    is_blocked,
    parse_function_call,
    parse_usage,
    stop_reason,
    tool_names,
)

JSON = dict[str, Any]


# A typed view of a chunk with every field the general path (_data, _chunk, _part) reads.
# The typed views hold decoded JSON only, which cannot make a cycle: gc=False.
class _Part(msgspec.Struct, gc=False):
    text: Any = None
    thought: Any = None
    thoughtSignature: Any = None  # field names are Gemini's
    functionCall: Any = msgspec.UNSET  # present at all: a call


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct, gc=False):
    content: _Content | None = None
    finishReason: Any = None


# A count that orjson reads as this int (past 64 bits it reads a float, which parse_usage
# would round differently; msgspec bounds stop at int64): anything else (null aside) fails
# the view, and the general path reads the chunk.
_Count = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Usage(msgspec.Struct, gc=False):
    """The counts parse_usage reads (as a dict: msgspec.structs.asdict)."""

    promptTokenCount: _Count | None = None
    cachedContentTokenCount: _Count | None = None
    thoughtsTokenCount: _Count | None = None
    candidatesTokenCount: _Count | None = None


class _Chunk(msgspec.Struct, gc=False):
    candidates: list[_Candidate] | None = None
    usageMetadata: _Usage | msgspec.UnsetType | None = msgspec.UNSET
    promptFeedback: Any = None
    error: Any = msgspec.UNSET  # present at all, even null: an error chunk
    responseId: Any = None
    modelVersion: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _piece(chunk: _Chunk) -> tuple[str, Any] | None:
    """The text and finishReason of a chunk that carries one text part and nothing else
    (but usage, its id and model), else None."""
    candidates = chunk.candidates
    if chunk.error is not msgspec.UNSET or chunk.promptFeedback is not None or not candidates:
        return None
    candidate = candidates[0]
    content = candidate.content
    if content is None or not content.parts or len(content.parts) != 1:
        return None
    part = content.parts[0]
    text = part.text
    if (
        type(text) is not str
        or not text
        or part.thought
        or part.thoughtSignature
        or part.functionCall is not msgspec.UNSET
    ):
        return None
    return text, candidate.finishReason


def _read_text(data: bytes) -> str | None:
    """The text of a bare text chunk (one that does not finish the stream), as on_data reads
    it."""
    try:
        piece = _piece(_decode_chunk(data))
    except ValueError:
        return None
    return piece[0] if piece is not None and piece[1] is None else None


_TEXT_KEYS = (b'"text"',)


class GeminiStreamDecoder(SSEStreamDecoder):
    input_at_start = True  # the first chunk's usageMetadata
    __slots__ = (
        "_blocked",
        "_done",
        "_finish",
        "_has_calls",
        "_index",
        "_model",
        "_names",
        "_open",
        "_open_kind",
        "_pieces",
        "_request",
        "_reuse",
        "_started",
        "_usage_meta",
    )

    def __init__(self, request: Request, reuse: Reuse) -> None:
        super().__init__()
        # Made at the first function call, if any (most streams have none).
        self._names: ToolNames | None = None
        self._request, self._reuse = request, reuse
        self._model = request.model
        self._started = False
        self._done = False  # an error was emitted: ignore the rest
        self._index = 0  # index of the next part
        self._open: Text | Reasoning | None = None
        self._open_kind = ""  # "text" | "thought"
        # The open part's text so far, joined when it closes: adding to a string each chunk
        # would copy the whole text again every time.
        self._pieces: list[str] = []
        self._has_calls = False
        self._finish: str | None = None
        self._blocked = False
        self._usage_meta: Any = None

    def on_event(self, event: SSEEvent, events: list[Event], at_end: bool) -> None:
        self._data(event.data, events, at_end=at_end)

    def on_data(self, data: bytes, events: list[Event]) -> None:
        if not self._done:
            # Most chunks are one piece of text (the first with the stream's id and model,
            # the last with its finishReason): read through a typed view that builds nothing
            # else; anything more takes the general path.
            try:
                chunk = _decode_chunk(data)
            except ValueError:  # not JSON, or bad UTF-8 in it: the general path decides
                chunk = None
            if chunk is not None and self._text_chunk(chunk, events):
                if self._finish is None:  # more pieces to come: learn their bytes
                    self._expect_more(data)
                return
        before = len(events)
        self._data(data, events)  # JSON is read from the bytes as well as from text
        if (
            self._open_kind == "text"
            and self._finish is None  # no more pieces expected: nothing to learn
            and len(events) > before
            and type(events[-1]) is TextDelta
        ):
            self._expect_more(data)  # the first piece of a part, or of a stream

    def _text_chunk(self, chunk: _Chunk, events: list[Event]) -> bool:
        """Take a chunk of one piece of text as _chunk would; False, with nothing done, for
        any other."""
        piece = _piece(chunk)
        if piece is None:
            return False
        usage = chunk.usageMetadata
        if usage is not msgspec.UNSET:
            self._usage_meta = None if usage is None else asdict(usage)
        if not self._started:
            self._started = True
            events.append(
                MessageStart(
                    id=chunk.responseId or new_id("msg_"),
                    model=chunk.modelVersion or self._model,
                    usage=parse_usage(self._usage_meta),
                )
            )
        text, finish = piece
        if self._open_kind != "text":
            self._ensure_open("text", events)
        self._pieces.append(text)
        events.append(TextDelta(self._index, text))
        if finish:
            self._finish = finish
        return True

    def _expect_more(self, data: bytes) -> None:
        """After a chunk that left a piece in the open text: chunks that differ only in the
        text (their usage is the same, so noting it again changes nothing) can skip the
        typed view too (see SSEStreamDecoder.expect_more)."""
        self.expect_more(data, _TEXT_KEYS, _read_text, self._pieces, TextDelta, self._index)

    def on_end(self, events: list[Event]) -> None:
        if self._done:
            return
        self._done = True
        if self._finish is None and not self._blocked:
            events.append(_error("Gemini stream ended without a finishReason"))
            return
        try:
            reason = stop_reason(self._finish, self._has_calls, blocked=self._blocked)
        except GatewayError as error:
            events.append(StreamError(error))
            return
        self._close_open(events)
        events.append(MessageDelta(stop_reason=reason, usage=parse_usage(self._usage_meta)))
        events.append(MessageStop())

    # ------------------------------------------------ one chunk

    def _data(self, data: str | bytes, events: list[Event], *, at_end: bool = False) -> None:
        if self._done or not data.strip():
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = (
                "Gemini stream ended in the middle of a chunk"
                if at_end
                else "Gemini sent a stream chunk that is not JSON"
            )
            self._fail(events, _error(message))
            return
        if isinstance(chunk, list) and chunk:  # an error body is sometimes an array
            chunk = chunk[0]
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self._fail(events, StreamError(error_from_body(chunk, None)))
            return
        self._chunk(chunk, events)

    def _chunk(self, chunk: JSON, events: list[Event]) -> None:
        if "usageMetadata" in chunk:
            self._usage_meta = chunk["usageMetadata"]
        if not self._started:
            self._started = True
            events.append(
                MessageStart(
                    id=chunk.get("responseId") or new_id("msg_"),
                    model=chunk.get("modelVersion") or self._model,
                    usage=parse_usage(self._usage_meta),
                )
            )
        self._blocked = self._blocked or is_blocked(chunk)
        candidate = first_candidate(chunk)
        if candidate is None:
            return
        for raw in (candidate.get("content") or {}).get("parts") or []:
            if isinstance(raw, dict):
                self._part(raw, events)
        if candidate.get("finishReason"):
            self._finish = candidate["finishReason"]

    def _part(self, raw: JSON, events: list[Event]) -> None:
        if "functionCall" in raw:
            self._function_call(raw, events)
            return
        text = raw.get("text")
        text = text if isinstance(text, str) else ""
        signature = raw.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        if raw.get("thought"):
            self._thought(text, signature, events)
        else:
            self._text(text, signature, events)

    def _thought(self, text: str, signature: str | None, events: list[Event]) -> None:
        if not text:
            if signature and self._open_kind == "thought":
                self._sign_open(signature, events)
            elif signature:  # a thought part that is only a signature
                self._signature_part(signature, dict(BARE_THOUGHT), events)
            return
        self._ensure_open("thought", events)
        self._pieces.append(text)
        events.append(ReasoningDelta(self._index, text))
        if signature:
            self._sign_open(signature, events)

    def _sign_open(self, signature: str, events: list[Event]) -> None:
        assert isinstance(self._open, Reasoning)
        self._open = replace(self._open, signature=signature)
        events.append(SignatureDelta(self._index, signature))

    def _signature_part(self, signature: str, metadata: JSON | None, events: list[Event]) -> None:
        """A whole part that holds only a signature: PartStart, SignatureDelta, PartStop."""
        self._close_open(events)
        start = Reasoning(origin=ORIGIN, provider_metadata=metadata)
        done = Reasoning(signature=signature, origin=ORIGIN, provider_metadata=metadata)
        events.append(PartStart(self._index, start))
        events.append(SignatureDelta(self._index, signature))
        events.append(PartStop(self._index, done))
        self._index += 1

    def _text(self, text: str, signature: str | None, events: list[Event]) -> None:
        if text:
            self._ensure_open("text", events)
            self._pieces.append(text)
            events.append(TextDelta(self._index, text))
        if signature:  # a text part's signature: see response.py
            self._signature_part(signature, None, events)

    def _function_call(self, raw: JSON, events: list[Event]) -> None:
        self._close_open(events)
        if self._names is None:
            # Clients send the same tools every turn: the names are mapped once per shared
            # list.
            self._names = self._reuse.derive(tool_names, self._request.tools)
        call = parse_function_call(raw, self._names)
        self._has_calls = True
        start = ToolCall(
            id=call.id, name=call.name, kind=call.kind, provider_metadata=call.provider_metadata
        )
        events.append(PartStart(self._index, start))
        events.append(ToolArgsDelta(self._index, dump_arguments(call.arguments)))
        events.append(PartStop(self._index, call))
        self._index += 1

    # ------------------------------------------------ part bookkeeping

    def _ensure_open(self, kind: str, events: list[Event]) -> Text | Reasoning:
        if self._open is not None and self._open_kind == kind:
            return self._open
        self._close_open(events)
        part: Text | Reasoning = Text(text="") if kind == "text" else Reasoning(origin=ORIGIN)
        events.append(PartStart(self._index, part))
        self._open, self._open_kind = part, kind
        return part

    def _close_open(self, events: list[Event]) -> None:
        if self._open is None:
            return
        part = self._open
        if self._pieces:
            part = replace(part, text="".join(self._pieces))
            self._pieces = []
        events.append(PartStop(self._index, part))
        self._open = None
        self._open_kind = ""
        self._index += 1

    def _fail(self, events: list[Event], error: StreamError) -> None:
        self._done = True
        events.append(error)


def _error(message: str) -> StreamError:
    # A stream that breaks the protocol: the upstream's fault, a 502.
    return StreamError(GatewayError("api_error", message, status=502, upstream=ORIGIN))
