"""Prometheus metrics (`metrics: true`, served at GET /metrics), with prometheus-client.

What this module promises:
- `Metrics.record(rec)` (a RecordSink) only appends the record to a list: the request path
  pays a list append. Records are folded into the metrics when /metrics is read, and when
  `fold_every` of them have gathered, so memory stays bounded between scrapes.
- Folding finds a record's child metrics (one per label tuple) in a dict, built once per
  tuple: prometheus-client's `labels()` validates and locks on every call, the dict lookup
  does not. The dict holds at most `max_series` tuples; past that, new models are counted
  under model="other", so a client inventing model names cannot grow the registry without
  bound.
- The metrics live in a registry of the app's own (no process-wide state), so two apps in one
  process, as in the tests, do not share counts.
- Requests are counted once, by their final attempt; an attempt that failed before a fallback
  counts as an upstream error and in tokens, not as a request. A request refused before
  routing (bad JSON, unknown model, a refused key) is counted with provider="none".
- The two histograms (request duration, time to first token) are counted by this module
  (`_Histogram`), rendered as prometheus-client renders its own: prometheus-client's
  `observe` takes a lock and walks the buckets in Python, ~9 K instructions under callgrind,
  more than the rest of a record's fold; here an observation is a `bisect` and two
  additions.
- `budget_remaining(key, usd)` is the hook for the limits, called after every settlement
  that spent something: it keeps the key's latest figure in a dict, and the gauge is set
  from it when the metrics are read (a `labels()` and a locked `set` per request otherwise).

Labels: `protocol` (the client's inbound protocol), `provider`, `model` (the model the
upstream was asked for: what is served and priced), `status` (the HTTP status), `kind`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Metric,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from babelgate.books.record import UsageRecord

from .metrics_peers import dump

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
OTHER = "other"  # the model label of new series once `max_series` are kept
NONE = "none"  # the provider and model of a request refused before routing
CANCELLED = "cancelled"  # the error kind of an attempt cut off by its client leaving


# prometheus-client's switch for the `_created` samples, which its counters obey.
CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() != "true"


class _Counts:
    """One label set's observations: per bucket (not cumulative), their sum, and when the
    series began."""

    __slots__ = ("bounds", "buckets", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value, as prometheus-client's `le`.
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Histogram:
    """A histogram collector: the samples prometheus-client's `Histogram` has, in its order
    (cumulative `_bucket`s by `le`, `_count`, `_sum`, `_created`), from plain counts. Used on
    the event loop only (folded and read there), so no lock."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = (*(float(b) for b in buckets), math.inf)
        self._le = tuple(_le(b) for b in self.bounds)
        self._series: dict[tuple[str, ...], _Counts] = {}
        registry.register(self)

    def labels(self, *values: str) -> _Counts:
        counts = self._series.get(values)
        if counts is None:
            counts = self._series[values] = _Counts(self.bounds)
        return counts

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterator[Metric]:
        name = self.name
        metric = Metric(name, self.documentation, "histogram")
        for values, counts in self._series.items():
            labels = dict(zip(self.labelnames, values, strict=True))
            total = 0
            for le, count in zip(self._le, counts.buckets, strict=True):
                total += count
                metric.add_sample(f"{name}_bucket", {**labels, "le": le}, total)
            metric.add_sample(f"{name}_count", labels, total)
            metric.add_sample(f"{name}_sum", labels, counts.sum)
            if CREATED:
                metric.add_sample(f"{name}_created", labels, counts.created)
        yield metric


def _le(bound: float) -> str:
    """A bucket's `le` as prometheus-client writes it for bounds like ours (positive, below a
    million, where Go's notation and Python's repr agree): "0.25", "10.0", "+Inf"."""
    return "+Inf" if bound == math.inf else repr(bound)


class _Series:
    """The child metrics of one (protocol, provider, model, status, error kind)."""

    __slots__ = ("cost", "duration", "errors", "provider", "requests", "tokens", "ttft",
                 "unpriced")

    def __init__(self, m: Metrics, protocol: str, provider: str, model: str, status: str,
                 error_kind: str | None) -> None:
        self.provider = provider != NONE  # False: requests refused before routing
        self.requests = m.requests.labels(protocol, provider, model, status)
        self.tokens = tuple(m.tokens.labels(provider, model, kind) for kind in TOKEN_KINDS)
        self.cost = m.cost.labels(provider, model)
        self.unpriced = m.unpriced.labels(provider, model)
        self.duration = m.duration.labels(protocol, provider, model)
        self.ttft = m.ttft.labels(protocol, provider, model)
        # A client that left (`cancelled`) is no upstream's error.
        upstream_failed = error_kind is not None and error_kind != CANCELLED
        self.errors = m.upstream_errors.labels(provider, error_kind) if upstream_failed else None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, max_series: int = 2000, fold_every: int = 4096,
                 process: bool = True) -> None:
        self.max_series = max_series
        self.fold_every = fold_every
        self.registry = registry = CollectorRegistry()
        if process:  # the process's memory, CPU and open files
            ProcessCollector(registry=registry)
        self.requests = Counter(
            "babelgate_requests", "Requests answered, by their final attempt",
            ("protocol", "provider", "model", "status"), registry=registry)
        self.tokens = Counter(
            "babelgate_tokens", "Tokens used, by kind (input excludes cache reads and writes)",
            ("provider", "model", "kind"), registry=registry)
        self.cost = Counter(
            "babelgate_cost_usd", "Cost in US dollars of the attempts with a known price",
            ("provider", "model"), registry=registry)
        self.unpriced = Counter(
            "babelgate_unpriced_attempts", "Attempts whose model has no known price",
            ("provider", "model"), registry=registry)
        self.duration = _Histogram(
            "babelgate_request_duration_seconds", "Time from a request's last attempt to its "
            "last byte", ("protocol", "provider", "model"), DURATION_BUCKETS, registry)
        self.ttft = _Histogram(
            "babelgate_time_to_first_token_seconds", "Time from a stream's attempt to its "
            "first content", ("protocol", "provider", "model"), TTFT_BUCKETS, registry)
        self.upstream_errors = Counter(
            "babelgate_upstream_errors", "Failed upstream attempts, by error kind",
            ("provider", "kind"), registry=registry)
        self.open_streams = 0  # counted by the app as streams open and end
        Gauge("babelgate_open_streams", "Streams open to clients now",
              registry=registry).set_function(lambda: self.open_streams)
        self.budget = Gauge(
            "babelgate_budget_remaining_usd", "Budget left in the current period, per key",
            ("key",), registry=registry)
        self._pending: list[UsageRecord] = []
        # Budget figures since the last read, per key name (None: drop the key's gauge).
        self._budgets: dict[str, float | None] = {}
        self._series: dict[tuple[str, str, str, int, str | None], _Series] = {}

    # ------------------------------------------------------------------ the request path
    def record(self, rec: UsageRecord) -> None:
        pending = self._pending
        pending.append(rec)
        if len(pending) >= self.fold_every:
            self.fold()

    def budget_remaining(self, key: str, usd: float | None) -> None:
        """Set `key`'s remaining budget; None (no budget, or the key is gone) drops it. The
        gauge moves when the metrics are read (`fold`): only the latest figure counts."""
        self._budgets[key] = usd

    # ------------------------------------------------------------------ folding, reading
    def render(self) -> bytes:
        """The Prometheus text exposition of everything recorded so far."""
        self.fold()
        return generate_latest(self.registry)

    def dump(self) -> list[list[Any]]:
        """Everything recorded so far, as plain values (metrics_peers.py: a worker's share of
        `serve --workers`' /metrics)."""
        self.fold()
        return dump(self.registry)

    def fold(self) -> None:
        """Count the queued records. Counters move once per series and fold (summed here
        first: prometheus-client's `inc` takes a lock and checks its argument, some
        thousands of instructions); histograms (_Histogram) take each observation."""
        if self._budgets:
            self._set_budgets()
        pending, self._pending = self._pending, []
        series_of = self._series
        sums: dict[_Series, list[float]] = {}
        for rec in pending:
            key = (rec.protocol, rec.provider, rec.target_model, rec.status, rec.error_kind)
            series = series_of.get(key)
            if series is None:
                series = self._new_series(key)
            acc = sums.get(series)
            if acc is None:
                acc = sums[series] = [0] * 9
            if rec.final:
                acc[0] += 1
                series.duration.observe(rec.latency_ms / 1000)
            if rec.ttft_ms is not None:
                series.ttft.observe(rec.ttft_ms / 1000)
            acc[1] += rec.input_tokens
            acc[2] += rec.output_tokens
            acc[3] += rec.cache_read_tokens
            acc[4] += rec.cache_write_tokens
            acc[5] += rec.reasoning_tokens
            cost = rec.cost
            if cost is not None:
                acc[6] += cost
            elif rec.provider and rec.error_kind is None:
                acc[7] += 1  # answered, with no price known
            acc[8] += 1
        for series, acc in sums.items():
            _apply(series, acc)

    def _set_budgets(self) -> None:
        budgets, self._budgets = self._budgets, {}
        for key, usd in budgets.items():
            if usd is None:
                with contextlib.suppress(KeyError):  # it had none
                    self.budget.remove(key)
            else:
                self.budget.labels(key).set(usd)

    def _new_series(self, key: tuple[str, str, str, int, str | None]) -> _Series:
        protocol, provider, model, status, error_kind = key
        if not provider:
            provider = model = NONE
        elif len(self._series) >= self.max_series:
            # Full: the tuple is counted under model="other" (one series per protocol,
            # provider, status and kind, kept beside the bound), and not kept itself.
            other = (protocol, provider, OTHER, status, error_kind)
            series = self._series.get(other)
            if series is None:
                series = _Series(self, protocol, provider, OTHER, str(status), error_kind)
                self._series[other] = series
            return series
        series = _Series(self, protocol, provider, model, str(status), error_kind)
        self._series[key] = series
        return series


def _apply(series: _Series, acc: list[float]) -> None:
    """Move the counters of one series by a fold's sums: requests, tokens by kind, cost,
    unpriced attempts and (for a failed series) upstream errors."""
    if acc[0]:
        series.requests.inc(acc[0])
    for child, count in zip(series.tokens, acc[1:6], strict=True):
        if count:
            child.inc(count)
    if acc[6]:
        series.cost.inc(acc[6])
    if acc[7]:
        series.unpriced.inc(acc[7])
    if series.errors is not None and series.provider:
        series.errors.inc(acc[8])
