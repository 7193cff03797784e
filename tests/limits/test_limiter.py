"""Each limit kind on an injected clock, counted in memory, in the machine's real Redis
(127.0.0.1:6379, a random key prefix per test, deleted after), and by a real supervisor's
count server on a unix socket (`serve --workers N` without Redis)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from babelgate.canonical import GatewayError
from babelgate.limits import Limiter, Permit, Refusal
from babelgate.limits.hosted import CountServer
from babelgate.limits.periods import Period, bounds
from babelgate.protocols import get_codec

REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Key:
    id: str = "key_test"
    name: str = "alice"
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    budget: float | None = None
    budget_period: Period | None = None


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# A minute's start, so that windows are easy to reason about.
START = 1_800_000_000.0 - 1_800_000_000.0 % 60


@pytest.fixture(params=["memory", "redis", "workers"])
async def limiter_and_clock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter,
                                                                                   Clock]]:
    clock = Clock(START)
    prefix = f"bgtest:{secrets.token_hex(6)}:"
    url = REDIS if request.param == "redis" else None
    server = CountServer() if request.param == "workers" else None
    if server is not None:
        await server.start()
    limiter = Limiter(url, prefix=prefix, clock=clock,
                      workers_socket=server.path if server is not None else None)
    await limiter.start()
    assert limiter.counted == ("process" if request.param == "memory" else request.param)
    if url is not None:
        assert limiter.status == "ok"
    yield limiter, clock
    await limiter.stop()
    if server is not None:
        await server.stop()
    if url is not None:
        client = Redis.from_url(url)
        names = [name async for name in client.scan_iter(match=prefix + "*")]
        if names:
            await client.delete(*names)
        await client.aclose()


async def admitted(limiter: Limiter, key: Key, estimate: int = 0) -> Permit:
    permit = await limiter.admit(key, estimate)
    assert isinstance(permit, Permit), permit
    return permit


async def refused(limiter: Limiter, key: Key, estimate: int = 0) -> Refusal:
    refusal = await limiter.admit(key, estimate)
    assert isinstance(refusal, Refusal), refusal
    return refusal


async def settled(limiter: Limiter) -> None:
    """Redis finishes in the background: wait for them."""
    for task in list(limiter._pending):  # the finishes the test started
        await task


async def test_requests_per_minute(limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, clock = limiter_and_clock
    key = Key(rpm=10)
    for _ in range(10):
        limiter.finish(await admitted(limiter, key))
    refusal = await refused(limiter, key)
    assert refusal.kind == "rpm"
    assert "10 requests per minute" in refusal.message
    assert 1 <= refusal.retry_after <= 120
    # Halfway through the next minute half of the last one still counts: 5 more fit.
    clock.now = START + 90
    for _ in range(5):
        await admitted(limiter, key)
    assert (await refused(limiter, key)).kind == "rpm"
    # Two minutes on, nothing counts any more.
    clock.now = START + 240
    for _ in range(10):
        await admitted(limiter, key)


async def test_retry_after_says_when_one_fits(limiter_and_clock: tuple[Limiter, Clock]
                                              ) -> None:
    limiter, clock = limiter_and_clock
    key = Key(rpm=2)
    await admitted(limiter, key)
    await admitted(limiter, key)
    clock.now = START + 30
    wait = (await refused(limiter, key)).retry_after
    clock.now += wait - 1
    await refused(limiter, key)
    clock.now += 1
    await admitted(limiter, key)


async def test_tokens_per_minute_reserved_then_settled(
        limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, clock = limiter_and_clock
    key = Key(tpm=1000)
    first = await admitted(limiter, key, 600)
    assert (await refused(limiter, key, 600)).kind == "tpm"  # 600 reserved + 600 > 1000
    first.charge(100, None)  # it used far less than estimated
    limiter.finish(first)
    await settled(limiter)
    second = await admitted(limiter, key, 600)  # 100 + 600 <= 1000
    second.charge(900, None)  # and this one more than estimated
    limiter.finish(second)
    await settled(limiter)
    refusal = await refused(limiter, key, 10)  # 100 + 900 + 10 > 1000
    assert "1000 tokens per minute" in refusal.message
    clock.now = START + 125
    await admitted(limiter, key, 1000)


async def test_a_request_larger_than_the_limit_waits_for_a_clear_minute(
        limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, clock = limiter_and_clock
    key = Key(tpm=1000)
    await admitted(limiter, key, 5000)
    assert (await refused(limiter, key, 5000)).kind == "tpm"
    clock.now = START + 120
    await admitted(limiter, key, 5000)


async def test_concurrency(limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, _ = limiter_and_clock
    key = Key(concurrency=2)
    first = await admitted(limiter, key)
    await admitted(limiter, key)
    refusal = await refused(limiter, key)
    assert refusal.kind == "concurrency"
    assert "2 concurrent requests" in refusal.message
    limiter.finish(first)
    limiter.finish(first)  # a second finish gives back nothing more
    await settled(limiter)
    await admitted(limiter, key)
    assert (await refused(limiter, key)).kind == "concurrency"


@pytest.mark.parametrize("period", ["day", "month"])
async def test_budget(limiter_and_clock: tuple[Limiter, Clock], period: Period) -> None:
    limiter, clock = limiter_and_clock
    key = Key(budget=1.0, budget_period=period)
    _, end = bounds(period, clock.now)
    await limiter.seed(key.id, period, 0.5)  # what the usage table says was spent
    permit = await admitted(limiter, key)
    permit.charge(1000, 0.3)
    limiter.finish(permit)
    await settled(limiter)
    assert await limiter.spent(key) == pytest.approx(0.8)
    permit = await admitted(limiter, key)  # 0.8 < 1.0: admitted, and may overspend
    permit.charge(1000, 0.25)
    limiter.finish(permit)
    await settled(limiter)
    refusal = await refused(limiter, key)
    assert refusal.kind == "budget"
    assert "$1.00" in refusal.message and "resets at" in refusal.message
    assert refusal.retry_after == pytest.approx(end - clock.now, abs=2)
    clock.now = end + 1  # a new day or month: spend starts again from nothing
    await admitted(limiter, key)
    assert await limiter.spent(key) == 0.0


async def test_settlement_tells_the_spend(limiter_and_clock: tuple[Limiter, Clock]) -> None:
    """What the server's budget-remaining gauge hears: the period's spend after each paid
    settlement of a budgeted key, nothing for a free one or a key without a budget."""
    limiter, _ = limiter_and_clock
    heard: list[tuple[str, float]] = []
    limiter.on_spent = lambda key, spent: heard.append((key.name, spent))
    key = Key(budget=1.0, budget_period="day")
    await limiter.seed(key.id, "day", 0.5)
    for cost in (0.25, 0.0, 0.125):
        permit = await admitted(limiter, key)
        permit.charge(10, cost)
        limiter.finish(permit)
        await settled(limiter)
    unbudgeted = await admitted(limiter, Key(id="key_other", name="bob", rpm=100))
    unbudgeted.charge(10, 0.5)
    limiter.finish(unbudgeted)
    await settled(limiter)
    assert heard == [("alice", pytest.approx(0.75)), ("alice", pytest.approx(0.875))]


async def test_a_key_without_limits_is_not_counted(
        limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, _ = limiter_and_clock
    for _ in range(100):
        limiter.finish(await admitted(limiter, Key()))


async def test_refused_requests_take_nothing(limiter_and_clock: tuple[Limiter, Clock]) -> None:
    limiter, _ = limiter_and_clock
    key = Key(rpm=3, concurrency=1)
    held = await admitted(limiter, key)
    for _ in range(5):
        assert (await refused(limiter, key)).kind == "concurrency"
    limiter.finish(held)
    await settled(limiter)
    await admitted(limiter, key)  # the refusals above did not count as requests


async def test_requests_at_once_take_exactly_the_limits(
        limiter_and_clock: tuple[Limiter, Clock]) -> None:
    """Many requests of one key at the same moment (with Redis they share scripts: one in
    flight, the rest in the next): exactly as many as the limits allow, and every slot
    given back once they finish."""
    limiter, _ = limiter_and_clock
    by_rate = Key(id="key_rate", rpm=10)
    results = await asyncio.gather(*(limiter.admit(by_rate) for _ in range(25)))
    assert sum(isinstance(result, Permit) for result in results) == 10
    assert {result.kind for result in results if isinstance(result, Refusal)} == {"rpm"}
    narrow = Key(id="key_narrow", concurrency=3, tpm=100_000)
    first = await asyncio.gather(*(limiter.admit(narrow, 100) for _ in range(8)))
    permits = [result for result in first if isinstance(result, Permit)]
    assert len(permits) == 3
    for permit in permits:
        limiter.finish(permit)
    await settled(limiter)
    again = await asyncio.gather(*(limiter.admit(narrow, 100) for _ in range(8)))
    assert sum(isinstance(result, Permit) for result in again) == 3


async def test_instances_on_one_redis_share_the_counts() -> None:
    clock = Clock(START)
    prefix = f"bgtest:{secrets.token_hex(6)}:"
    one, two = (Limiter(REDIS, prefix=prefix, clock=clock) for _ in range(2))
    await one.start()
    await two.start()
    key = Key(rpm=10)
    try:
        results = [await (one if n % 2 else two).admit(key) for n in range(20)]
        assert sum(isinstance(result, Permit) for result in results) == 10
    finally:
        for limiter in (one, two):
            await limiter.stop()
        client = Redis.from_url(REDIS)
        names = [name async for name in client.scan_iter(match=prefix + "*")]
        if names:
            await client.delete(*names)
        await client.aclose()


async def test_redis_away_falls_back_to_local_limits(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(START)
    limiter = Limiter("redis://127.0.0.1:1/0", clock=clock, retry_every=3600)
    await limiter.start()
    assert limiter.status == "unreachable, local limits"
    key = Key(rpm=2)
    await admitted(limiter, key)
    await admitted(limiter, key)
    assert (await refused(limiter, key)).kind == "rpm"
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    await limiter.stop()


async def test_workers_on_one_supervisor_share_the_counts() -> None:
    """Two workers' limiters on one supervisor's count server: one set of counts, and the
    slots a worker held are freed when its connection goes (it exited)."""
    clock = Clock(START)
    server = CountServer()
    await server.start()
    one, two = (Limiter(clock=clock, workers_socket=server.path) for _ in range(2))
    await one.start()
    await two.start()
    try:
        key = Key(id="key_rpm", rpm=10)
        results = [await (one if n % 2 else two).admit(key) for n in range(20)]
        assert sum(isinstance(result, Permit) for result in results) == 10
        narrow = Key(id="key_conc", concurrency=1)
        await admitted(one, narrow)
        assert (await refused(two, narrow)).kind == "concurrency"
        await one.stop()  # a worker that exits without finishing its request
        for _ in range(100):
            if isinstance(await two.admit(narrow), Permit):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the departed worker's slot was never freed")
        assert two.counted == "workers"
    finally:
        await two.stop()
        await server.stop()
    assert not os.path.exists(server.path)


async def test_a_supervisor_that_is_gone_leaves_local_limits() -> None:
    limiter = Limiter(clock=Clock(START), workers_socket="/nonexistent/limits.sock",
                      retry_every=3600)
    await limiter.start()
    assert limiter.counted == "process" and limiter.status is None
    key = Key(rpm=1)
    await admitted(limiter, key)
    assert (await refused(limiter, key)).kind == "rpm"
    await limiter.stop()


async def test_a_redis_that_does_not_answer_in_time_leaves_local_limits() -> None:
    """A server that accepts and never replies: after `timeout` the limiter counts locally
    (and a late reply could not be taken for the next command's: the connection is gone)."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    limiter = Limiter(f"redis://127.0.0.1:{port}/0", clock=Clock(START), timeout=0.2,
                      retry_every=3600)
    try:
        started = time.monotonic()
        await limiter.start()
        assert time.monotonic() - started < 2
        assert limiter.status == "unreachable, local limits"
        await admitted(limiter, Key(rpm=1))
    finally:
        await limiter.stop()
        silent.close()


async def test_scripts_are_loaded_again_after_redis_forgot_them() -> None:
    prefix = f"bgtest:{secrets.token_hex(6)}:"
    limiter = Limiter(REDIS, prefix=prefix, clock=Clock(START))
    await limiter.start()
    client = Redis.from_url(REDIS)
    try:
        key = Key(rpm=2)
        await admitted(limiter, key)
        await client.script_flush()  # as after a Redis restart
        await admitted(limiter, key)
        assert (await refused(limiter, key)).kind == "rpm"
        assert limiter.status == "ok"
    finally:
        await limiter.stop()
        names = [name async for name in client.scan_iter(match=prefix + "*")]
        if names:
            await client.delete(*names)
        await client.aclose()


@pytest.mark.parametrize(("protocol", "wanted"), [
    ("anthropic", {"type": "error", "error": {"type": "rate_limit_error"}}),
    ("openai", {"error": {"type": "insufficient_quota", "code": "insufficient_quota"}}),
    ("openai-responses", {"error": {"type": "insufficient_quota", "code": "insufficient_quota"}}),
    ("gemini", {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}),
])
def test_a_spent_budget_is_each_protocols_quota_error(protocol: str, wanted: dict[str, object]
                                                      ) -> None:
    error = Refusal("budget", 3600, "API key 'alice' has spent its budget").error()
    assert isinstance(error, GatewayError) and error.status == 429
    body = get_codec(protocol).render_error(error)
    for field, value in wanted.items():
        if isinstance(value, dict):
            assert {k: body[field][k] for k in value} == value
        else:
            assert body[field] == value
