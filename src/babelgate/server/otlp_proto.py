"""OTLP's protobuf encoding (`http/protobuf`) of the spans traces.py builds, written by hand.

Why by hand: `http/protobuf` is OTLP's default protocol (what OTEL_EXPORTER_OTLP_PROTOCOL
means when unset, and what some backends take alone), and its messages for traces are a
dozen fields of four wire types. The protobuf runtime and the generated opentelemetry-proto
classes (several MB, a C extension) would be a dependency for ~80 lines; the tests decode
what this writes with those very classes (tests/server/test_traces.py).

What this module promises:
- `Encoder().encode(resource, scope, spans)` takes what traces.py builds (attributes as
  (name, value) pairs, spans as dicts with hex ids and integer nanoseconds) and returns an
  `ExportTraceServiceRequest` message (opentelemetry/proto/collector/trace/v1), field
  numbers as opentelemetry-proto defines them. traces.py spells the same spans as OTLP
  JSON: the span dicts stay the single description of a span.
- Runs in the export thread only: never on the request path.
"""

from __future__ import annotations

import struct
from typing import Any

_MASK64 = (1 << 64) - 1


def _slow_varint(value: int) -> bytes:
    value &= _MASK64  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths and small numbers are nearly all below 2**14: their varints, looked up.
_SMALL = tuple(_slow_varint(n) for n in range(1 << 14))


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else _slow_varint(value)


def _bytes(field: int, data: bytes) -> bytes:
    """A length-delimited field (field numbers here are below 16: a one-byte tag)."""
    return _TAG[field] + _varint(len(data)) + data


def _text(field: int, text: str) -> bytes:
    return _bytes(field, text.encode()) if text else b""


_FIXED64 = struct.Struct("<Q").pack  # times: unsigned nanoseconds
_TAG = {field: bytes((field << 3 | 2,)) for field in range(1, 16)}  # length-delimited


def _any_value(value: Any) -> bytes:
    """The AnyValue message: string_value 1, bool_value 2, int_value 3 (int64),
    double_value 4."""
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    raw = str(value).encode()
    return b"\x0a" + _varint(len(raw)) + raw


_DOUBLE = struct.Struct("<d").pack


# Attributes whose values repeat (remembered) or never do (not remembered); other numbers
# (tokens, costs, times) are not remembered either.
REPEATING = frozenset({"http.response.status_code", "server.port"})
UNIQUE = frozenset({"babelgate.request_id"})


class Encoder:
    """Encodes export requests; remembers the encoding of attributes seen (most repeat from
    span to span: the operation, providers, models, clients, statuses), up to `memo` of
    them, so that most of a span's attributes are one dict lookup each. Used by one
    thread."""

    def __init__(self, memo: int = 4096) -> None:
        self.memo = memo
        self._known: dict[tuple[str, Any], bytes] = {}
        self._names: dict[str, bytes] = {}  # attribute names are a fixed few: not bounded

    def _attributes(self, field: int, attributes: list[tuple[str, Any]]) -> bytes:
        # KeyValue: key 1, value 2; each one `field` of the enclosing message.
        known = self._known
        out = []
        for attribute in attributes:
            encoded = known.get(attribute)
            if encoded is None:
                encoded = self._new(field, attribute)
            out.append(encoded)
        return b"".join(out)

    def _new(self, field: int, attribute: tuple[str, Any]) -> bytes:
        key, value = attribute
        name = self._names.get(key)
        if name is None:  # KeyValue's key field, the same for every value of that name
            raw = key.encode()
            name = self._names[key] = b"\x0a" + _varint(len(raw)) + raw
        inner = _any_value(value)
        pair = name + b"\x12" + _varint(len(inner)) + inner
        encoded = _TAG[field] + _varint(len(pair)) + pair
        if key in REPEATING or (isinstance(value, str | bool) and key not in UNIQUE):
            known = self._known
            if len(known) >= self.memo:
                known.clear()  # more distinct values than expected: start again
            # (name, True) and (name, 1) are one key: a name never takes both kinds.
            known[attribute] = encoded
        return encoded

    def _span(self, span: dict[str, Any]) -> bytes:
        # Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
        # start_time_unix_nano 7, end_time_unix_nano 8, attributes 9, status 15.
        out = [b"\x0a\x10", bytes.fromhex(span["traceId"]),
               b"\x12\x08", bytes.fromhex(span["spanId"])]
        state = span.get("traceState")
        if state:
            out.append(_text(3, state))
        parent = span.get("parentSpanId")
        if parent:
            out += [b"\x22\x08", bytes.fromhex(parent)]
        out += [_text(5, span["name"]), b"\x30", _varint(span["kind"]),
                b"\x39", _FIXED64(span["start"]), b"\x41", _FIXED64(span["end"]),
                self._attributes(9, span["attributes"])]
        status = span.get("status")
        if status is not None:  # Status: message 2, code 3
            out.append(_bytes(15, _text(2, status.get("message", ""))
                              + b"\x18" + _varint(status["code"])))
        return b"".join(out)

    def encode(self, resource: list[tuple[str, Any]], scope: str,
               spans: list[dict[str, Any]]) -> bytes:
        """ExportTraceServiceRequest { resource_spans 1: ResourceSpans { resource 1: Resource
        { attributes 1 }, scope_spans 2: ScopeSpans { scope 1: InstrumentationScope
        { name 1 }, spans 2 } } }."""
        scope_spans = _bytes(1, _text(1, scope)) + b"".join(
            _bytes(2, self._span(s)) for s in spans)
        resource_spans = _bytes(1, self._attributes(1, resource)) + _bytes(2, scope_spans)
        return _bytes(1, resource_spans)


def encode(resource: list[tuple[str, Any]], scope: str, spans: list[dict[str, Any]]) -> bytes:
    """One export request, without remembering anything (see Encoder)."""
    return Encoder().encode(resource, scope, spans)
