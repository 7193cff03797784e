"""Costs by hand-computed examples, per kind of token, and where prices come from: the shipped
table (with its matching rules, dated changes and long-prompt tiers) and `prices:` overrides."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from babelgate.books.prices import (
    Price,
    Prices,
    ProviderInfo,
    catalogue_model_ids,
    cost,
    load_table,
    prices_for,
    vendor_model_ids,
)
from babelgate.canonical import Usage
from babelgate.config import ConfigError, load_settings

M = 1_000_000

# A made-up model with every kind priced differently, so each term is visible.
FULL = Price(input=2.0, output=10.0, cache_read=0.5, cache_write=2.5, reasoning=20.0)


def test_each_kind_at_its_own_price() -> None:
    # 1,000 in x $2 + 300 plain out x $10 + 200 reasoning x $20 + 4,000 cache read x $0.5
    # + 1,000 cache write x $2.5, per million: (2000 + 3000 + 4000 + 2000 + 2500) / 1e6
    usage = Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=200,
                  cache_read_tokens=4000, cache_write_tokens=1000)
    assert cost(FULL, usage) == pytest.approx(0.0135)


def test_one_kind_at_a_time() -> None:
    assert cost(FULL, Usage(input_tokens=M)) == pytest.approx(2.0)
    assert cost(FULL, Usage(output_tokens=M)) == pytest.approx(10.0)
    assert cost(FULL, Usage(cache_read_tokens=M)) == pytest.approx(0.5)
    assert cost(FULL, Usage(cache_write_tokens=M)) == pytest.approx(2.5)
    # Reasoning tokens are part of output_tokens: all of them at the reasoning price.
    assert cost(FULL, Usage(output_tokens=M, reasoning_tokens=M)) == pytest.approx(20.0)


def test_missing_kinds_fall_back_as_providers_bill_them() -> None:
    plain = Price(input=1.0, output=4.0)
    # Reasoning without a price of its own is output; cache reads and writes without a
    # price of their own are input.
    usage = Usage(input_tokens=100, output_tokens=50, reasoning_tokens=30,
                  cache_read_tokens=200, cache_write_tokens=300)
    # (100 + 200 + 300) x $1 + 50 x $4 = 600 + 200 = 800 per million
    assert cost(plain, usage) == pytest.approx(0.0008)


def test_no_price_is_unknown_not_zero() -> None:
    assert cost(None, Usage(input_tokens=10, output_tokens=10)) is None
    assert cost(FULL, Usage()) == 0.0  # a known price and nothing used: really zero


def test_a_long_prompt_pays_its_tier_for_every_token() -> None:
    tiered = Price(input=3.0, output=15.0, cache_read=0.3,
                   tiers=((200_000, Price(input=6.0, output=22.5, cache_read=0.6)),))
    short = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=1_000)
    # 200,000 prompt tokens: not above the threshold. 150k x 3 + 50k x 0.3 + 1k x 15
    assert cost(tiered, short) == pytest.approx((450_000 + 15_000 + 15_000) / M)
    long = Usage(input_tokens=150_001, cache_read_tokens=50_000, output_tokens=1_000)
    # 200,001: every token at the tier's prices. 150,001 x 6 + 50k x 0.6 + 1k x 22.5
    assert cost(tiered, long) == pytest.approx((900_006 + 30_000 + 22_500) / M)


ANTHROPIC = ProviderInfo("https://api.anthropic.com", "anthropic")
TODAY = datetime.date(2026, 12, 1)


def test_the_shipped_table_prices_known_models_by_their_rules() -> None:
    prices = Prices({"an": ANTHROPIC, "ds": ProviderInfo("http://127.0.0.1:1/v1", "openai",
                                                          "deepseek")}, today=TODAY)
    sonnet = prices.price("an", "claude-sonnet-4-5-20250929")  # a dated name, by prefix
    assert sonnet is not None
    assert (sonnet.input, sonnet.output, sonnet.cache_read, sonnet.cache_write) == (
        3.0, 15.0, 0.3, 3.75)
    # 10k in, 2k out, 50k cache read, 5k cache write on Claude Sonnet 4.5:
    # 10,000 x 3 + 2,000 x 15 + 50,000 x 0.3 + 5,000 x 3.75 = 93,750 per million
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=50_000,
                  cache_write_tokens=5_000)
    assert prices.cost("an", "claude-sonnet-4-5-20250929", usage) == pytest.approx(0.09375)
    # A DeepSeek preset behind another address is still priced as DeepSeek.
    assert prices.price("ds", "deepseek-chat") is not None
    assert prices.price("an", "no-such-model") is None
    assert prices.cost("an", "no-such-model", usage) is None
    assert prices.price("nobody", "claude-sonnet-4-5") is None  # an unknown provider


def test_dated_prices_take_the_one_in_force() -> None:
    table = {"providers": {"p": {"api": "https://p\\.example", "fallback": [], "models": [
        {"id": "m", "match": ["equals", "m"], "prices": [
            {"from": None, "input": 1.0, "output": 2.0},
            {"from": "2026-06-01", "input": 3.0, "output": 4.0},
        ]}]}}}
    info = {"x": ProviderInfo("https://p.example/v1", "openai")}
    before = Prices(info, table=table, today=datetime.date(2026, 5, 31)).price("x", "m")
    after = Prices(info, table=table, today=datetime.date(2026, 6, 1)).price("x", "m")
    assert before is not None and (before.input, before.output) == (1.0, 2.0)
    assert after is not None and (after.input, after.output) == (3.0, 4.0)


def test_overrides_win_provider_model_first() -> None:
    overrides = {
        "an/claude-sonnet-4-5": Price(input=1.0, output=1.0),
        "claude-sonnet-4-5": Price(input=2.0, output=2.0),
        "my-local-model": Price(input=0.0, output=0.0),
    }
    prices = Prices({"an": ANTHROPIC, "other": ANTHROPIC}, overrides, today=TODAY)
    assert prices.price("an", "claude-sonnet-4-5") == Price(input=1.0, output=1.0)
    assert prices.price("other", "claude-sonnet-4-5") == Price(input=2.0, output=2.0)
    # A price of 0 set on purpose is a known zero.
    assert prices.cost("other", "my-local-model", Usage(input_tokens=5)) == 0.0


def test_prices_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text("""
providers:
  deepseek: {type: openai, base_url: "https://api.deepseek.com/v1", preset: deepseek}
routes:
  default: deepseek/deepseek-chat
prices:
  deepseek/deepseek-chat: {input: 0.27, output: 1.10, cache_read: 0.07}
  deepseek-reasoner: {input: 0.55, output: 2.19, reasoning: 2.19}
""")
    prices = prices_for(load_settings(path))
    # 1M in + 1M cache read + 1M out: 0.27 + 0.07 + 1.10
    usage = Usage(input_tokens=M, cache_read_tokens=M, output_tokens=M)
    assert prices.cost("deepseek", "deepseek-chat", usage) == pytest.approx(1.44)
    assert prices.price("deepseek", "deepseek-reasoner") == Price(
        input=0.55, output=2.19, reasoning=2.19)


@pytest.mark.parametrize(("entry", "field"), [
    ("{input: 1}", "prices.m.output"),
    ("{input: -1, output: 1}", "prices.m.input"),
    ("{input: 1, output: 1, cache_reed: 1}", "prices.m.cache_reed"),
])
def test_a_bad_price_names_field_and_file(tmp_path: Path, entry: str, field: str) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(f"prices:\n  m: {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert field in str(caught.value) and str(path) in str(caught.value)


def test_the_table_covers_the_presets_providers() -> None:
    providers = load_table()["providers"]
    for pid in ("anthropic", "openai", "google", "deepseek", "moonshotai", "x-ai", "zhipuai",
                "openrouter"):
        assert providers[pid]["models"], pid


def test_lookups_are_bounded() -> None:
    prices = Prices({"an": ANTHROPIC}, today=TODAY, max_entries=8)
    for n in range(100):
        prices.price("an", f"client-chosen-{n}")
    assert len(prices._known) <= 8


def test_vendor_ids_leave_out_aliases_and_hosts() -> None:
    def entry(model_id: str, *rule: str) -> dict[str, object]:
        return {"id": model_id, "match": list(rule), "prices": []}

    table = {"providers": {
        "anthropic": {"models": [{"id": "claude-opus-4-0", "prices": [], "match": [
            "or", [["starts_with", "claude-opus-4-0"], ["starts_with", "claude-4-opus"]]]}]},
        # Vertex's spelling of an Anthropic model: Anthropic's entry matches it first.
        "google": {"models": [entry("claude-4-opus", "equals", "claude-4-opus"),
                              entry("gemini-2.5-pro", "equals", "gemini-2.5-pro")]},
        # An entry whose rule does not match its own id names no model by that id.
        "openai": {"models": [entry("gpt-odd", "equals", "gpt-other")]},
        "openrouter": {"models": [entry("anthropic/claude-opus-4", "equals", "x")]},
    }}
    assert vendor_model_ids(table) == ("claude-opus-4-0", "gemini-2.5-pro")


def test_the_shipped_catalogue_names_current_vendor_models() -> None:
    ids = catalogue_model_ids()
    assert {"claude-sonnet-4-5", "claude-opus-4-5", "gpt-5", "deepseek-chat"} <= set(ids)
    assert "claude-4-opus" not in ids  # Google's alias of claude-opus-4-0
    assert len(set(ids)) == len(ids)
