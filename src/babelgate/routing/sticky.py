"""Stickiness: a conversation stays on the target that served it, and on the key of a
provider's `api_keys` that served it, so that the provider's prompt cache keeps working while
requests are spread by weight or over keys.

What this module promises:
- `Stickiness` maps a conversation key (the server derives it from the client's session
  header, its session metadata or prompt cache key, else its first user message) to the
  target (`Target`) or the key (`KeyChoice`) that last served that conversation.
- An entry idle for `ttl` seconds (an hour by default) is gone; at most `max_entries` are
  kept, the least recently used going first, so memory is bounded whatever the traffic.
- Entries are immutable pairs (target, last use); times are the clock's monotonic readings.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .clock import Clock


class _OfProvider(Protocol):
    @property
    def provider(self) -> str: ...


@dataclass(frozen=True, slots=True)
class KeyChoice:
    """The key of a provider's `api_keys` a conversation is on: its id (policy.key_id)."""

    provider: str
    key: str


Choice = TypeVar("Choice", bound=_OfProvider)


class Stickiness(Generic[Choice]):
    def __init__(self, clock: Clock, ttl: float = 3600.0, max_entries: int = 10_000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Choice, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Choice | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock.monotonic() - entry[1] >= self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)  # the least recently used go first
        return entry[0]

    def put(self, key: str, target: Choice) -> None:
        entries = self._entries
        entries[key] = (target, self.clock.monotonic())
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def clear(self, provider: str | None = None) -> None:
        if provider is None:
            self._entries.clear()
            return
        for key in [k for k, (t, _) in self._entries.items() if t.provider == provider]:
            del self._entries[key]
