"""What routing remembers between requests: cooldowns, quota marks and sticky conversations.

`RoutingState` is ONE object per process. The app creates it once and passes it to every
`Gateway(settings, routing=...)` it builds; a hot reload builds a new Gateway (and a new
RoutingPolicy) from the new settings around the SAME RoutingState, so a provider that is used
up or resting stays so across the reload. Keep it free of anything the settings decide:
thresholds and windows come in with each call, from the policy of the Gateway asking.

It is mutated only on the event loop (one thread), by routing/plan.py and the /v1/quota
endpoints; quota marks are written through to a `QuotaSink` (the embedded database) so that
they survive a restart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import tzinfo

from .clock import SYSTEM_CLOCK, Clock
from .health import Cooldowns
from .quota import QuotaBook, QuotaMark, QuotaSink
from .sticky import Stickiness


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider as /v1/quota shows it; times are wall-clock Unix seconds."""

    name: str
    state: str  # ok | exhausted | cooling
    since: float | None = None
    resets_at: float | None = None
    reason: str | None = None


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
        self.sticky = Stickiness(clock, sticky_ttl, sticky_entries)
        self.cooldowns = Cooldowns(clock)
        self.quota = QuotaBook(sink)
        self.quota.load(marks)

    def reset(self, provider: str | None = None) -> None:
        """Forget that `provider` (None: every provider) was used up or resting, and which
        conversations it served."""
        self.quota.reset(provider)
        self.cooldowns.clear(provider)
        self.sticky.clear(provider)

    def status(self, providers: Iterable[str]) -> list[ProviderStatus]:
        marks = self.quota.current(self.clock.now())
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
                out.append(ProviderStatus(name, "exhausted", mark.since, mark.resets_at,
                                          mark.reason))
            else:
                out.append(rests.get(name) or ProviderStatus(name, "ok"))
        return out
