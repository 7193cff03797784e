"""Model name -> ordered list of upstream targets.

Resolution order for a client's model name:
1. `provider/model` where `provider` is configured: straight to that provider.
2. A route whose key equals the name exactly.
3. Glob routes in file order (fnmatch syntax, case-sensitive, `*` also matches `/`).
4. The `default` route.
5. Otherwise GatewayError("not_found") listing what is routable (or, with no provider at all,
   how to configure one).
A target written `provider` or `provider/*` means "the client's own model name". Patterns are
compiled once in `Router.__init__`; answers are cached per model name in a bounded dict, so
the hot path is one dict lookup.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from babelgate.canonical import GatewayError
from babelgate.config import NO_PROVIDER_HINT, Settings

DEFAULT_ROUTE = "default"
OWN_NAME = "*"  # the model part of a target that stands for the client's own model name
CACHE_SIZE = 4096  # distinct model names remembered; clients use a handful


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str  # the upstream's model name


# A compiled target: (provider, model or None for the client's own name).
_Spec = tuple[str, str | None]
_Matcher = Callable[[str], object]


def _parse_target(target: str) -> _Spec:
    provider, _, model = target.partition("/")
    return provider, (model if model and model != OWN_NAME else None)


def _compile(targets: Sequence[str]) -> tuple[_Spec, ...]:
    return tuple(_parse_target(t) for t in targets)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class Router:
    """Resolves client model names against the configured routes. Immutable after init."""

    def __init__(self, settings: Settings) -> None:
        self._providers = frozenset(settings.providers)
        routes = settings.routes
        self._exact = {key: _compile(targets) for key, targets in routes.items()}
        # fnmatch.translate + re.match is fnmatchcase: case-sensitive on every platform.
        self._globs: list[tuple[_Matcher, tuple[_Spec, ...]]] = [
            (re.compile(fnmatch.translate(key)).match, _compile(targets))
            for key, targets in routes.items()
            if key != DEFAULT_ROUTE and _is_glob(key)
        ]
        self._default = self._exact.get(DEFAULT_ROUTE)
        self._routable = _routable(routes, settings.providers)
        self._cache: dict[str, tuple[Target, ...]] = {}

    def resolve(self, model: str) -> list[Target]:
        """The ordered fallback list for `model`; raises GatewayError(not_found)."""
        hit = self._cache.get(model)
        if hit is None:
            hit = self._resolve(model)
            if len(self._cache) >= CACHE_SIZE:
                del self._cache[next(iter(self._cache))]  # oldest first: dicts keep order
            self._cache[model] = hit
        return list(hit)

    def routable(self) -> list[str]:
        """Route patterns and provider/model targets, for /v1/models and 404 messages."""
        return list(self._routable)

    # ------------------------------------------------------------------ internals

    def _resolve(self, model: str) -> tuple[Target, ...]:
        provider, slash, rest = model.partition("/")
        if slash and rest and provider in self._providers:
            return (Target(provider, rest),)
        specs = self._match(model)
        if specs is None:
            raise self._not_found(model)
        return tuple(Target(p, m if m is not None else model) for p, m in specs)

    def _match(self, model: str) -> tuple[_Spec, ...] | None:
        exact = self._exact.get(model)
        if exact is not None:
            return exact
        for matches, specs in self._globs:
            if matches(model):
                return specs
        return self._default

    def _not_found(self, model: str) -> GatewayError:
        if not self._providers:
            return GatewayError("not_found", NO_PROVIDER_HINT)
        routable = ", ".join(self._routable) or "(no routes; use 'provider/model')"
        return GatewayError("not_found", f"no route for model {model!r}; routable: {routable}")


def _routable(routes: dict[str, list[str]], providers: Iterable[str]) -> tuple[str, ...]:
    """Patterns (except `default`), then targets, then `provider/*` for every provider (a
    client may always name `provider/model` directly); each once, in file order."""
    seen: dict[str, None] = {}
    for key in routes:
        if key != DEFAULT_ROUTE:
            seen.setdefault(key)
    for targets in routes.values():
        for target in targets:
            provider, model = _parse_target(target)
            seen.setdefault(f"{provider}/{model if model is not None else OWN_NAME}")
    for provider in providers:
        seen.setdefault(f"{provider}/{OWN_NAME}")
    return tuple(seen)
