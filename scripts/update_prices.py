"""Regenerate src/babelgate/books/prices.json from the `genai-prices` package's bundled data.

A development tool, not a run-time dependency: babelgate ships the JSON this writes and reads
it at start-up (books/prices.py). Run it in any environment that has `genai-prices`
(`pip install genai-prices`), review the diff, commit it:

    python scripts/update_prices.py [OUT]

Why not depend on genai-prices at run time: importing it and its snapshot adds ~32 MB to a
gateway that idles at ~44 MB and takes ~0.35 s, and one `calc_price` costs ~230 µs, a good
part of a request's whole budget. What babelgate needs of it is a table: per-million prices
by kind (input, output, cache read, cache write, reasoning), thresholds where a long prompt
changes the price, dated price changes, and the rules that map a model name to an entry.
Only the providers babelgate's presets and environment discovery can reach are kept.
"""

from __future__ import annotations

import datetime
import sys
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from genai_prices import types
from genai_prices.data_snapshot import get_snapshot

OUT = Path(__file__).resolve().parent.parent / "src" / "babelgate" / "books" / "prices.json"

# The catalogue's provider ids babelgate can route to (presets.py, config.ENV_PROVIDERS and
# OpenAI-compatible services people put behind it).
PROVIDERS = ("anthropic", "openai", "google", "deepseek", "moonshotai", "x-ai", "zhipuai",
             "zai", "openrouter", "mistral", "groq", "together", "fireworks", "cerebras")

# The catalogue's price fields babelgate counts, by our name for the kind.
KINDS = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cache_read",
         "cache_write_mtok": "cache_write", "output_reasoning_mtok": "reasoning"}


def clause(match: Any) -> Any:
    """A match rule as plain JSON: ["equals"|"starts_with"|"ends_with"|"contains"|"regex",
    text] or ["or"|"and", [rules...]]."""
    for kind in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(match, kind):
            return [kind, getattr(match, kind)]
    if hasattr(match, "or_"):
        return ["or", [clause(m) for m in match.or_]]
    return ["and", [clause(m) for m in match.and_]]


def number(value: Decimal) -> float:
    return float(value)


def prices(price: types.ModelPrice) -> dict[str, Any] | None:
    """{kind: per-million USD} at the base rate, with "tiers": [[prompt tokens above which,
    {kind: price}], ...] when a long prompt changes some price. None: not priced by tokens."""
    base: dict[str, float] = {}
    tiered: dict[str, types.TieredPrices] = {}
    for field, kind in KINDS.items():
        value = getattr(price, field, None)
        if isinstance(value, types.TieredPrices):
            tiered[kind] = value
            base[kind] = number(value.base)
        elif value is not None:
            base[kind] = number(value)
    if "input" not in base or "output" not in base:
        return None
    out: dict[str, Any] = dict(base)
    starts = sorted({tier.start for t in tiered.values() for tier in t.tiers})
    if starts:
        out["tiers"] = [[start, {kind: number(_at(tiered.get(kind), base[kind], start))
                                 for kind in base}] for start in starts]
    return out


def _at(tiered: types.TieredPrices | None, base: float, start: int) -> Decimal | float:
    if tiered is None:
        return base
    chosen: Decimal | float = tiered.base
    for tier in tiered.tiers:
        if tier.start <= start:
            chosen = tier.price
    return chosen


def dated(model: types.ModelInfo) -> list[dict[str, Any]]:
    """The model's prices over time: [{"from": date or None, ...prices}], oldest first.
    Prices by time of day are not kept (the first, unconstrained, entry stands)."""
    entries = model.prices if isinstance(model.prices, list) else [
        types.ConditionalPrice(prices=model.prices)]
    out = []
    for entry in entries:
        constraint = entry.constraint
        start: str | None = None
        if isinstance(constraint, types.StartDateConstraint):
            start = constraint.start_date.isoformat()
        elif constraint is not None:
            continue
        priced = prices(entry.prices)
        if priced is not None:
            out.append({"from": start, **priced})
    return out


def main(out: Path = OUT) -> None:
    snapshot = get_snapshot()
    providers: dict[str, Any] = {}
    for provider in snapshot.providers:
        if provider.id not in PROVIDERS:
            continue
        models = []
        for model in provider.models:
            entries = dated(model)
            if entries:
                models.append({"id": model.id, "match": clause(model.match), "prices": entries})
        providers[provider.id] = {
            "api": provider.api_pattern,
            "fallback": list(provider.fallback_model_providers or []),
            "models": models,
        }
    table = {
        "source": f"genai-prices {version('genai-prices')}",
        "generated": datetime.date.today().isoformat(),
        "unit": "USD per million tokens",
        "providers": providers,
    }
    out.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n")
    count = sum(len(p["models"]) for p in providers.values())
    print(f"wrote {out}: {len(providers)} providers, {count} models")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
