"""Cooldowns: a target that keeps failing rests, then one probe request decides.

What this module promises:
- A target (provider and upstream model) with `failures` consecutive failures worth a retry
  (connection errors, timeouts, 429, 5xx) rests for `seconds`. A success clears its count.
- When the rest is over, the first request to pick it is its probe; while the probe is out,
  the target still counts as resting for everyone else. The probe's success clears it, its
  failure starts a new rest. A probe that never reports (its client went away) is given up
  after another `seconds`, and the next request probes.
- Keys of `api_keys` rest too (`KeyRests`: a refused key, for as long as the provider's
  credentials say), named by id (routing/policy.py `key_id`), so a reload keeps each rest
  with its key; they are shared with the other processes the same way as the targets' rests
  below (`key_rested`, `key_woke`, `rest_until`, `wake_all_but`, `changes`).
- Nothing here decides order: `resting(target)` is what routing/plan.py asks. Only targets
  that failed have an entry, so a healthy gateway pays one empty-dict check per request.
- Other processes (server/shared_routing.py): a `listener` hears each rest that begins here
  (`rested`, with its end in wall time) and each that ends early here (`woke`: a probe
  answered, a reset); `rest_until` rests a target another process rests, and
  `wake_all_but` ends the rests no process holds any more. `changes` grows with every rest
  that begins or ends here, so a read of the others' rests issued before cannot undo it.
Times are the clock's monotonic readings, plus the wall time a rest began for /v1/quota.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .clock import Clock
from .router import Target


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    failures: int = 3
    seconds: float = 30.0


@dataclass(slots=True)
class _Health:
    failures: int = 0
    until: float = 0.0  # monotonic end of the current rest; 0: not resting
    probe_until: float = 0.0  # a probe is out until then
    since: float = 0.0  # wall time the rest began
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rest:
    """A resting target, for /v1/quota: wall times."""

    target: Target
    since: float
    until: float
    reason: str


class RestListener(Protocol):
    """Who hears the rests that begin and end here (server/shared_routing.py)."""

    def rested(self, target: Target, since: float, until: float, failures: int,
               reason: str) -> None: ...

    def woke(self, target: Target) -> None: ...


class Cooldowns:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_target: dict[Target, _Health] = {}
        self.listener: RestListener | None = None
        self.changes = 0

    def resting(self, target: Target, policy: CooldownPolicy) -> bool:
        """Whether `target` should be passed over; claims the probe when its rest is over."""
        health = self.by_target.get(target)
        if health is None or not health.until:
            return False
        now = self.clock.monotonic()
        if now < health.until or now < health.probe_until:
            return True
        health.probe_until = now + policy.seconds  # this request is the probe
        return False

    def failed(self, target: Target, policy: CooldownPolicy, reason: str) -> bool:
        """Count a failure; True when the target now rests."""
        health = self.by_target.get(target)
        if health is None:
            health = self.by_target[target] = _Health()
        health.failures += 1
        health.reason = reason
        if health.failures >= policy.failures:
            health.until = self.clock.monotonic() + policy.seconds
            health.probe_until = 0.0
            health.since = self.clock.now()
            self.changes += 1
            if self.listener is not None:
                self.listener.rested(target, health.since, health.since + policy.seconds,
                                     health.failures, reason)
            return True
        return False

    def succeeded(self, target: Target) -> None:
        health = self.by_target.pop(target, None)
        if health is not None and health.until:
            self._woke(target)

    def clear(self, provider: str | None = None) -> None:
        for target in [t for t in self.by_target if provider in (None, t.provider)]:
            if self.by_target.pop(target).until:
                self._woke(target)

    def _woke(self, target: Target) -> None:
        self.changes += 1
        if self.listener is not None:
            self.listener.woke(target)

    def rest_until(self, target: Target, since: float, until: float, failures: int,
                   reason: str) -> None:
        """Rest `target` until `until` (wall time), as another process does: a rest of its
        own that lasts as long already is left as it is."""
        mono = self.clock.monotonic() + (until - self.clock.now())
        health = self.by_target.get(target)
        if health is None:
            health = self.by_target[target] = _Health()
        elif health.until >= mono - 0.5:  # the same rest, seen again
            return
        health.failures = max(health.failures, failures)
        health.until, health.probe_until = mono, 0.0
        health.since, health.reason = since, reason

    def wake_all_but(self, resting: Iterable[Target]) -> None:
        """End the rests still going here of targets not in `resting` (what every process
        rests now): a probe answered elsewhere, or a reset."""
        keep = set(resting)
        mono = self.clock.monotonic()
        for target in [t for t, h in self.by_target.items() if h.until > mono and t not in keep]:
            del self.by_target[target]

    def rests(self) -> list[Rest]:
        """Targets resting now (their probe not yet due)."""
        mono, wall = self.clock.monotonic(), self.clock.now()
        return [
            Rest(target, health.since, wall + (health.until - mono), health.reason)
            for target, health in self.by_target.items()
            if health.until > mono
        ]


@dataclass(frozen=True, slots=True)
class KeyRest:
    """One key of a provider's `api_keys` resting after a refusal (401, 403, 429...)."""

    until: float  # monotonic
    since: float  # wall time the rest began
    reason: str


class KeyRestListener(Protocol):
    """Who hears the rests of keys that begin and end here (server/shared_routing.py); a
    key is named by its provider and id (routing/policy.py `key_id`), never its value."""

    def key_rested(self, provider: str, key: str, since: float, until: float,
                   reason: str) -> None: ...

    def key_woke(self, provider: str, key: str) -> None: ...


class KeyRests:
    """The keys of `api_keys` that rest, by (provider, key id): a refused key rests for a
    while (providers/credentials.py decides how long) and the provider's other keys serve.
    Kept here, in the process's one RoutingState, rather than in the provider's credentials:
    a reload that rebuilds the provider (its list edited, reordered) keeps each rest with its
    key. Entries whose rest is over are dropped at each new rest, so the dict holds at most
    the keys refused within the longest rest.

    Shared as the cooldowns are: a `listener` hears each rest that begins here (with its end
    in wall time) and each that a reset ends; `rest_until` rests a key as another process
    does, `wake_all_but` ends the rests no process holds any more (a reset elsewhere), and
    `changes` grows with every rest that begins or ends here."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_key: dict[tuple[str, str], KeyRest] = {}
        self.listener: KeyRestListener | None = None
        self.changes = 0

    def rest(self, provider: str, key: str, seconds: float, reason: str) -> None:
        mono = self.clock.monotonic()
        for over in [k for k, r in self.by_key.items() if r.until <= mono]:
            del self.by_key[over]
        until = mono + seconds
        known = self.by_key.get((provider, key))
        if known is None or known.until < until:
            since = self.clock.now()
            self.by_key[provider, key] = KeyRest(until, since, reason)
            self.changes += 1
            if self.listener is not None:
                self.listener.key_rested(provider, key, since, since + seconds, reason)

    def rest_until(self, provider: str, key: str, since: float, until: float,
                   reason: str) -> None:
        """Rest a key until `until` (wall time), as another process does: a rest here that
        lasts as long already is left as it is."""
        mono = self.clock.monotonic() + (until - self.clock.now())
        known = self.by_key.get((provider, key))
        if known is None or known.until < mono - 0.5:  # not the same rest seen again
            self.by_key[provider, key] = KeyRest(mono, since, reason)

    def wake_all_but(self, resting: Iterable[tuple[str, str]]) -> None:
        """End the rests still going here of keys not in `resting` (what every process
        rests now, by (provider, key id)): a reset elsewhere."""
        keep = set(resting)
        mono = self.clock.monotonic()
        for found in [k for k, r in self.by_key.items() if r.until > mono and k not in keep]:
            del self.by_key[found]

    def until(self, provider: str, key: str) -> float:
        """The monotonic time the key wakes (0.0: it does not rest)."""
        found = self.by_key.get((provider, key)) if self.by_key else None
        return found.until if found is not None else 0.0

    def current(self, provider: str, key: str) -> tuple[float, float, str] | None:
        """The key's rest while it lasts, for /v1/quota: (since, until, reason), wall times."""
        found = self.by_key.get((provider, key))
        mono = self.clock.monotonic()
        if found is None or found.until <= mono:
            return None
        return found.since, self.clock.now() + (found.until - mono), found.reason

    def clear(self, provider: str | None = None) -> None:
        mono = self.clock.monotonic()
        for found in [k for k in self.by_key if provider in (None, k[0])]:
            if self.by_key.pop(found).until > mono:
                self.changes += 1
                if self.listener is not None:
                    self.listener.key_woke(*found)
