"""OpenTelemetry traces of requests, with the GenAI semantic conventions, from the books.

What this module promises:
- `Traces` is a RecordSink (books/record.py): `record(rec)` on the request path appends the
  attempt's frozen usage record to a list, nothing else. Every `delay` seconds (or once
  `max_batch` records wait) a timer on the event loop hands the list to one export thread,
  which turns records into spans, encodes them as OTLP protobuf (otlp_proto.py) or JSON and
  posts them (otlp.py).
- Each request is one trace: a SERVER span named `chat {requested model}` for the request
  (from its first attempt's start to its final attempt's end) and a CLIENT span named
  `chat {target model}` for each upstream attempt, its child. A request refused before any
  upstream (auth, limits, no route) is a request span alone.
- A caller's W3C `traceparent` is honoured (books/trace_context.py): the request's span is
  a child of the caller's span, in the caller's trace; each upstream request carries a
  `traceparent` naming its attempt's span, so the upstream's own spans join the trace too.
  A caller that says "not sampled" gets no spans sent (the parent-based sampling
  OpenTelemetry SDKs do by default); its trace context is still passed on.
- Attributes: gen_ai.operation.name (`chat`), gen_ai.provider.name and gen_ai.system (the
  provider's name in the configuration), gen_ai.request.model, gen_ai.response.model (the
  target model, on answers), gen_ai.usage.input_tokens (cache reads and writes included,
  as the conventions count them) and gen_ai.usage.output_tokens,
  gen_ai.usage.cache_read.input_tokens / gen_ai.usage.cache_creation.input_tokens when
  non-zero, server.address / server.port (the upstream's), http.response.status_code,
  error.type (babelgate's error kind) with the span's status ERROR; and babelgate.* for what
  has no convention (request id, key name, client, route, cost in USD, time to first token).
  Never a key, never a body.
- More than `max_queue` records waiting (a collector that cannot keep up) are dropped and
  counted in the next WARNING, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from babelgate.books.record import UsageRecord

from . import otlp_proto
from .otlp import PROTOBUF, OtlpConfig, post

log = logging.getLogger("babelgate")

SCOPE = "babelgate"  # the instrumentation scope's name
SERVER, CLIENT = 2, 3  # OTLP span kinds
STATUS_ERROR = 2
DEFAULT_PORTS = {"http": 80, "https": 443}



class Upstream(Protocol):
    @property
    def base_url(self) -> str: ...


# The running configuration's providers by name (server.address and server.port come from
# their base URLs), read when exporting.
Upstreams = Callable[[], Mapping[str, Upstream]]


# Spans are built once, in a form of our own that both encodings read: attributes as
# (name, value) pairs (the protobuf encoder finds most of them again by the pair alone),
# times as integer nanoseconds; `_json_span` spells a span as OTLP JSON.
Attribute = tuple[str, str | int | float | bool]


def _attribute(name: str, value: str | int | float | bool) -> Attribute:
    return (name, value)


def _json_attribute(attribute: Attribute) -> dict[str, Any]:
    name, value = attribute
    if isinstance(value, bool):
        return {"key": name, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": name, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": name, "value": {"doubleValue": value}}
    return {"key": name, "value": {"stringValue": value}}


def _json_span(span: dict[str, Any]) -> dict[str, Any]:
    out = dict(span)
    out["startTimeUnixNano"] = str(out.pop("start"))
    out["endTimeUnixNano"] = str(out.pop("end"))
    out["attributes"] = [_json_attribute(a) for a in span["attributes"]]
    return out


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def _shared(rec: UsageRecord, model: str) -> list[Attribute]:
    """What the request's span and its attempts' say alike (`model`: the one asked for)."""
    return [_attribute("gen_ai.operation.name", "chat"),
            _attribute("gen_ai.request.model", model),
            _attribute("http.response.status_code", rec.status),
            _attribute("babelgate.request_id", rec.request_id)]


def _provider(rec: UsageRecord) -> list[Attribute]:
    # gen_ai.system: the older name, which some tracing backends still read.
    return [_attribute("gen_ai.provider.name", rec.provider),
            _attribute("gen_ai.system", rec.provider)]


class Traces:
    """The trace sink (RecordSink): see the module docstring."""

    def __init__(self, config: OtlpConfig, upstreams: Upstreams,
                 send: Callable[[OtlpConfig, bytes], bool] = post) -> None:
        self.config = config
        self.upstreams = upstreams
        self.send = send
        self._pending: list[UsageRecord] = []
        self._scheduled = False
        self._dropped = 0
        self._exporter: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None
        # The export thread's own state: requests whose final attempt has not come yet
        # (their first attempt's start and span ids), and a salt so ids differ by process.
        self._open: dict[str, float] = {}
        self._salt = os.urandom(8)
        self._addresses: dict[str, tuple[str, int]] = {}
        self._addresses_from: Mapping[str, Upstream] | None = None
        self._protobuf = otlp_proto.Encoder()

    # ------------------------------------------------------------------ the request path
    def record(self, rec: UsageRecord) -> None:
        trace = rec.trace
        if trace is not None and not trace.sampled:  # the caller's choice: not this trace
            return
        pending = self._pending
        if len(pending) >= self.config.max_queue:
            self._dropped += 1
            return
        pending.append(rec)
        try:
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_later(self.config.delay, self.hand_off)
            elif len(pending) == self.config.max_batch:
                asyncio.get_running_loop().call_soon(self.hand_off)
        except RuntimeError:  # no loop (a synchronous caller): export now, here
            self._scheduled = False
            batch, self._pending = self._pending, []
            self.export(batch)

    def hand_off(self) -> None:
        """Give what gathered to the export thread (on the event loop)."""
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        dropped, self._dropped = self._dropped, 0
        if self._exporter is None:
            self._exporter = ThreadPoolExecutor(1, thread_name_prefix="babelgate-traces")
        self._last = self._exporter.submit(self.export, batch, dropped)

    async def close(self) -> None:
        """Send what is queued, then stop the thread."""
        self.hand_off()
        if self._exporter is not None:
            if self._last is not None:
                await asyncio.wrap_future(self._last)
            self._exporter.shutdown(wait=False)
            self._exporter = None

    # ------------------------------------------------------------------ the export thread
    def export(self, batch: list[UsageRecord], dropped: int = 0) -> None:
        if dropped:
            log.warning("OpenTelemetry: %d spans dropped (more than %d waiting)", dropped,
                        self.config.max_queue)
        for start in range(0, len(batch), self.config.max_batch):
            spans: list[dict[str, Any]] = []
            for rec in batch[start:start + self.config.max_batch]:
                self._spans_of(rec, spans)
            self.send(self.config, self.encode(spans))

    def encode(self, spans: list[dict[str, Any]]) -> bytes:
        """The export request, in the configured protocol's encoding."""
        resource: list[Attribute] = list(self.config.resource)
        if self.config.protocol == PROTOBUF:
            return self._protobuf.encode(resource, SCOPE, spans)
        return orjson.dumps({"resourceSpans": [{
            "resource": {"attributes": [_json_attribute(a) for a in resource]},
            "scopeSpans": [{"scope": {"name": SCOPE},
                            "spans": [_json_span(span) for span in spans]}],
        }]})

    def _ids(self, request_id: str) -> tuple[str, str]:
        """The request's trace id and its SERVER span's id, the same for all its records."""
        digest = hashlib.blake2b(request_id.encode(), key=self._salt, digest_size=24).hexdigest()
        return digest[:32], digest[32:]

    def _spans_of(self, rec: UsageRecord, spans: list[dict[str, Any]]) -> None:
        trace = rec.trace
        if trace is not None:  # the request's context (the caller's trace, if it sent one)
            trace_id, request_span, caller = trace.trace_id, trace.span_id, trace.parent_id
        else:
            trace_id, request_span = self._ids(rec.request_id)
            caller = None
        end = rec.time + rec.latency_ms / 1000
        if rec.provider:
            spans.append(self._attempt(rec, trace_id, request_span, end))
        if not rec.final:
            self._open.setdefault(rec.request_id, rec.time)
            if len(self._open) > 10_000:  # a request whose end never came: forget the oldest
                del self._open[next(iter(self._open))]
            return
        first = self._open.pop(rec.request_id, rec.time)
        attributes = [
            *_shared(rec, rec.model),
            _attribute("http.request.method", "POST"),
            _attribute("url.path", rec.endpoint),
            _attribute("babelgate.client", rec.client),
            _attribute("babelgate.protocol", rec.protocol),
            _attribute("babelgate.stream", rec.stream),
        ]
        if rec.key is not None:
            attributes.append(_attribute("babelgate.key", rec.key))
        if rec.route is not None:
            attributes.append(_attribute("babelgate.route", rec.route))
        if rec.provider:
            attributes += [*_provider(rec), *self._usage(rec)]
        elif rec.error_kind is not None:
            attributes.append(_attribute("error.type", rec.error_kind))
        span = self._span(trace_id, request_span, caller, f"chat {rec.model}", SERVER,
                          first, end, attributes, rec.error_kind)
        if trace is not None and trace.state is not None:  # the caller's, as it came
            span["traceState"] = trace.state
        spans.append(span)

    def _attempt(self, rec: UsageRecord, trace_id: str, parent: str, end: float
                 ) -> dict[str, Any]:
        attributes = [*_shared(rec, rec.target_model), *_provider(rec), *self._usage(rec)]
        address = self._address(rec.provider)
        if address is not None:
            attributes += [_attribute("server.address", address[0]),
                           _attribute("server.port", address[1])]
        if rec.ttft_ms is not None:
            attributes.append(_attribute("babelgate.time_to_first_token_ms", rec.ttft_ms))
        # The span id its upstream request carried in `traceparent`, when it had one.
        span_id = rec.span_id or os.urandom(8).hex()
        return self._span(trace_id, span_id, parent, f"chat {rec.target_model}",
                          CLIENT, rec.time, end, attributes, rec.error_kind)

    @staticmethod
    def _usage(rec: UsageRecord) -> list[Attribute]:
        """The outcome: the error's kind, or the model that answered; the tokens used."""
        if rec.error_kind is not None:
            found = [_attribute("error.type", rec.error_kind)]
            if not rec.total_tokens:
                return found
        else:
            found = [_attribute("gen_ai.response.model", rec.target_model)]
        found += [
            _attribute("gen_ai.usage.input_tokens",
                       rec.input_tokens + rec.cache_read_tokens + rec.cache_write_tokens),
            _attribute("gen_ai.usage.output_tokens", rec.output_tokens),
        ]
        if rec.cache_read_tokens:
            found.append(_attribute("gen_ai.usage.cache_read.input_tokens",
                                    rec.cache_read_tokens))
        if rec.cache_write_tokens:
            found.append(_attribute("gen_ai.usage.cache_creation.input_tokens",
                                    rec.cache_write_tokens))
        if rec.cost is not None:
            found.append(_attribute("babelgate.cost_usd", rec.cost))
        if rec.estimated:  # the upstream reported no usage: these counts are babelgate's
            found.append(_attribute("babelgate.usage.estimated", True))
        return found

    @staticmethod
    def _span(trace_id: str, span_id: str, parent: str | None, name: str, kind: int,
              start: float, end: float, attributes: list[Attribute],
              error: str | None) -> dict[str, Any]:
        span: dict[str, Any] = {
            "traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
            "start": _nanos(start), "end": _nanos(max(start, end)),
            "attributes": attributes,
        }
        if parent is not None:
            span["parentSpanId"] = parent
        if error is not None:
            span["status"] = {"code": STATUS_ERROR, "message": error}
        return span

    def _address(self, provider: str) -> tuple[str, int] | None:
        """The upstream's host and port, from the running configuration's base URLs (a
        reload may change them: the table is rebuilt when the mapping is a new one)."""
        upstreams = self.upstreams()
        if upstreams is not self._addresses_from:
            self._addresses_from = upstreams
            self._addresses = {}
            for name, upstream in upstreams.items():
                parts = urlsplit(upstream.base_url)
                if parts.hostname:
                    self._addresses[name] = (parts.hostname,
                                             parts.port or DEFAULT_PORTS.get(parts.scheme, 443))
        return self._addresses.get(provider)
