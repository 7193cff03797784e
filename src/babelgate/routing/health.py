"""Cooldowns: a target that keeps failing rests, then one probe request decides.

What this module promises:
- A target (provider and upstream model) with `failures` consecutive failures worth a retry
  (connection errors, timeouts, 429, 5xx) rests for `seconds`. A success clears its count.
- When the rest is over, the first request to pick it is its probe; while the probe is out,
  the target still counts as resting for everyone else. The probe's success clears it, its
  failure starts a new rest. A probe that never reports (its client went away) is given up
  after another `seconds`, and the next request probes.
- Nothing here decides order: `resting(target)` is what routing/plan.py asks. Only targets
  that failed have an entry, so a healthy gateway pays one empty-dict check per request.
Times are the clock's monotonic readings, plus the wall time a rest began for /v1/quota.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class Cooldowns:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_target: dict[Target, _Health] = {}

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
            return True
        return False

    def succeeded(self, target: Target) -> None:
        self.by_target.pop(target, None)

    def clear(self, provider: str | None = None) -> None:
        if provider is None:
            self.by_target.clear()
            return
        for target in [t for t in self.by_target if t.provider == provider]:
            del self.by_target[target]

    def rests(self) -> list[Rest]:
        """Targets resting now (their probe not yet due)."""
        mono, wall = self.clock.monotonic(), self.clock.now()
        return [
            Rest(target, health.since, wall + (health.until - mono), health.reason)
            for target, health in self.by_target.items()
            if health.until > mono
        ]
