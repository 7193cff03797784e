"""Limits counted in this process: the store without Redis, and the fallback while Redis is
away.

What this module promises: `admit` checks every limit of a key (budget, requests/minute,
tokens/minute, concurrency) before it takes anything, so a refused request leaves no trace;
admitted, it counts the request, reserves the token estimate in the current window and takes
a concurrency slot. `finish` replaces the estimate with what was used (in the window the
estimate went into, while that window still counts), adds the cost to the period's spend and
frees the slot. All of it is plain arithmetic on one small object per key: no lock is needed
on one event loop, and nothing awaits. `admit` and `finish` run on every request of a key
with limits, so they are written with few calls (each Python call costs as much as the
arithmetic here): the windows are weighed inline (windows.py says how).
"""

from __future__ import annotations

from .periods import Period, Periods
from .permit import Limited, Permit, Refusal, budget_spent, over_limit
from .windows import WINDOW, retry_after


class _KeyCounts:
    """One key's counts. Both per-minute limits use the same windows (`index`), so one
    comparison tells whether they moved on: `requests` and `tokens` are the current
    window's counts, the `_previous` ones the window before."""

    __slots__ = ("active", "index", "requests", "requests_previous", "spend", "spend_end",
                 "spend_period", "spend_start", "tokens", "tokens_previous")

    def __init__(self) -> None:
        self.index = -1
        self.requests = self.requests_previous = 0
        self.tokens = self.tokens_previous = 0
        self.active = 0
        self.spend_start = 0.0  # the budget period the spend is for
        self.spend_end = 0.0  # ... and where it ends (what admit answers a spent budget)
        self.spend_period: Period | None = None
        self.spend = 0.0

    def roll(self, index: int) -> None:
        """Window `index` begins: the current counts become the previous ones when it is the
        next window, else (a minute or more without a request) nothing counts any more."""
        if index == self.index + 1:
            self.requests_previous, self.tokens_previous = self.requests, self.tokens
        else:
            self.requests_previous = self.tokens_previous = 0
        self.requests = self.tokens = 0
        self.index = index


class MemoryLimits:
    def __init__(self) -> None:
        self._keys: dict[str, _KeyCounts] = {}
        self.periods = Periods()
        # Spend read from the usage table at start, per (key id, period start).
        self._seeds: dict[tuple[str, float], float] = {}

    def seed(self, key_id: str, start: float, spent: float) -> None:
        self._seeds[(key_id, start)] = spent
        counts = self._keys.get(key_id)
        if counts is not None and counts.spend_start == start:
            counts.spend = max(counts.spend, spent)

    def spent(self, key: Limited, now: float) -> float:
        """What `key` spent in its budget period so far (0 without a budget)."""
        if key.budget is None or key.budget_period is None:
            return 0.0
        counts = self._counts(key.id)
        self._period(key.id, counts, key.budget_period, now)
        return counts.spend

    def _counts(self, key_id: str) -> _KeyCounts:
        counts = self._keys.get(key_id)
        if counts is None:
            counts = self._keys[key_id] = _KeyCounts()
        return counts

    def _period(self, key_id: str, counts: _KeyCounts, period: Period, now: float) -> float:
        """The end of the key's budget period, moving its spend to a new period if one began."""
        start, end = self.periods.current(period, now)
        if counts.spend_start != start:
            counts.spend_start = start
            counts.spend = self._seeds.pop((key_id, start), 0.0)
        counts.spend_end, counts.spend_period = end, period
        return end

    def admit(self, key: Limited, estimate: int, now: float) -> Permit | Refusal:
        counts = self._keys.get(key.id) or self._counts(key.id)
        budget = key.budget
        if budget is not None and key.budget_period is not None:
            # Still in the period the spend is for: nothing to move (no call).
            if (counts.spend_period == key.budget_period
                    and counts.spend_start <= now < counts.spend_end):
                end = counts.spend_end
            else:
                end = self._period(key.id, counts, key.budget_period, now)
            if counts.spend >= budget:
                return budget_spent(key, counts.spend, end, now)
        index = int(now // WINDOW)
        if index != counts.index:
            counts.roll(index)
        elapsed = now - index * WINDOW
        # The previous window's weight in the last minute (windows.py's formula, inline).
        weight = 1.0 - elapsed / WINDOW
        rpm, tpm, concurrency = key.rpm, key.tpm, key.concurrency
        if rpm and counts.requests_previous * weight + counts.requests + 1 > rpm:
            wait = retry_after(counts.requests, counts.requests_previous, elapsed, 1, rpm)
            return over_limit(key, "rpm", rpm, wait)
        if tpm:
            # A request larger than the whole limit waits for a clear minute, not forever.
            estimate = estimate if estimate < tpm else tpm  # min(), without its call
            if counts.tokens_previous * weight + counts.tokens + estimate > tpm:
                wait = retry_after(counts.tokens, counts.tokens_previous, elapsed, estimate,
                                   tpm)
                return over_limit(key, "tpm", tpm, wait)
        if concurrency and counts.active >= concurrency:
            return over_limit(key, "concurrency", concurrency, 1.0)
        if rpm:
            counts.requests += 1
        if concurrency:
            counts.active += 1
        if tpm:
            counts.tokens += estimate
            return Permit(key, True, index, estimate)
        return Permit(key, True)

    def finish(self, permit: Permit, now: float) -> float | None:
        """Gives back what `permit` took; the key's spend in its budget period when the
        permit added to it, else None."""
        key = permit.key
        counts = self._keys.get(key.id) or self._counts(key.id)
        window = permit.tpm_window
        if window >= 0:
            delta = permit.tokens - permit.tpm_reserved
            # max(0, ...) without its call (each costs more than the arithmetic here).
            if counts.index == window:
                tokens = counts.tokens + delta
                counts.tokens = tokens if tokens > 0 else 0
            elif counts.index == window + 1:
                tokens = counts.tokens_previous + delta
                counts.tokens_previous = tokens if tokens > 0 else 0
        if key.concurrency and counts.active > 0:
            counts.active -= 1
        cost = permit.cost
        if not cost or key.budget is None or key.budget_period is None:
            return None
        if not (counts.spend_period == key.budget_period
                and counts.spend_start <= now < counts.spend_end):
            self._period(key.id, counts, key.budget_period, now)
        counts.spend += cost
        return counts.spend

    def add_spend(self, key: Limited, cost: float, now: float) -> None:
        if cost and key.budget is not None and key.budget_period is not None:
            counts = self._counts(key.id)
            self._period(key.id, counts, key.budget_period, now)
            counts.spend += cost
