"""The routing rules that come from the configuration: retries, cooldowns, quota windows.

`RoutingPolicy.from_settings(settings)` compiles them once per configuration (a hot reload
compiles a new one; the memory of what failed lives in routing/state.py and outlives it). It
is immutable and shared by every request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from babelgate.config import QuotaConfig, Settings

from .health import CooldownPolicy
from .quota import DEFAULT_QUOTA, QuotaPolicy
from .retry import NO_RETRY, RetryPolicy
from .windows import parse_window


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    retry: RetryPolicy = NO_RETRY
    cooldown: CooldownPolicy | None = None  # None: failing targets never rest
    quotas: Mapping[str, QuotaPolicy] = field(default_factory=lambda: MappingProxyType({}))
    # Providers with a `weight`: a route with one of them among its targets spreads its
    # requests (routing/plan.py); others weigh 1 there.
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # Providers with several `api_keys`: each key's id (`key_id`), in the list's order. Each
    # key has its own quota marks and rests; the provider is used up only when all its keys
    # are.
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def quota_for(self, provider: str) -> QuotaPolicy:
        return self.quotas.get(provider, DEFAULT_QUOTA)

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingPolicy:
        retry = settings.retry
        cooldown = settings.cooldown
        return cls(
            retry=RetryPolicy(retry.attempts, retry.backoff, retry.max_backoff)
            if retry is not None else NO_RETRY,
            cooldown=CooldownPolicy(cooldown.failures, cooldown.seconds)
            if cooldown is not None else None,
            quotas=MappingProxyType({
                name: _quota(cfg.quota)
                for name, cfg in settings.providers.items() if cfg.quota is not None
            }),
            weights=MappingProxyType({
                name: cfg.weight for name, cfg in settings.providers.items()
                if cfg.weight is not None
            }),
            keys=MappingProxyType({
                name: tuple(key_id(value) for value in cfg.api_keys)
                for name, cfg in settings.providers.items()
                if cfg.api_keys and len(cfg.api_keys) > 1
            }),
        )


def key_id(value: str) -> str:
    """What routing, the database and other processes call one key of `api_keys`: a short
    hash of it. Its place in the list would move its quota marks and rests to another key when
    the list is edited and reloaded; the key itself must never be stored or shown. 48 bits of
    SHA-256 behind a prefix of our own: two keys of a provider do not meet, and a key cannot
    be read back from it (keys carry far more than 48 bits)."""
    return hashlib.sha256(b"babelgate api_keys\0" + value.encode()).hexdigest()[:12]


def _quota(config: QuotaConfig) -> QuotaPolicy:
    return QuotaPolicy(
        window=parse_window(config.window, config.reset),
        statuses=frozenset(x for x in config.on if isinstance(x, int)),
        phrases=tuple(x.lower() for x in config.on if isinstance(x, str) and x),
    )
