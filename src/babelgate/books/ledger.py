"""Where a finished attempt becomes a `UsageRecord` and reaches every sink.

What this module promises:
- `Books.attempt(...)` prices the attempt's usage (books/prices.py), builds one frozen
  `UsageRecord` and hands it to each sink in turn, on the caller's thread; sinks only queue
  (record.RecordSink), so this costs a lookup, a struct and a call per sink.
- `RequestIds.next()` gives each request an id unique to this process's life and unlikely
  to repeat across processes: a random prefix drawn at start-up and a counter (no
  randomness per request).
- `Origin` is what the app knows of a request before any attempt: its id, key, client,
  protocol and endpoint, fixed for all its attempts.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from time import time as wall_clock

import msgspec

from babelgate.canonical import NO_USAGE, Usage

from .prices import Prices
from .record import RecordSink, UsageRecord
from .trace_context import TraceContext

log = logging.getLogger("babelgate")


class Origin(msgspec.Struct, frozen=True, gc=False):
    request_id: str
    key: str | None  # the gateway key's name; None: the open gateway
    client: str
    protocol: str
    endpoint: str
    trace: TraceContext | None = None  # with OpenTelemetry traces on: the request's trace


class RequestIds:
    __slots__ = ("_count", "_prefix")

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix if prefix is not None else os.urandom(6).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):06x}"


class Books:
    __slots__ = ("prices", "sinks")

    def __init__(self, prices: Prices | None = None, sinks: Iterable[RecordSink] = ()) -> None:
        self.prices = prices
        self.sinks: tuple[RecordSink, ...] = tuple(sinks)

    def add_sink(self, sink: RecordSink) -> None:
        """At start-up only: sinks are a tuple while serving."""
        self.sinks = (*self.sinks, sink)

    def repriced(self, prices: Prices) -> Books:
        """The same sinks with a reloaded configuration's prices."""
        return Books(prices, self.sinks)

    def refused(self, origin: Origin, model: str, status: int, error_kind: str) -> UsageRecord:
        """A request refused before any upstream was tried: a record with no provider."""
        return self.attempt(origin, model, "", "", False, NO_USAGE, time=wall_clock(),
                            status=status, error_kind=error_kind, latency_ms=0.0,
                            ttft_ms=None, final=True)

    def attempt(
        self,
        origin: Origin,
        model: str,
        provider: str,
        target_model: str,
        stream: bool,
        usage: Usage,
        *,
        time: float,
        status: int,
        error_kind: str | None,
        latency_ms: float,
        ttft_ms: float | None,
        final: bool,
        rule: str | None = None,
        route: str | None = None,
        cost: float | None = None,
        estimated: bool = False,
        span_id: str | None = None,
    ) -> UsageRecord:
        """`cost`: what the upstream itself said the attempt cost (the Claude Code CLI
        does), used as it is; else the prices give it."""
        prices = self.prices
        if cost is None and prices is not None:
            cost = prices.cost(provider, target_model, usage)
        record = UsageRecord(
            time, origin.request_id, origin.key, origin.client, origin.protocol,
            origin.endpoint, model, provider, target_model, stream, status, error_kind, rule,
            route, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
            usage.cache_write_tokens, usage.reasoning_tokens, cost, latency_ms, ttft_ms, final,
            estimated, origin.trace, span_id,
        )
        for sink in self.sinks:
            try:
                sink.record(record)
            except Exception:  # one broken sink must not fail the request or starve others
                log.exception("usage record sink %s failed", type(sink).__name__)
        return record
