"""Prices per million tokens and the cost of one attempt's usage.

What this module promises:
- Nothing is downloaded: prices come from `prices.json` shipped in this package (written by
  scripts/update_prices.py from the `genai-prices` catalogue) and from the `prices:`
  overrides of babelgate.yaml, both read once at start-up.
- `Prices.price(provider, model)` is a dict lookup once a (provider, model) pair has been
  seen; the first sight resolves it (overrides, then the catalogue's matching rules) and
  keeps the answer, for at most `max_entries` pairs.
- A model with no price is None, and `cost` of None is None: unknown, never zero.
- `cost(price, usage)` charges each kind of token at its price: input, output (reasoning at
  the reasoning price when one is given, else as output, which is how providers bill it),
  cache read and cache write (at the input price when the table has none for them). A
  prompt longer than a tier's threshold is charged that tier's prices for all its tokens,
  as the providers that price long prompts higher do.

Which catalogue entries serve a configured provider: those whose API address pattern matches
its `base_url`, else those of its preset or type (a DeepSeek preset behind a proxy is still
DeepSeek), then the catalogue's own fallbacks (OpenRouter's to the original vendors).

`catalogue_model_ids()` names the models the table knows by their vendors' own ids (an alias
or another host's spelling of a model is left out): what a glob route offers a model picker
(routing/router.py). It is read once per process; the table ships with the package.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from typing import Any

import msgspec
import orjson

from babelgate.canonical import Usage
from babelgate.config import Settings

PER_MILLION = 1_000_000.0

# Catalogue ids for babelgate's presets and provider types (when the base URL says nothing).
CATALOGUE_IDS: dict[str, tuple[str, ...]] = {
    "anthropic": ("anthropic",),
    "openai": ("openai",),
    "openai-responses": ("openai",),
    "gemini": ("google",),
    "deepseek": ("deepseek",),
    "kimi": ("moonshotai",),
    "glm": ("zhipuai", "zai"),
    "grok": ("x-ai",),
    "openrouter": ("openrouter",),
}


# The catalogue's model vendors, in the order their ids are offered. Aggregators and hosts
# (OpenRouter, Together, Groq...) list other vendors' models under their own spellings.
VENDORS = ("anthropic", "openai", "google", "deepseek", "moonshotai", "x-ai", "zhipuai", "zai",
           "mistral")


class Price(msgspec.Struct, frozen=True, gc=False):
    """USD per million tokens of each kind. `tiers`: (prompt tokens above which, the prices
    then), ascending; a tier's own `tiers` is empty."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    tiers: tuple[tuple[int, Price], ...] = ()


def cost(price: Price | None, usage: Usage) -> float | None:
    """USD for `usage` at `price`; None when the price is unknown."""
    if price is None:
        return None
    if price.tiers:
        prompt = usage.prompt_tokens
        for start, tier in reversed(price.tiers):
            if prompt > start:
                price = tier
                break
    reasoning = usage.reasoning_tokens
    reasoning_price = price.reasoning if price.reasoning is not None else price.output
    cache_read = price.cache_read if price.cache_read is not None else price.input
    cache_write = price.cache_write if price.cache_write is not None else price.input
    return (
        usage.input_tokens * price.input
        + (usage.output_tokens - reasoning) * price.output
        + reasoning * reasoning_price
        + usage.cache_read_tokens * cache_read
        + usage.cache_write_tokens * cache_write
    ) / PER_MILLION


def price_from(entry: Mapping[str, Any]) -> Price:
    """A Price from {input, output, cache_read?, cache_write?, reasoning?, tiers?}."""
    tiers = tuple((int(start), price_from(prices)) for start, prices in entry.get("tiers", ()))
    return Price(
        input=float(entry["input"]),
        output=float(entry["output"]),
        cache_read=_maybe(entry.get("cache_read")),
        cache_write=_maybe(entry.get("cache_write")),
        reasoning=_maybe(entry.get("reasoning")),
        tiers=tiers,
    )


def _maybe(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------------------- catalogue

Matcher = Callable[[str], bool]


def matcher(rule: Any) -> Matcher:
    """A model-name test from a catalogue rule (see scripts/update_prices.py); names are
    compared lower-cased, regular expressions as written."""
    kind, value = rule
    if kind == "or":
        parts = [matcher(r) for r in value]
        return lambda name: any(p(name) for p in parts)
    if kind == "and":
        parts = [matcher(r) for r in value]
        return lambda name: all(p(name) for p in parts)
    if kind == "regex":
        pattern = re.compile(value)
        return lambda name: pattern.search(name) is not None
    text = str(value).lower()
    tests: dict[str, Matcher] = {
        "equals": lambda name: name == text,
        "starts_with": lambda name: name.startswith(text),
        "ends_with": lambda name: name.endswith(text),
        "contains": lambda name: text in name,
    }
    return tests[kind]


class CatalogueProvider(msgspec.Struct, frozen=True):
    """One catalogue provider: its models in the catalogue's order (the first match wins)."""

    id: str
    api: re.Pattern[str]
    fallback: tuple[str, ...]
    models: tuple[tuple[Matcher, Price], ...]

    def find(self, model: str) -> Price | None:
        for test, price in self.models:
            if test(model):
                return price
        return None


def _current(entries: Iterable[Mapping[str, Any]], today: str) -> Price | None:
    """The price in force `today` (ISO date): the last entry that started on or before it."""
    chosen = None
    for entry in entries:
        start = entry.get("from")
        if start is None or start <= today:
            chosen = entry
    return None if chosen is None else price_from(chosen)


def load_table() -> dict[str, Any]:
    """The shipped table, as JSON (see scripts/update_prices.py for its shape)."""
    data: dict[str, Any] = orjson.loads(
        files("babelgate.books").joinpath("prices.json").read_bytes())
    return data


def catalogue_provider(pid: str, spec: Mapping[str, Any], today: str) -> CatalogueProvider:
    """One provider of the table, each model at its price in force `today` (ISO date)."""
    models = []
    for model in spec["models"]:
        price = _current(model["prices"], today)
        if price is not None:
            models.append((matcher(model["match"]), price))
    return CatalogueProvider(pid, re.compile(spec["api"]), tuple(spec["fallback"]),
                             tuple(models))


def vendor_model_ids(table: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of the table's VENDORS' entries, in the table's order, each once, keeping
    only an id that its own entry is the first to match: Google's `claude-4-opus` (Vertex's
    name for an Anthropic model, matched by Anthropic's `claude-opus-4-0` entry) is not a
    name of its own."""
    specs = table["providers"]
    entries = [(model["id"], matcher(model["match"]))
               for vendor in VENDORS if vendor in specs for model in specs[vendor]["models"]]
    chosen: dict[str, None] = {}
    for model_id, _ in entries:
        name = model_id.lower()
        first = next((owner for owner, test in entries if test(name)), None)
        if first == model_id:
            chosen.setdefault(model_id)
    return tuple(chosen)


@functools.cache
def catalogue_model_ids() -> tuple[str, ...]:
    """vendor_model_ids of the shipped table, read once (it does not change while we run)."""
    return vendor_model_ids(load_table())


# ---------------------------------------------------------------------------- lookups


class ProviderInfo(msgspec.Struct, frozen=True):
    """What says which catalogue entries price a configured provider."""

    base_url: str
    type: str
    preset: str | None = None


class Prices:
    """Prices for the configured providers: overrides first ("provider/model", then
    "model"), then the catalogue. Built once at start-up (only the catalogue's providers
    that price a configured one are kept: the whole table would hold ~11 MB); lookups are
    cached."""

    def __init__(
        self,
        providers: Mapping[str, ProviderInfo],
        overrides: Mapping[str, Price] | None = None,
        table: Mapping[str, Any] | None = None,
        *,
        today: datetime.date | None = None,
        max_entries: int = 4096,
    ) -> None:
        self.overrides = dict(overrides or {})
        self.max_entries = max_entries
        specs = (table if table is not None else load_table())["providers"]
        day = (today or datetime.date.today()).isoformat()
        built: dict[str, CatalogueProvider] = {}

        def source(pid: str) -> CatalogueProvider:
            if pid not in built:
                built[pid] = catalogue_provider(pid, specs[pid], day)
            return built[pid]

        # Configured provider name -> the catalogue providers that price it, in order.
        self.sources: dict[str, tuple[CatalogueProvider, ...]] = {}
        for name, info in providers.items():
            ids = _catalogue_ids(info, specs)
            self.sources[name] = tuple(source(pid) for pid in ids)
        self._known: dict[tuple[str, str], Price | None] = {}

    def price(self, provider: str, model: str) -> Price | None:
        key = (provider, model)
        try:
            return self._known[key]
        except KeyError:
            pass
        price = self._resolve(provider, model)
        known = self._known
        if len(known) >= self.max_entries:  # client-chosen names are unbounded: forget one
            del known[next(iter(known))]
        known[key] = price
        return price

    def _resolve(self, provider: str, model: str) -> Price | None:
        overrides = self.overrides
        price = overrides.get(f"{provider}/{model}") or overrides.get(model)
        if price is not None:
            return price
        name = model.lower()
        for source in self.sources.get(provider, ()):
            price = source.find(name)
            if price is not None:
                return price
        return None

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        return cost(self.price(provider, model), usage)


def _catalogue_ids(info: ProviderInfo, specs: Mapping[str, Any]) -> list[str]:
    """The catalogue providers for one configured provider: by its base URL, else by its
    preset or type; then their fallbacks."""
    ids = [pid for pid, spec in specs.items() if re.match(spec["api"], info.base_url)]
    if not ids:
        ids = [pid for pid in (CATALOGUE_IDS.get(info.preset or "", ())
                               or CATALOGUE_IDS.get(info.type, ())) if pid in specs]
    for pid in list(ids):
        ids.extend(f for f in specs[pid]["fallback"] if f in specs)
    return list(dict.fromkeys(ids))  # in order, once each


def prices_for(settings: Settings) -> Prices:
    """The prices of a gateway's configured providers, with its `prices:` overrides; the
    explicit targets of its routes are looked up now, so serving them is a dict lookup."""
    providers = {
        name: ProviderInfo(cfg.base_url, cfg.type, cfg.preset)
        for name, cfg in settings.providers.items()
    }
    overrides = {
        name: Price(p.input, p.output, p.cache_read, p.cache_write, p.reasoning)
        for name, p in settings.prices.items()
    }
    prices = Prices(providers, overrides)
    for targets in settings.routes.values():
        for target in targets:
            provider, _, model = target.partition("/")
            if model and model != "*":
                prices.price(provider, model)
    return prices
