"""How long to wait before trying the same target again.

`RetryPolicy(attempts, backoff, max_backoff)`: a target gets `attempts` tries (the first
included) for failures worth retrying (routing/plan.py says which). Before try n+1 it waits
`backoff * 2**(n-1)` seconds with full jitter in its upper half (so clients that failed
together do not come back together), never more than `max_backoff`. When the upstream said
how long to wait (Retry-After, Gemini's retryDelay), that is the wait instead, also capped
at `max_backoff`: a longer wait would hold the client for nothing when another target can
serve it now.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1
    backoff: float = 0.5
    max_backoff: float = 8.0
    # A number in [0, 1); tests pass a constant.
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, tries: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `tries` failed tries of one target, before the next."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.backoff * 2.0 ** (tries - 1), self.max_backoff)
        jitter: float = self.random()
        return base * (0.5 + 0.5 * jitter)


NO_RETRY = RetryPolicy()
