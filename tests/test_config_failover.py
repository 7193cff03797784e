"""Configuration of retries, cooldowns and quota windows: the documented YAML loads, sections
left out mean "off", and a wrong value is refused naming the field and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelgate.config import ConfigError, load_settings
from babelgate.routing import RoutingPolicy
from babelgate.routing.windows import Window

DOCUMENTED = """\
providers:
  claude-max:
    type: anthropic
    base_url: https://api.anthropic.com
    quota: {window: weekly, reset: "mon 00:00"}
  deepseek:
    type: openai
    base_url: https://api.deepseek.com/v1
    quota: {window: 5h, on: [402, "insufficient balance"]}
routes:
  "claude-*": [claude-max/claude-sonnet-4-5, deepseek/deepseek-chat]
retry: {attempts: 2, backoff: 0.5, max_backoff: 8}
cooldown: {failures: 3, seconds: 30}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "babelgate.yaml"
    path.write_text(text)
    return load_settings(path, env={})


def test_documented_failover_settings(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(DOCUMENTED)
    settings = load_settings(path, env={})
    assert settings.retry is not None and settings.retry.attempts == 2
    assert settings.cooldown is not None and settings.cooldown.seconds == 30
    policy = RoutingPolicy.from_settings(settings)
    assert policy.retry.attempts == 2 and policy.retry.max_backoff == 8
    assert policy.cooldown is not None and policy.cooldown.failures == 3
    assert policy.quota_for("claude-max").window == Window("weekly", weekday=0)
    deepseek = policy.quota_for("deepseek")
    assert deepseek.window == Window("rolling", seconds=18000)
    assert deepseek.statuses == {402} and deepseek.phrases == ("insufficient balance",)


def test_sections_left_out_mean_one_try_and_no_rest(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text("providers: {p: {type: openai, base_url: 'https://x.test/v1'}}\n")
    policy = RoutingPolicy.from_settings(load_settings(path, env={}))
    assert policy.retry.attempts == 1 and policy.cooldown is None
    assert policy.quota_for("p").window.kind == "rolling"  # a used-up quota rests it an hour


def test_empty_sections_take_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text("providers: {p: {type: openai, base_url: 'https://x.test/v1', quota: {}}}\n"
                    "retry: {}\ncooldown: {}\n")
    settings = load_settings(path, env={})
    assert (settings.retry.attempts, settings.retry.backoff,  # type: ignore[union-attr]
            settings.retry.max_backoff) == (2, 0.5, 8)  # type: ignore[union-attr]
    assert (settings.cooldown.failures, settings.cooldown.seconds) == (3, 30)  # type: ignore[union-attr]
    assert RoutingPolicy.from_settings(settings).quota_for("p").window == Window("daily")


@pytest.mark.parametrize(("quota", "words"), [
    ("{window: fortnightly}", "providers.p.quota.window"),
    ("{window: weekly, reset: 'monday noon'}", "fit a weekly window"),
    ("{window: daily, reset: '25:00'}", "fit a daily window"),
    ("{window: 5h, reset: '00:00'}", "rolling window"),
    ("{window: daily, every: 2}", "providers.p.quota.every: unknown field"),
])
def test_bad_quota_is_refused_naming_the_field(tmp_path: Path, quota: str, words: str) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(f"providers: {{p: {{type: openai, base_url: 'https://x.test/v1', "
                    f"quota: {quota}}}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert words in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize(("text", "words"), [
    ("retry: {attempts: 0}", "retry.attempts"),
    ("retry: {tries: 2}", "retry.tries: unknown field"),
    ("cooldown: {failures: 0}", "cooldown.failures"),
    ("cooldown: {seconds: -1}", "cooldown.seconds"),
])
def test_bad_retry_and_cooldown_are_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert words in str(caught.value) and str(path) in str(caught.value)
