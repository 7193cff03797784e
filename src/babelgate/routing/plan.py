"""The order of attempts for one request, and what each outcome teaches.

Routing decides, the server executes: the gateway iterates a `Plan` and performs one attempt
per target it yields, then reports the outcome (`succeeded()` or `failed(error)`):

    plan = Plan(state, policy, targets)
    async for target in plan:
        try: answer = await attempt(target)
        except GatewayError as error: plan.failed(error); continue
        plan.succeeded(); return answer
    raise plan.error()

What a Plan promises:
- Targets come in route order. A provider whose quota is used up (routing/quota.py) is
  skipped, even when it is the only one: with nothing else to try, `error()` is a 429 that
  names when each used-up provider resets. A resting target (routing/health.py) goes after
  the others: it is skipped while another can answer, and tried when it is the only one left.
- `failed(error)` decides what comes next: a refusal that says the quota is used up marks the
  provider (until its stated reset, else its window's) and moves to the next target; a
  failure worth retrying (connection, timeout, 429, 5xx: `GatewayError.retryable`) counts
  towards the target's cooldown and, while `retry.attempts` allows and the target is not
  resting now, yields the same target again after the backoff (slept on the state's clock);
  then the next target. Any other error (a 400, a 401...) ends the plan: the client's request
  or our credentials are at fault, and another target would say the same.
- Weights: when a provider of the route's targets has a `weight`, the first target is the one
  the conversation (`key`) was last served by, while it is in the route; else one picked at
  random in proportion to the weights (1 for providers without one); the others follow in
  route order. The target that answers is remembered for the conversation
  (routing/sticky.py). Routes without a weighted provider keep their order.
- Keys: a provider with several `api_keys` has a quota per key. `key_used_up(...)` is what
  the provider asks (providers/provider.py, `send`) when one of them is refused: a refusal
  that says the quota is used up marks that key until its reset, and the provider tries its
  next key. The provider is marked used up only when every key is (until the first comes
  back); before that, a used-up refusal moves this request to the next target only.
  `RoutedKeys` is what the provider's credentials ask before picking a key (used up? resting?
  which key served this conversation?) and tell when they rest one or one served. Keys are
  named by id (policy.py `key_id`), so marks and rests stay with their key whatever a reload
  does to the list.
- A healthy gateway (no cooldown, no quota mark, no weights) pays for one small object and a
  few attribute reads per request: the ordering work only runs when there is something to
  order by.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from babelgate.canonical import GatewayError

from .policy import RoutingPolicy
from .quota import QuotaMark, exhaustion, stated_reset
from .router import Target
from .state import RoutingState
from .sticky import KeyChoice

log = logging.getLogger("babelgate")


class Plan:
    __slots__ = ("_again", "_delay", "_error", "_index", "_key", "_policy", "_skipped",
                 "_spent", "_state", "_target", "_targets", "_tries")

    def __init__(
        self, state: RoutingState, policy: RoutingPolicy, targets: Sequence[Target],
        key: str | None = None,
    ) -> None:
        self._state = state
        self._policy = policy
        self._targets = targets
        self._index = -1
        self._tries = 0
        self._target: Target | None = None
        self._again = False
        self._delay = 0.0
        self._error: GatewayError | None = None
        self._skipped: list[QuotaMark] | None = None
        self._spent = False  # the last failure was a used-up quota
        self._key: str | None = None  # the conversation, when the route spreads
        if policy.weights and len(targets) > 1:
            self._targets = targets = self._spread(targets, key)
        if state.cooldowns.by_target and len(targets) > 1:
            self._targets = self._rested_last(targets)

    def __aiter__(self) -> Plan:
        return self

    async def __anext__(self) -> Target:
        if self._again:
            self._again = False
            self._tries += 1
            if self._delay > 0:
                await self._state.clock.sleep(self._delay)
            assert self._target is not None
            return self._target
        targets, quota = self._targets, self._state.quota
        while True:
            self._index += 1
            if self._index >= len(targets):
                raise StopAsyncIteration
            target = targets[self._index]
            if quota.marks:
                mark = quota.exhausted(target.provider, self._state.clock.now())
                if mark is not None:
                    self._skip(mark)
                    continue
            self._target, self._tries = target, 1
            return target

    def succeeded(self) -> None:
        if self._state.cooldowns.by_target and self._target is not None:
            self._state.cooldowns.succeeded(self._target)
        if self._key is not None and self._target is not None:
            self._state.sticky.put(self._key, self._target)

    def failed(self, error: GatewayError) -> None:
        target = self._target
        assert target is not None
        self._error = error
        self._spent = False
        reason = exhaustion(error, self._policy.quota_for(target.provider))
        if reason is not None:
            if self._some_key_left(target.provider):
                return  # this provider's other keys still have quota: the next target now
            self._mark(target.provider, error, reason)
            return
        if not error.retryable:
            self._index = len(self._targets)  # nothing more to try
            return
        policy = self._policy
        resting = False
        if policy.cooldown is not None:
            resting = self._state.cooldowns.failed(
                target, policy.cooldown, f"{error.kind} (HTTP {error.status})")
        if not resting and self._tries < policy.retry.attempts:
            self._again = True
            self._delay = policy.retry.delay(self._tries, error.retry_after)

    def unfit(self, error: GatewayError) -> None:
        """The target cannot take this request at all (a claude-code target and client
        tools): the next target is tried, and `error` is what the client hears if no
        other target fails in its own way."""
        if self._error is None:
            self._error = error

    @property
    def finished(self) -> bool:
        """No attempt follows the last failure (targets that turn out used up are skipped,
        so one may still not follow when this says False)."""
        return not self._again and self._index + 1 >= len(self._targets)

    def error(self) -> GatewayError:
        """What the client hears when no target answered."""
        if self._skipped and (self._error is None or self._spent):
            return quota_error(self._skipped, self._state.clock.now())
        if self._error is not None:
            return self._error
        return GatewayError("api_error", "the route has no target")  # routes are never empty

    # ------------------------------------------------------------------ internals

    def _some_key_left(self, provider: str) -> bool:
        """Whether a key of the provider's `api_keys` is not used up (False without keys)."""
        ids = self._policy.keys.get(provider)
        if ids is None:
            return False
        quota, now = self._state.quota, self._state.clock.now()
        return any(quota.key_exhausted(provider, key, now) is None for key in ids)

    def _mark(self, provider: str, error: GatewayError, reason: str) -> None:
        state = self._state
        now = state.clock.now()
        resets_at = _resets_at(state, self._policy, provider, error, now)
        first_key_back = state.quota.soonest_key_reset(provider,
                                                       self._policy.keys.get(provider, ()))
        if first_key_back is not None:  # every key used up: back with the first of them
            resets_at = min(resets_at, first_key_back)
        mark = state.quota.mark(provider, now, resets_at, reason)
        log.warning("provider %s: quota used up until %s (%s)", provider,
                    iso_time(mark.resets_at), reason)
        self._skip(mark)
        self._spent = True

    def _skip(self, mark: QuotaMark) -> None:
        if self._skipped is None:
            self._skipped = []
        if mark not in self._skipped:
            self._skipped.append(mark)

    def _spread(self, targets: Sequence[Target], key: str | None) -> Sequence[Target]:
        weights = self._policy.weights
        if not any(target.provider in weights for target in targets):
            return targets
        self._key = key
        first = self._state.sticky.get(key) if key is not None else None
        if first is None or first not in targets:
            first = _weighted(targets, weights, self._state.random())
        return [first, *(target for target in targets if target != first)]

    def _rested_last(self, targets: Sequence[Target]) -> list[Target]:
        cooldowns, policy = self._state.cooldowns, self._policy.cooldown
        if policy is None:
            return list(targets)
        awake: list[Target] = []
        resting: list[Target] = []
        for target in targets:
            (resting if cooldowns.resting(target, policy) else awake).append(target)
        return awake + resting


def key_used_up(state: RoutingState, policy: RoutingPolicy, provider: str, index: int,
                error: GatewayError) -> bool:
    """Whether `error`, the refusal key `index` of the provider's `api_keys` got, says that
    key's quota is used up; if so the key is marked until its reset."""
    reason = exhaustion(error, policy.quota_for(provider))
    if reason is None:
        return False
    now = state.clock.now()
    mark = state.quota.mark(provider, now, _resets_at(state, policy, provider, error, now),
                            reason, policy.keys[provider][index])
    log.warning("provider %s: key #%d of api_keys used up until %s (%s)", provider, index,
                iso_time(mark.resets_at), reason)
    return True


class RoutedKeys:
    """Routing's word on each key of one provider's `api_keys`, by its place in the list (the
    credentials' KeyStates, providers/credentials.py): whether it is used up (a quota mark)
    or resting (a refusal), and the rests the credentials decide, kept in the RoutingState
    under the key's id. A few attribute reads while no key of any provider is marked or
    rests."""

    __slots__ = ("_ids", "_provider", "_state")

    def __init__(self, state: RoutingState, provider: str, ids: tuple[str, ...]) -> None:
        self._state = state
        self._provider = provider
        self._ids = ids

    def usable(self, index: int) -> bool:
        state = self._state
        rests = state.key_rests
        if rests.by_key and rests.until(self._provider, self._ids[index]) > \
                state.clock.monotonic():
            return False
        return not self._used_up(index)

    def wakes(self, index: int) -> tuple[bool, float]:
        return self._used_up(index), self._state.key_rests.until(self._provider,
                                                                 self._ids[index])

    def rest(self, index: int, seconds: float, reason: str) -> None:
        self._state.key_rests.rest(self._provider, self._ids[index], seconds, reason)

    def stuck(self, conversation: str) -> int | None:
        choice = self._state.sticky_keys.get(f"{self._provider}\0{conversation}")
        if choice is None or choice.key not in self._ids:  # gone from the list
            return None
        return self._ids.index(choice.key)

    def keep(self, conversation: str, index: int) -> None:
        self._state.sticky_keys.put(f"{self._provider}\0{conversation}",
                                    KeyChoice(self._provider, self._ids[index]))

    def _used_up(self, index: int) -> bool:
        quota = self._state.quota
        return bool(quota.key_marks) and quota.key_exhausted(
            self._provider, self._ids[index], self._state.clock.now()) is not None


def _resets_at(state: RoutingState, policy: RoutingPolicy, provider: str,
               error: GatewayError, now: float) -> float:
    """When a quota refused now comes back: the upstream's word, else the window's."""
    resets_at = stated_reset(error, now)
    if resets_at is None or resets_at <= now:
        resets_at = policy.quota_for(provider).window.resets_at(now, state.tz)
    return resets_at


def _weighted(targets: Sequence[Target], weights: Mapping[str, float], draw: float) -> Target:
    """The target `draw` (in [0, 1)) falls on, each taking its share of the total weight."""
    shares = [weights.get(target.provider, 1.0) for target in targets]
    point = draw * sum(shares)
    for target, share in zip(targets, shares, strict=True):
        point -= share
        if point < 0:
            return target
    return targets[-1]


def quota_error(marks: Sequence[QuotaMark], now: float) -> GatewayError:
    """The client's answer when every target it could use has used up its quota."""
    soonest = min(mark.resets_at for mark in marks)
    which = ", ".join(f"{m.provider} until {iso_time(m.resets_at)}" for m in marks)
    return GatewayError(
        "rate_limit",
        f"quota used up for every provider of this model: {which}. babelgate sends requests "
        "there again after the reset (POST /v1/quota/reset brings a provider back now).",
        retry_after=max(1, math.ceil(soonest - now)),
    )


def iso_time(moment: float) -> str:
    """Unix seconds as ISO 8601 in UTC, to the second: how /v1/quota and messages say it."""
    return datetime.fromtimestamp(round(moment), UTC).isoformat().replace("+00:00", "Z")
