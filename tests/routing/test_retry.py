"""Backoff between tries of one target: exponential with jitter, Retry-After honoured up to
the cap."""

from __future__ import annotations

import pytest

from babelgate.routing.retry import RetryPolicy


def test_backoff_doubles_up_to_the_cap() -> None:
    top = RetryPolicy(attempts=6, backoff=0.5, max_backoff=3, random=lambda: 0.999999)
    assert [round(top.delay(n), 3) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_in_the_upper_half() -> None:
    low = RetryPolicy(attempts=3, backoff=1, max_backoff=8, random=lambda: 0.0)
    assert low.delay(1) == 0.5
    assert low.delay(2) == 1.0
    real = RetryPolicy(attempts=3, backoff=1, max_backoff=8)
    delays = {real.delay(2) for _ in range(50)}
    assert all(1.0 <= d <= 2.0 for d in delays) and len(delays) > 1


@pytest.mark.parametrize(("retry_after", "expected"), [(0, 0), (2.5, 2.5), (60, 8), (3600, 8)])
def test_retry_after_is_the_wait_up_to_max_backoff(retry_after: float, expected: float) -> None:
    policy = RetryPolicy(attempts=2, backoff=0.5, max_backoff=8, random=lambda: 0.0)
    assert policy.delay(1, retry_after) == expected
