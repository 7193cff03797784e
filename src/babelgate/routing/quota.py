"""Quota: which refusals mean "used up until the window resets", and who is used up now.

What this module promises:
- `exhaustion(error, policy)` is the one place that tells a used-up quota or balance from an
  ordinary failure. It is used up when:
  * the user's `quota.on` lists the error's HTTP status, or a substring of its message;
  * the codec read it so (`error.exhausted`: Gemini's RESOURCE_EXHAUSTED naming a per-day
    quota);
  * it is a billing refusal: HTTP 402, OpenAI's `insufficient_quota`, Anthropic's
    `billing_error` (the codecs map all of these to kind "billing");
  * Anthropic says the subscription's limit is spent: `anthropic-ratelimit-unified-status:
    rejected` on the refusal, or a message that says "credit balance is too low" or "usage
    limit" (the two ways Anthropic words a spent balance and a spent plan).
  A plain 429 is none of these: it is a rate limit, for retries and cooldowns.
- `stated_reset(error, now)` reads when the upstream says the quota comes back: the latest
  of `anthropic-ratelimit-*-reset` (Unix seconds or RFC 3339), `x-ratelimit-reset-*`
  (a duration such as "6m0s", or seconds) and Retry-After; None when it says nothing. A
  stated time wins over the configured window. A time more than `LONGEST_STATED` ahead (or
  not a number at all: "inf") is not taken as said: no quota waits that long, and such a
  time may not even be written as a date.
- `QuotaBook` holds the marks (provider -> until when, and (provider, key id) -> until
  when for the keys of a provider's `api_keys`), drops a mark once its reset time has passed,
  and tells a `QuotaSink` (the database, wired by the app) about every change, so the marks
  survive a restart. Marks are immutable values; a key is named by its id (routing/policy.py
  `key_id`: a short hash, never its value nor its place in the list, so a mark stays with its
  key when the list is reordered or edited and the configuration reloaded).
  `replace_all` takes what the database (or Redis) says now, for the marks another process
  made (server/shared_routing.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from babelgate.canonical import GatewayError

from .windows import Window, parse_duration

# A used-up quota without a `quota:` section rests the provider this long, unless the
# upstream says when it comes back.
DEFAULT_WINDOW = Window("rolling", seconds=3600.0)
# Anthropic's wording for a spent prepaid balance and a spent plan (lower-case).
_SPENT_PHRASES = ("credit balance is too low", "usage limit")
_REASON_LENGTH = 200
# The furthest reset an upstream may state: ten years (the longest window is a month; a plan
# may still name a far date), well inside what a date can show (year 9999).
LONGEST_STATED = 10 * 366 * 86400.0


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    window: Window = DEFAULT_WINDOW
    statuses: frozenset[int] = frozenset()
    phrases: tuple[str, ...] = ()  # lower-case


DEFAULT_QUOTA = QuotaPolicy()


PROVIDER = ""  # the `key` of a mark on the provider as a whole


@dataclass(frozen=True, slots=True)
class QuotaMark:
    provider: str
    since: float  # wall time of the refusal
    resets_at: float  # wall time it comes back
    reason: str
    key: str = PROVIDER  # the id of a key of the provider's `api_keys`; PROVIDER: all of it


class QuotaSink(Protocol):
    """Where marks are kept across restarts (storage/quota_marks.py); called on the event
    loop, so it must only issue the work."""

    def save(self, provider: str, key: str, since: float, resets_at: float,
             reason: str) -> None: ...

    def delete(self, provider: str | None, key: str | None = None) -> None: ...


def exhaustion(error: GatewayError, policy: QuotaPolicy) -> str | None:
    """Why `error` says the provider's quota is used up, or None when it does not."""
    message = error.message.lower()
    if error.status in policy.statuses or any(p in message for p in policy.phrases):
        return _reason("matched quota.on", error)
    if error.exhausted:
        return _reason("daily quota used up", error)
    if error.kind == "billing" or error.status == 402 or error.code == "insufficient_quota":
        return _reason("quota or balance used up", error)
    headers = error.headers
    if headers and headers.get("anthropic-ratelimit-unified-status") == "rejected":
        return _reason("plan usage limit reached", error)
    if any(phrase in message for phrase in _SPENT_PHRASES):
        return _reason("quota or balance used up", error)
    return None


def _reason(what: str, error: GatewayError) -> str:
    return f"{what}: HTTP {error.status} {error.message}"[:_REASON_LENGTH]


def stated_reset(error: GatewayError, now: float) -> float | None:
    """When the upstream says the quota comes back (the latest time it names), or None."""
    found: list[float] = []
    if error.retry_after is not None:
        found.append(now + error.retry_after)
    for header, value in (error.headers or {}).items():
        name = header.lower()
        if name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            moment = _moment(value, now)
        elif name.startswith("x-ratelimit-reset"):
            seconds = parse_duration(value)
            moment = now + seconds if seconds is not None else _moment(value, now)
        else:
            continue
        if moment is not None:
            found.append(moment)
    found = [m for m in found if math.isfinite(m) and m - now <= LONGEST_STATED]
    return max(found) if found else None


def _moment(value: str, now: float) -> float | None:
    """Unix seconds (large numbers), seconds from now (small ones) or an RFC 3339 time."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if number > 1e9 else now + number
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class QuotaBook:
    sink: QuotaSink | None = None
    marks: dict[str, QuotaMark] = field(default_factory=dict)  # providers used up
    key_marks: dict[tuple[str, str], QuotaMark] = field(default_factory=dict)  # their keys
    # Grows with every change made here (a mark, a reset, a mark gone at its reset): a read
    # of the shared marks issued before a change may not show it (server/shared_routing.py).
    changes: int = 0

    def load(self, marks: Iterable[QuotaMark]) -> None:
        for mark in marks:
            if mark.key == PROVIDER:
                self.marks[mark.provider] = mark
            else:
                self.key_marks[mark.provider, mark.key] = mark

    def replace_all(self, marks: Iterable[QuotaMark]) -> None:
        """Hold exactly `marks` from now on (what the shared store says): marks made or
        reset by another process take effect here."""
        self.marks.clear()
        self.key_marks.clear()
        self.load(marks)

    def exhausted(self, provider: str, now: float) -> QuotaMark | None:
        """The provider's mark while it holds; a mark whose reset has come goes."""
        mark = self.marks.get(provider)
        if mark is not None and now >= mark.resets_at:
            del self.marks[provider]
            self.changes += 1
            if self.sink is not None:
                self.sink.delete(provider, PROVIDER)
            return None
        return mark

    def key_exhausted(self, provider: str, key: str, now: float) -> QuotaMark | None:
        """The mark of the provider's key with id `key` while it holds."""
        mark = self.key_marks.get((provider, key))
        if mark is not None and now >= mark.resets_at:
            del self.key_marks[provider, key]
            self.changes += 1
            if self.sink is not None:
                self.sink.delete(provider, key)
            return None
        return mark

    def mark(self, provider: str, since: float, resets_at: float, reason: str,
             key: str = PROVIDER) -> QuotaMark:
        mark = QuotaMark(provider, since, resets_at, reason, key)
        if key == PROVIDER:
            self.marks[provider] = mark
        else:
            self.key_marks[provider, key] = mark
        self.changes += 1
        if self.sink is not None:
            self.sink.save(provider, key, since, resets_at, reason)
        return mark

    def reset(self, provider: str | None = None) -> None:
        """Forget the marks of every provider (None), or of one and all its keys."""
        if provider is None:
            self.marks.clear()
            self.key_marks.clear()
        else:
            self.marks.pop(provider, None)
            for found in [k for k in self.key_marks if k[0] == provider]:
                del self.key_marks[found]
        self.changes += 1
        if self.sink is not None:
            self.sink.delete(provider)

    def current(self, now: float) -> Mapping[str, QuotaMark]:
        for provider in list(self.marks):
            self.exhausted(provider, now)
        return self.marks

    def current_keys(self, now: float) -> Mapping[tuple[str, str], QuotaMark]:
        for provider, key in list(self.key_marks):
            self.key_exhausted(provider, key, now)
        return self.key_marks

    def soonest_key_reset(self, provider: str, keys: Iterable[str]) -> float | None:
        """When the first of the provider's used-up keys among `keys` (those configured now)
        comes back (None: none is)."""
        marks = self.key_marks
        times = [marks[provider, key].resets_at for key in keys if (provider, key) in marks]
        return min(times) if times else None
