"""OTLP's protobuf encoding (`http/protobuf`) of the spans traces.py builds, written by hand.

Why by hand: `http/protobuf` is OTLP's default protocol (what OTEL_EXPORTER_OTLP_PROTOCOL
means when unset, and what some backends take alone), and its messages for traces are a
dozen fields of four wire types. The protobuf runtime and the generated opentelemetry-proto
classes (several MB, a C extension) would be a dependency for ~80 lines; the tests decode
what this writes with those very classes (tests/server/test_traces.py).

What this module promises:
- `encode(resource, spans)` takes what traces.py builds for OTLP JSON (the resource's
  attributes, spans as dicts with hex ids, string nanoseconds, typed attribute values) and
  returns an `ExportTraceServiceRequest` message (opentelemetry/proto/collector/trace/v1),
  field numbers as opentelemetry-proto defines them. One encoding, two spellings: the span
  dicts stay the single description of a span.
- Runs in the export thread only: never on the request path.
"""

from __future__ import annotations

import struct
from typing import Any

_MASK64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _MASK64  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    """A length-delimited field: bytes, a string or an embedded message."""
    return _tag(field, 2) + _varint(len(data)) + data


def _text(field: int, text: str) -> bytes:
    return _bytes(field, text.encode()) if text else b""


def _fixed64(field: int, value: int) -> bytes:
    return _tag(field, 1) + struct.pack("<Q", value & _MASK64)


def _any_value(value: dict[str, Any]) -> bytes:
    # AnyValue: string_value 1, bool_value 2, int_value 3 (int64), double_value 4.
    (kind, raw), = value.items()
    if kind == "stringValue":
        return _bytes(1, raw.encode())
    if kind == "boolValue":
        return _tag(2, 0) + _varint(1 if raw else 0)
    if kind == "intValue":
        return _tag(3, 0) + _varint(int(raw))
    if kind == "doubleValue":
        return _tag(4, 1) + struct.pack("<d", raw)
    raise ValueError(f"no protobuf encoding for an attribute of kind {kind}")


def _attributes(field: int, attributes: list[dict[str, Any]]) -> bytes:
    # KeyValue: key 1, value 2.
    return b"".join(_bytes(field, _bytes(1, a["key"].encode()) + _bytes(2, _any_value(a["value"])))
                    for a in attributes)


def _span(span: dict[str, Any]) -> bytes:
    # Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
    # start_time_unix_nano 7, end_time_unix_nano 8, attributes 9, status 15.
    out = [_bytes(1, bytes.fromhex(span["traceId"])), _bytes(2, bytes.fromhex(span["spanId"])),
           _text(3, span.get("traceState", ""))]
    parent = span.get("parentSpanId")
    if parent:
        out.append(_bytes(4, bytes.fromhex(parent)))
    out += [_text(5, span["name"]), _tag(6, 0) + _varint(span["kind"]),
            _fixed64(7, int(span["startTimeUnixNano"])),
            _fixed64(8, int(span["endTimeUnixNano"])),
            _attributes(9, span["attributes"])]
    status = span.get("status")
    if status is not None:  # Status: message 2, code 3
        out.append(_bytes(15, _text(2, status.get("message", ""))
                          + _tag(3, 0) + _varint(status["code"])))
    return b"".join(out)


def encode(resource: list[dict[str, Any]], scope: str, spans: list[dict[str, Any]]) -> bytes:
    """ExportTraceServiceRequest { resource_spans 1: ResourceSpans { resource 1: Resource
    { attributes 1 }, scope_spans 2: ScopeSpans { scope 1: InstrumentationScope { name 1 },
    spans 2 } } }."""
    scope_spans = _bytes(1, _text(1, scope)) + b"".join(_bytes(2, _span(s)) for s in spans)
    resource_spans = _bytes(1, _attributes(1, resource)) + _bytes(2, scope_spans)
    return _bytes(1, resource_spans)
