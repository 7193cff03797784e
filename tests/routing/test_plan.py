"""The attempt plan with an injected clock: retries and backoff (Retry-After honoured),
cooldown and probe, used-up quotas with each kind of reset, and what the client hears when
nothing answers. The "upstream" is a script of outcomes per target; nothing sleeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from babelgate.canonical import GatewayError
from babelgate.config import (
    CooldownConfig,
    ProviderConfig,
    QuotaConfig,
    RetryConfig,
    ServerConfig,
    Settings,
)
from babelgate.routing import ManualClock, Plan, RoutingPolicy, RoutingState, Target
from babelgate.routing.plan import RoutedKeys, key_used_up
from babelgate.routing.policy import key_id
from babelgate.routing.quota import QuotaMark

A, B = Target("a", "model-a"), Target("b", "model-b")
PLUS2 = timezone(timedelta(hours=2))

Outcome = GatewayError | None  # None: the attempt answered


def settings(
    retry: dict[str, Any] | None = None,
    cooldown: dict[str, Any] | None = None,
    quota: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    providers = {
        name: ProviderConfig(
            type="openai", base_url=f"http://{name}.test/v1",
            quota=QuotaConfig(**quota[name]) if quota and name in quota else None)
        for name in ("a", "b")
    }
    return Settings(
        server=ServerConfig(), providers=providers, routes={}, source="test",
        retry=RetryConfig(**retry) if retry is not None else None,
        cooldown=CooldownConfig(**cooldown) if cooldown is not None else None,
    )


class Sink:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float, str]] = {}

    def save(self, provider: str, key: str, since: float, resets_at: float,
             reason: str) -> None:
        self.rows[f"{provider}#{key}" if key else provider] = (since, resets_at, reason)

    def delete(self, provider: str | None, key: str | None = None) -> None:
        for name in list(self.rows):
            mark_of, _, of_key = name.partition("#")
            if provider is None or (mark_of == provider and key in (None, of_key)):
                del self.rows[name]


class Harness:
    def __init__(self, config: Settings, clock: ManualClock | None = None,
                 marks: Sequence[QuotaMark] = ()) -> None:
        self.clock = clock or ManualClock()
        self.sink = Sink()
        self.state = RoutingState(self.clock, self.sink, marks, tz=PLUS2)
        self.policy = RoutingPolicy.from_settings(config)
        self.calls: list[Target] = []

    async def run(
        self, script: Mapping[Target, Sequence[Outcome]], targets: Sequence[Target] = (A, B)
    ) -> Target | GatewayError:
        """Serve one request; each attempt takes the next outcome of its target's script (an
        exhausted script answers)."""
        plan = Plan(self.state, self.policy, targets)
        tries: dict[Target, int] = {}
        async for target in plan:
            self.calls.append(target)
            served = tries[target] = tries.get(target, -1) + 1
            outcomes = script.get(target) or ()
            outcome = outcomes[served] if served < len(outcomes) else None
            if outcome is None:
                plan.succeeded()
                return target
            plan.failed(outcome)
        return plan.error()


def err(status: int, message: str = "failed", **extra: Any) -> GatewayError:
    from babelgate.canonical.errors import kind_for_status
    headers = extra.pop("headers", None)
    error = GatewayError(kind_for_status(status), message, status=status, **extra)
    error.headers = headers
    return error


def overloaded() -> GatewayError:
    return err(503, "overloaded")


# ------------------------------------------------------------------------------ retries


async def test_without_retry_config_the_next_target_follows_at_once() -> None:
    h = Harness(settings())
    assert await h.run({A: [overloaded()]}) == B
    assert h.calls == [A, B]
    assert h.clock.slept == []


async def test_retries_hit_the_same_target_with_backoff_then_the_next() -> None:
    h = Harness(settings(retry={"attempts": 3, "backoff": 0.5, "max_backoff": 8}))
    h.policy = RoutingPolicy(
        retry=type(h.policy.retry)(3, 0.5, 8, random=lambda: 0.0), quotas=h.policy.quotas)
    assert await h.run({A: [overloaded(), err(500), GatewayError("timeout", "slow")]}) == B
    assert h.calls == [A, A, A, B]
    assert h.clock.slept == [0.25, 0.5]  # half of 0.5 and 1.0: the jitter's lowest


async def test_a_retry_that_succeeds_stays_on_the_target() -> None:
    h = Harness(settings(retry={"attempts": 2}))
    assert await h.run({A: [GatewayError("connection", "refused")]}) == A
    assert h.calls == [A, A]


async def test_retry_after_is_honoured_up_to_max_backoff() -> None:
    h = Harness(settings(retry={"attempts": 3, "backoff": 0.5, "max_backoff": 8}))
    limited = [err(429, "slow down", retry_after=3), err(429, "slow down", retry_after=120)]
    assert await h.run({A: limited}) == A
    assert h.clock.slept == [3, 8]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
async def test_a_client_error_is_never_retried_nor_passed_on(status: int) -> None:
    h = Harness(settings(retry={"attempts": 3}))
    answer = await h.run({A: [err(status, "bad request")]})
    assert isinstance(answer, GatewayError) and answer.status == status
    assert h.calls == [A]


async def test_every_target_failing_gives_the_last_error() -> None:
    h = Harness(settings(retry={"attempts": 2, "backoff": 0}))
    answer = await h.run({A: [overloaded(), overloaded()], B: [err(502), err(504, "late")]})
    assert isinstance(answer, GatewayError) and answer.message == "late"
    assert h.calls == [A, A, B, B]


# ------------------------------------------------------------------------------ cooldown


async def test_a_failing_target_rests_then_one_probe_decides() -> None:
    h = Harness(settings(cooldown={"failures": 3, "seconds": 30}))
    for _ in range(3):
        assert await h.run({A: [overloaded()]}) == B
    h.calls.clear()
    # Resting: skipped while B can answer.
    assert await h.run({}) == B
    assert h.calls == [B]
    h.clock.advance(29)
    h.calls.clear()
    assert await h.run({}) == B and h.calls == [B]
    # The rest is over: the next request probes A; while the probe is out, others skip A.
    h.clock.advance(2)
    plan = Plan(h.state, h.policy, [A, B])
    assert await anext(plan) == A  # the probe
    other = Plan(h.state, h.policy, [A, B])
    assert await anext(other) == B
    plan.failed(overloaded())  # the probe fails: A rests again
    h.calls.clear()
    assert await h.run({}) == B and h.calls == [B]
    h.clock.advance(31)
    h.calls.clear()
    assert await h.run({}) == A  # this probe answers: A is healthy again
    assert h.calls == [A]
    assert h.state.cooldowns.by_target == {}


async def test_a_success_clears_the_count_of_failures() -> None:
    h = Harness(settings(cooldown={"failures": 2, "seconds": 30}))
    assert await h.run({A: [overloaded()]}) == B
    assert await h.run({}) == A  # one failure, then a success: the count starts over
    assert await h.run({A: [overloaded()]}) == B
    h.calls.clear()
    assert await h.run({}) == A and h.calls == [A]


async def test_a_resting_target_is_used_when_it_is_the_only_one() -> None:
    h = Harness(settings(cooldown={"failures": 1, "seconds": 30}))
    first = await h.run({A: [overloaded()]}, [A])
    assert isinstance(first, GatewayError) and first.status == 503
    h.calls.clear()
    assert await h.run({}, [A]) == A
    assert h.calls == [A]


async def test_a_resting_target_is_the_last_resort() -> None:
    h = Harness(settings(cooldown={"failures": 1, "seconds": 30}))
    assert await h.run({A: [overloaded()]}) == B
    h.calls.clear()
    assert await h.run({B: [overloaded()]}) == A  # B failed: A, though resting, answers
    assert h.calls == [B, A]


async def test_a_target_that_starts_resting_is_not_retried() -> None:
    h = Harness(settings(retry={"attempts": 3, "backoff": 0}, cooldown={"failures": 1}))
    assert await h.run({A: [overloaded()]}) == B
    assert h.calls == [A, B]


# ------------------------------------------------------------------------------ quota


async def test_a_billing_refusal_marks_the_provider_until_its_window_resets() -> None:
    h = Harness(settings(quota={"a": {"window": "90s"}}))
    refusal = err(402, "Your credit balance is too low")
    assert await h.run({A: [refusal]}) == B
    mark = h.state.quota.marks["a"]
    assert mark.resets_at - mark.since == 90
    assert "HTTP 402" in mark.reason
    assert h.sink.rows["a"] == (mark.since, mark.resets_at, mark.reason)
    h.calls.clear()
    assert await h.run({}) == B and h.calls == [B]  # skipped while used up
    h.clock.advance(90)
    h.calls.clear()
    assert await h.run({}) == A and h.calls == [A]  # back once the window resets
    assert "a" not in h.sink.rows


ONE_KEY, TWO_KEY = "sk-one-key-111111", "sk-two-key-222222"
ONE_ID, TWO_ID = key_id(ONE_KEY), key_id(TWO_KEY)


async def test_a_key_used_up_is_marked_and_the_provider_only_with_all_its_keys() -> None:
    config = settings(quota={"a": {"window": "1h"}})
    config.providers["a"].api_keys = [ONE_KEY, TWO_KEY]
    h = Harness(config)
    keys = RoutedKeys(h.state, "a", h.policy.keys["a"])
    spent = err(402, "Insufficient Balance")
    assert not key_used_up(h.state, h.policy, "a", 0, overloaded())  # not a used-up quota
    assert key_used_up(h.state, h.policy, "a", 0, spent)
    assert h.sink.rows[f"a#{ONE_ID}"][1] == h.clock.now() + 3600
    assert not keys.usable(0) and keys.usable(1)
    # The request that saw key #1 refused as well still leaves the provider in use while a
    # key has quota: only this request moves on.
    assert await h.run({A: [spent]}) == B
    assert "a" not in h.state.quota.marks
    h.clock.advance(600)
    assert key_used_up(h.state, h.policy, "a", 1, spent)  # now every key is used up
    assert await h.run({A: [spent]}) == B
    mark = h.state.quota.marks["a"]
    assert mark.resets_at == h.sink.rows[f"a#{ONE_ID}"][1]  # back with its first key
    status = h.state.status(["a"], h.policy.keys)[0]
    assert status.state == "exhausted" and status.keys is not None
    assert [(k.key, k.state) for k in status.keys] == [("#0", "exhausted"), ("#1", "exhausted")]
    h.clock.advance(3000)  # key #0's hour is over
    assert keys.usable(0) and not keys.usable(1)
    h.calls.clear()
    assert await h.run({}) == A and h.calls == [A]
    h.state.reset("a")
    assert h.sink.rows == {} and not h.state.quota.key_marks



async def test_marks_and_rests_of_keys_follow_the_key_when_a_reload_reorders_them() -> None:
    config = settings(quota={"a": {"window": "1h"}})
    config.providers["a"].api_keys = [ONE_KEY, TWO_KEY]
    h = Harness(config)
    spent = err(402, "Insufficient Balance")
    assert key_used_up(h.state, h.policy, "a", 0, spent)  # ONE_KEY, first in the list
    RoutedKeys(h.state, "a", h.policy.keys["a"]).rest(1, 60, "refused (HTTP 401)")  # TWO_KEY
    h.clock.advance(10)
    assert [(k.key, k.state) for k in h.state.status(["a"], h.policy.keys)[0].keys or ()] == [
        ("#0", "exhausted"), ("#1", "cooling")]

    # A reload puts a new key first and the two others after it, swapped: the same
    # RoutingState, a new policy.
    new_key = "sk-new-key-333333"
    reloaded = settings(quota={"a": {"window": "1h"}})
    reloaded.providers["a"].api_keys = [new_key, TWO_KEY, ONE_KEY]
    policy = RoutingPolicy.from_settings(reloaded)
    assert policy.keys["a"] == (key_id(new_key), TWO_ID, ONE_ID)
    keys = RoutedKeys(h.state, "a", policy.keys["a"])
    assert [keys.usable(i) for i in range(3)] == [True, False, False]
    new, two, one = h.state.status(["a"], policy.keys)[0].keys or ()
    assert (new.key, new.state) == ("#0", "ok")
    assert (two.key, two.state, two.reason) == ("#1", "cooling", "refused (HTTP 401)")
    assert two.since == h.clock.now() - 10 and two.resets_at == h.clock.now() + 50
    assert (one.key, one.state) == ("#2", "exhausted") and one.resets_at == h.clock.now() + 3590
    # Neither the key nor anything but its id is what routing and the database keep.
    assert set(h.sink.rows) == {f"a#{ONE_ID}"}
    assert all(ONE_KEY not in repr(k) and TWO_KEY not in repr(k)
               for k in h.state.key_rests.by_key)

    h.clock.advance(50)  # the rest is over; the quota is not
    assert [keys.usable(i) for i in range(3)] == [True, True, False]
    assert [k.state for k in h.state.status(["a"], policy.keys)[0].keys or ()] == [
        "ok", "ok", "exhausted"]
    h.state.reset("a")
    assert keys.usable(2) and not h.state.key_rests.by_key



def test_a_conversation_stays_on_its_key_through_a_reordering_reload() -> None:
    config = settings()
    config.providers["a"].api_keys = [ONE_KEY, TWO_KEY]
    h = Harness(config)
    keys = RoutedKeys(h.state, "a", h.policy.keys["a"])
    assert keys.stuck("conversation") is None
    keys.keep("conversation", 1)  # TWO_KEY served it
    assert keys.stuck("conversation") == 1
    reordered = RoutedKeys(h.state, "a", (TWO_ID, key_id("sk-new-key-333333"), ONE_ID))
    assert reordered.stuck("conversation") == 0
    assert RoutedKeys(h.state, "a", (ONE_ID,)).stuck("conversation") is None  # key gone
    assert RoutedKeys(h.state, "b", h.policy.keys["a"]).stuck("conversation") is None
    h.clock.advance(3600)  # an idle hour: forgotten
    assert reordered.stuck("conversation") is None


@pytest.mark.parametrize("error", [
    err(429, "You exceeded your current quota", code="insufficient_quota"),
    GatewayError("billing", "You exceeded your current quota", status=429),
    err(400, "Your credit balance is too low to access the Anthropic API."),
    err(429, "Claude AI usage limit reached"),
    err(429, "This request would exceed your account's rate limit.",
        headers={"anthropic-ratelimit-unified-status": "rejected"}),
    GatewayError("rate_limit", "You exceeded your current quota", status=429, exhausted=True),
], ids=["openai-insufficient_quota", "billing-kind", "anthropic-credit", "anthropic-usage-limit",
        "anthropic-unified-rejected", "gemini-per-day"])
async def test_refusals_that_mean_used_up(error: GatewayError) -> None:
    h = Harness(settings())
    assert await h.run({A: [error]}) == B
    assert "a" in h.state.quota.marks


async def test_a_plain_rate_limit_is_not_a_used_up_quota() -> None:
    h = Harness(settings(cooldown={"failures": 1, "seconds": 30}))
    assert await h.run({A: [err(429, "Rate limit reached for requests")]}) == B
    assert h.state.quota.marks == {}
    assert A in h.state.cooldowns.by_target


async def test_quota_on_adds_statuses_and_phrases() -> None:
    h = Harness(settings(quota={"a": {"window": "1h", "on": [418, "Plan Exhausted"]}}))
    assert await h.run({A: [err(418, "teapot")]}) == B
    h.state.reset()
    assert await h.run({A: [err(500, "error: plan exhausted for today")]}) == B
    assert "a" in h.state.quota.marks
    h.state.reset()
    h.calls.clear()
    assert await h.run({A: [err(500, "something else")]}) == B
    assert h.state.quota.marks == {}


async def test_a_weekly_window_resets_monday_local_time() -> None:
    # Wednesday 2026-12-09 15:00 at +02:00.
    clock = ManualClock(now=datetime(2026, 12, 9, 15, 0, tzinfo=PLUS2).timestamp())
    h = Harness(settings(quota={"a": {"window": "weekly", "reset": "mon 00:00"}}), clock)
    assert await h.run({A: [err(402, "used up")]}) == B
    monday = datetime(2026, 12, 14, 0, 0, tzinfo=PLUS2).timestamp()
    assert h.state.quota.marks["a"].resets_at == monday
    clock.advance(monday - clock.now() - 1)
    h.calls.clear()
    assert await h.run({}) == B and h.calls == [B]
    clock.advance(1)
    h.calls.clear()
    assert await h.run({}) == A and h.calls == [A]


@pytest.mark.parametrize(("headers", "retry_after", "seconds"), [
    ({"anthropic-ratelimit-unified-reset": "{reset}"}, None, 7200),
    ({"anthropic-ratelimit-tokens-reset": "{iso}"}, None, 7200),
    ({"x-ratelimit-reset-requests": "2h0m0s"}, None, 7200),
    ({}, 7200, 7200),  # Retry-After in hours
    # Several stated: the latest wins (every limit must have reset).
    ({"x-ratelimit-reset-tokens": "30m", "anthropic-ratelimit-unified-reset": "{reset}"},
     60, 7200),
], ids=["anthropic-unified-epoch", "anthropic-rfc3339", "openai-duration", "retry-after",
        "latest"])
async def test_a_reset_stated_by_the_upstream_wins(
    headers: dict[str, str], retry_after: float | None, seconds: float
) -> None:
    clock = ManualClock(now=1_800_000_000.0)
    reset = clock.now() + 7200
    iso = datetime.fromtimestamp(reset, UTC).isoformat().replace("+00:00", "Z")
    stated = {k: v.format(reset=int(reset), iso=iso) for k, v in headers.items()}
    h = Harness(settings(quota={"a": {"window": "monthly"}}), clock)
    assert await h.run({A: [err(402, "used up", headers=stated, retry_after=retry_after)]}) == B
    assert h.state.quota.marks["a"].resets_at == clock.now() + seconds



@pytest.mark.parametrize(("headers", "retry_after"), [
    ({}, 1e12),  # Retry-After of 30,000 years
    ({"anthropic-ratelimit-tokens-reset": "1e15"}, None),  # Unix seconds past year 9999
    ({"x-ratelimit-reset-requests": "inf"}, None),
    ({"anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z"}, None),
])
async def test_a_reset_stated_past_any_quota_is_not_taken(
    headers: dict[str, str], retry_after: float | None
) -> None:
    """An upstream's absurd reset time gives way to the window (it was a ValueError that
    failed the request: no date can show it)."""
    h = Harness(settings(quota={"a": {"window": "2h"}}))
    assert await h.run({A: [err(402, "used up", headers=headers, retry_after=retry_after)]}) == B
    assert h.state.quota.marks["a"].resets_at == h.clock.now() + 7200
    assert h.state.status(["a"])[0].state == "exhausted"

async def test_the_only_target_used_up_gives_a_quota_error_naming_the_reset() -> None:
    h = Harness(settings(quota={"a": {"window": "2h"}}))
    first = await h.run({A: [err(402, "used up")]}, [A])
    assert isinstance(first, GatewayError) and first.status == 429
    assert "quota used up" in first.message and "a until" in first.message
    assert first.retry_after == 7200
    h.calls.clear()
    again = await h.run({}, [A])  # skipped even though it is the only one
    assert h.calls == []
    assert isinstance(again, GatewayError) and again.status == 429
    reset = datetime.fromtimestamp(h.clock.now() + 7200, UTC).isoformat()[:19]
    assert reset + "Z" in again.message


async def test_marks_loaded_from_storage_are_honoured_and_reset_by_hand() -> None:
    clock = ManualClock()
    mark = QuotaMark("a", clock.now() - 10, clock.now() + 100, "used up")
    h = Harness(settings(), clock, marks=[mark])
    assert await h.run({}) == B
    status = {s.name: s for s in h.state.status(["a", "b"])}
    assert status["a"].state == "exhausted" and status["a"].resets_at == mark.resets_at
    assert status["b"].state == "ok" and status["b"].since is None
    h.state.reset("a")
    h.calls.clear()
    assert await h.run({}) == A and h.calls == [A]


async def test_status_shows_a_resting_provider_as_cooling() -> None:
    h = Harness(settings(cooldown={"failures": 1, "seconds": 30}))
    await h.run({A: [overloaded()]})
    (a, b) = h.state.status(["a", "b"])
    assert a.state == "cooling" and a.resets_at == pytest.approx(h.clock.now() + 30)
    assert b.state == "ok"
    h.clock.advance(30)
    assert h.state.status(["a"])[0].state == "ok"
