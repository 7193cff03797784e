"""What routing remembers between requests: cooldowns, quota marks, the rests of keys and
sticky conversations.

`RoutingState` is ONE object per process. The app creates it once and passes it to every
`Gateway(settings, routing=...)` it builds; a hot reload builds a new Gateway (and a new
RoutingPolicy) from the new settings around the SAME RoutingState, so a provider that is used
up or resting stays so across the reload. Keep it free of anything the settings decide:
thresholds and windows come in with each call, from the policy of the Gateway asking.

It is mutated only on the event loop (one thread), by routing/plan.py, the /v1/quota
endpoints and what the other processes learnt (server/shared_routing.py, the quota book's
sink and the cooldowns' listener: it writes marks to the database, which outlives a restart,
and shares marks and rests with the other processes of the deployment).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo

from .clock import SYSTEM_CLOCK, Clock
from .health import Cooldowns, KeyRests
from .quota import QuotaBook, QuotaMark, QuotaSink
from .router import Target
from .sticky import KeyChoice, Stickiness


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One key of a provider's `api_keys` as /v1/quota shows it: named by its place in the
    list as configured now (`#0`, `#1`...), never by its value."""

    key: str
    state: str  # ok | exhausted | cooling (refused, resting a while)
    since: float | None = None
    resets_at: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider as /v1/quota shows it; times are wall-clock Unix seconds. `keys`: its
    `api_keys`' states, when it has several."""

    name: str
    state: str  # ok | exhausted | cooling
    since: float | None = None
    resets_at: float | None = None
    reason: str | None = None
    keys: tuple[KeyStatus, ...] | None = None


class RoutingState:
    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        sink: QuotaSink | None = None,
        marks: Iterable[QuotaMark] = (),
        tz: tzinfo | None = None,  # calendar windows' time zone; None: the machine's
        random: Callable[[], float] = random.random,  # weighted picks; tests pass their own
        sticky_ttl: float = 3600.0,  # seconds a conversation stays stuck while idle
        sticky_entries: int = 10_000,  # conversations remembered at most
    ) -> None:
        self.clock = clock
        self.tz = tz
        self.random = random
        self.sticky: Stickiness[Target] = Stickiness(clock, sticky_ttl, sticky_entries)
        # Which key of a provider's `api_keys` each conversation is on, by
        # "provider\0conversation" (routing/plan.py, RoutedKeys).
        self.sticky_keys: Stickiness[KeyChoice] = Stickiness(clock, sticky_ttl, sticky_entries)
        self.cooldowns = Cooldowns(clock)
        self.key_rests = KeyRests(clock)
        self.quota = QuotaBook(sink)
        self.quota.load(marks)

    def reset(self, provider: str | None = None) -> None:
        """Forget that `provider` (None: every provider) or its keys were used up or
        resting, and which conversations it served."""
        self.quota.reset(provider)
        self.cooldowns.clear(provider)
        self.key_rests.clear(provider)
        self.sticky.clear(provider)
        self.sticky_keys.clear(provider)

    def status(self, providers: Iterable[str],
               keys: Mapping[str, tuple[str, ...]] | None = None) -> list[ProviderStatus]:
        """The state of each of `providers`; `keys`: the ids of the `api_keys` of those with
        several (RoutingPolicy.keys), each shown with its own state."""
        now = self.clock.now()
        marks = self.quota.current(now)
        key_marks = self.quota.current_keys(now)
        rests: dict[str, ProviderStatus] = {}
        for rest in self.cooldowns.rests():
            known = rests.get(rest.target.provider)
            if known is None or (known.resets_at or 0) < rest.until:
                rests[rest.target.provider] = ProviderStatus(
                    rest.target.provider, "cooling", rest.since, rest.until,
                    f"{rest.target.provider}/{rest.target.model}: {rest.reason}")
        out = []
        for name in providers:
            mark = marks.get(name)
            if mark is not None:
                shown = ProviderStatus(name, "exhausted", mark.since, mark.resets_at,
                                       mark.reason)
            else:
                shown = rests.get(name) or ProviderStatus(name, "ok")
            ids = keys.get(name) if keys else None
            if ids:
                shown = replace(shown, keys=tuple(
                    self._key_status(name, index, key, key_marks.get((name, key)))
                    for index, key in enumerate(ids)))
            out.append(shown)
        return out

    def _key_status(self, provider: str, index: int, key: str,
                    mark: QuotaMark | None) -> KeyStatus:
        label = f"#{index}"
        if mark is not None:  # used up says more than resting: it lasts till the reset
            return KeyStatus(label, "exhausted", mark.since, mark.resets_at, mark.reason)
        rest = self.key_rests.current(provider, key)
        if rest is not None:
            since, until, reason = rest
            return KeyStatus(label, "cooling", since, until, reason)
        return KeyStatus(label, "ok")
