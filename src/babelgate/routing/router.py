"""Model name -> ordered list of upstream targets.

Resolution order for a client's model name:
1. `provider/model` where `provider` is configured: straight to that provider.
2. A route whose key equals the name exactly.
3. Glob routes in file order (fnmatch syntax, case-sensitive, `*` also matches `/`).
4. The `default` route, except for a name written `provider/model` whose provider is not
   configured: that is a mistyped direct target, and silently serving it elsewhere would hide
   the typo (a route such as `"meta-llama/*": openrouter` sends such names on purpose).
5. Otherwise GatewayError("not_found") listing what is routable (or, with no provider at all,
   how to configure one; for an unknown provider, the configured ones).
A target written `provider` or `provider/*` means "the client's own model name". Patterns are
compiled once in `Router.__init__`; answers are cached per model name in a bounded dict, so
the hot path is one dict lookup. `route()` also names what decided (`Route.header`,
`Route.log`: the pattern, `direct` or `default`), for the x-babelgate-route header and the
access log; rules (rules.py) are checked before the routes and name themselves the same way.

`model_ids()` is what /v1/models lists: concrete names a model picker can send. A glob is no
name, so for a glob route it lists the known model names (`offered`, the price catalogue's
vendor ids: books/prices.py) that the glob decides, as a request for them would find it:
`"claude-*": deepseek/deepseek-chat` offers claude-sonnet-4-5, claude-opus-4-8 and the rest,
each of which then routes through that glob. A glob that matches even the empty name
(`*`) stands for anything, as `default` does, and offers nothing.
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


@dataclass(frozen=True, slots=True)
class Route:
    """The targets for one request, and what chose them, written once: `header` is the
    x-babelgate-route value (`rule:NAME`, `route:PATTERN`, `direct`, `default`, or a rule's
    and a route's together: `rule:NAME, route:PATTERN`), `log` the access log's
    `rule=... route=...`."""

    targets: tuple[Target, ...]
    header: str
    log: str


def named_route(
    targets: tuple[Target, ...], route: str | None, rule: str | None = None
) -> Route:
    """A Route chosen by `route` (`route:PATTERN`, `direct`, `default`; None when a rule's
    own targets were used) and/or the rule labelled `rule`."""
    header = ", ".join(part for part in (rule and f"rule:{rule}", route) if part)
    shown = route.removeprefix("route:") if route else "-"
    return Route(targets, header, f"rule={rule or '-'} route={shown}")


# A compiled target: (provider, model or None for the client's own name).
Spec = tuple[str, str | None]
_Matcher = Callable[[str], object]


def parse_target(target: str) -> Spec:
    provider, _, model = target.partition("/")
    return provider, (model if model and model != OWN_NAME else None)


def compile_targets(targets: Sequence[str]) -> tuple[Spec, ...]:
    return tuple(parse_target(t) for t in targets)


def targets_for(specs: tuple[Spec, ...], model: str) -> tuple[Target, ...]:
    """Compiled targets for a client asking for `model` (its own name where a target has
    none)."""
    return tuple(Target(p, m if m is not None else model) for p, m in specs)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class Router:
    """Resolves client model names against the configured routes. Immutable after init."""

    def __init__(
        self, settings: Settings, *, cache_size: int = CACHE_SIZE, offered: Iterable[str] = (),
    ) -> None:
        self._providers = frozenset(settings.providers)
        routes = settings.routes
        self._exact = {key: compile_targets(targets) for key, targets in routes.items()}
        # fnmatch.translate + re.match is fnmatchcase: case-sensitive on every platform.
        self._globs: list[tuple[_Matcher, str, tuple[Spec, ...]]] = [
            (re.compile(fnmatch.translate(key)).match, key, compile_targets(targets))
            for key, targets in routes.items()
            if key != DEFAULT_ROUTE and _is_glob(key)
        ]
        self._default = self._exact.get(DEFAULT_ROUTE)
        self._routable = _routable(routes, settings.providers)
        concrete = [name for name in self._routable
                    if not _is_glob(name) and not name.endswith("/" + OWN_NAME)]
        self._model_ids = tuple(dict.fromkeys([*concrete, *self._glob_offers(offered)]))
        self._cache: dict[str, Route] = {}
        self._cache_size = cache_size

    def resolve(self, model: str) -> list[Target]:
        """The ordered fallback list for `model`; raises GatewayError(not_found)."""
        return list(self.route(model).targets)

    def route(self, model: str) -> Route:
        """The targets for `model` and the route that gave them; raises
        GatewayError(not_found)."""
        hit = self._cache.get(model)
        if hit is None:
            hit = self._resolve(model)
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # oldest first: dicts keep order
            self._cache[model] = hit
        return hit

    def routable(self) -> list[str]:
        """Route patterns and provider/model targets, for 404 messages."""
        return list(self._routable)

    def model_ids(self) -> list[str]:
        """Concrete model ids a client can send, for /v1/models and model pickers: route
        names that are not patterns, then every `provider/model` target, then the offered
        names each glob route decides. Globs and `provider/*` are left out: a picker would
        send them as they are."""
        return list(self._model_ids)

    # ------------------------------------------------------------------ internals

    def _glob_offers(self, offered: Iterable[str]) -> list[str]:
        """The names of `offered` that a glob route decides (the first glob that matches,
        as `_match` finds it), leaving out those a request would take elsewhere: exact
        routes and `provider/model` of a configured provider."""
        chosen = []
        for name in offered:
            provider, slash, rest = name.partition("/")
            if name in self._exact or (slash and rest and provider in self._providers):
                continue
            for matches, _, _ in self._globs:
                if matches(name):
                    if not matches(""):  # a catch-all offers nothing, as `default`
                        chosen.append(name)
                    break
        return chosen

    def _resolve(self, model: str) -> Route:
        provider, slash, rest = model.partition("/")
        if slash and rest and provider in self._providers:
            return named_route((Target(provider, rest),), "direct")
        name, specs = self._match(model)
        if name == DEFAULT_ROUTE and slash and rest and specs is not None:
            raise GatewayError("not_found", (
                f"model {model!r} names provider {provider!r}, which is not configured; "
                f"configured providers: {', '.join(sorted(self._providers))} (write "
                "'provider/model', or add a route for such names)"))
        if specs is None:
            raise self._not_found(model)
        return named_route(targets_for(specs, model), name)

    def _match(self, model: str) -> tuple[str, tuple[Spec, ...] | None]:
        exact = self._exact.get(model)
        if exact is not None:
            return (DEFAULT_ROUTE if model == DEFAULT_ROUTE else f"route:{model}"), exact
        for matches, key, specs in self._globs:
            if matches(model):
                return f"route:{key}", specs
        return DEFAULT_ROUTE, self._default

    def _not_found(self, model: str) -> GatewayError:
        if not self._providers:
            # A 400 `invalid_request_error`: the one answer the agents show as it is, at once.
            # Claude Code reads a 404 as "There's an issue with the selected model" and hides
            # the message; Codex retries a 404 or a 5xx five times before showing it
            # (tests/agents/test_no_provider.py runs both).
            return GatewayError("invalid_request", NO_PROVIDER_HINT)
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
            provider, model = parse_target(target)
            seen.setdefault(f"{provider}/{model if model is not None else OWN_NAME}")
    for provider in providers:
        seen.setdefault(f"{provider}/{OWN_NAME}")
    return tuple(seen)
