"""The values between the limiter and the server: what a key allows, a permit, a refusal.

What this module promises:
- `Limited` is what the limiter reads of a gateway key (storage.keys.KeyRecord has it): its
  stable id, its name for messages, and its limits, None where it has none.
- A `Permit` belongs to one request: it remembers what admission took (the token window the
  estimate went into, the concurrency slot) and what the request's attempts used (`charge`),
  so that `Limiter.finish` gives back exactly that. It is never shared between requests.
- A `Refusal` says which limit refused, when to try again and the message for the client;
  `error()` is the GatewayError the client's codec renders (429, or the budget's quota
  error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from babelgate.canonical import GatewayError

from .periods import Period, reset_text

RefusalKind = Literal["rpm", "tpm", "concurrency", "budget"]


class Limited(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def rpm(self) -> int | None: ...
    @property
    def tpm(self) -> int | None: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def budget(self) -> float | None: ...
    @property
    def budget_period(self) -> Period | None: ...


def has_limits(key: Limited) -> bool:
    return bool(key.rpm or key.tpm or key.concurrency or key.budget is not None)


class Permit(msgspec.Struct, gc=False):
    """What one admitted request holds until it finishes. A struct: made on every request
    of a key with limits, where a class's `__init__` cost four times as much. It refers to
    nothing that refers back to it, so the collector need not track it (gc=False)."""

    key: Limited
    local: bool  # admitted by this process's counts (no Redis, or Redis away)
    tpm_window: int = -1  # the window the token estimate went into
    tpm_reserved: int = 0
    slot: str | None = None  # the concurrency slot's name in Redis
    tokens: int = 0  # used by the request's attempts so far
    cost: float = 0.0  # USD, likewise (attempts without a known price add nothing)
    finished: bool = False

    def charge(self, tokens: int, cost: float | None) -> None:
        """One finished attempt's usage (called where its usage record is built)."""
        self.tokens += tokens
        if cost:
            self.cost += cost


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    retry_after: float  # seconds
    message: str

    def error(self) -> GatewayError:
        if self.kind == "budget":
            return GatewayError("budget", self.message, retry_after=self.retry_after)
        return GatewayError("rate_limit", self.message, retry_after=self.retry_after,
                            code="rate_limit_exceeded")


UNITS: dict[RefusalKind, str] = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
}


def over_limit(key: Limited, kind: RefusalKind, limit: float, retry: float) -> Refusal:
    return Refusal(kind, retry, f"API key '{key.name}' is over its limit of {limit:g} "
                                f"{UNITS[kind]}; retry in {retry:g} s")


def budget_spent(key: Limited, spent: float, end: float, now: float) -> Refusal:
    period = "today" if key.budget_period == "day" else "this month"
    return Refusal("budget", float(max(1, int(end - now) + 1)),
                   f"API key '{key.name}' has spent its budget of ${key.budget:.2f} for "
                   f"{period} (${spent:.2f} spent); it resets at {reset_text(end)}")
