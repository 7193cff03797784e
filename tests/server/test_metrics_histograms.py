"""server/metrics.py's histograms, counted by babelgate rather than prometheus-client: what a
scrape reads of them, after records of known durations."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from babelgate.books.record import UsageRecord
from babelgate.server.metrics import Metrics


def record(latency_ms: float, ttft_ms: float | None = None, **changes: object) -> UsageRecord:
    values: dict[str, object] = dict(
        time=time.time(), request_id="r1", key=None, client="other", protocol="anthropic",
        endpoint="/v1/messages", model="m", provider="up", target_model="served",
        stream=ttft_ms is not None, status=200, latency_ms=latency_ms, ttft_ms=ttft_ms)
    values.update(changes)
    return UsageRecord(**values)  # type: ignore[arg-type]


def samples(metrics: Metrics, family: str) -> dict[tuple[str, str], float]:
    """(sample name, its `le` or "") -> value, for the one series of `family`."""
    for metric in text_string_to_metric_families(metrics.render().decode()):
        if metric.name == family:
            return {(s.name, s.labels.get("le", "")): s.value for s in metric.samples}
    raise AssertionError(f"no {family}")


def test_durations_land_in_the_buckets_a_scrape_reads() -> None:
    metrics = Metrics(process=False)
    # 0.1 s sits in its own bucket (le="0.1": at most), 0.3 s in le="0.5", 700 s past the
    # last bound, counted only by +Inf.
    for ms in (100.0, 300.0, 700_000.0):
        metrics.record(record(ms))
    metrics.record(record(50.0, final=False))  # a failed attempt: no request's duration
    got = samples(metrics, "babelgate_request_duration_seconds")
    family = "babelgate_request_duration_seconds"
    assert got[(f"{family}_bucket", "0.1")] == 1
    assert got[(f"{family}_bucket", "0.25")] == 1
    assert got[(f"{family}_bucket", "0.5")] == 2
    assert got[(f"{family}_bucket", "600.0")] == 2
    assert got[(f"{family}_bucket", "+Inf")] == 3
    assert got[(f"{family}_count", "")] == 3
    assert got[(f"{family}_sum", "")] == 700.4


def test_time_to_first_token_is_counted_for_streams_only() -> None:
    metrics = Metrics(process=False)
    metrics.record(record(900.0, ttft_ms=40.0))
    metrics.record(record(900.0))
    family = "babelgate_time_to_first_token_seconds"
    got = samples(metrics, family)
    assert got[(f"{family}_bucket", "0.05")] == 1
    assert got[(f"{family}_count", "")] == 1


def test_a_histogram_goes_on_counting_after_a_scrape() -> None:
    metrics = Metrics(process=False)
    metrics.record(record(100.0))
    metrics.render()
    metrics.record(record(100.0))
    got = samples(metrics, "babelgate_request_duration_seconds")
    assert got[("babelgate_request_duration_seconds_count", "")] == 2
