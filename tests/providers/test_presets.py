"""A provider's Quirks come from its preset (or its type's defaults), with the max_tokens
clamp its settings give; presets themselves stay as they are."""

from __future__ import annotations

from pathlib import Path

from babelgate.config import load_settings
from babelgate.providers.presets import DEFAULT_QUIRKS, PRESETS, provider_quirks


def test_quirks_from_preset_with_config_clamp(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(
        "providers:\n  p:\n    type: openai\n    base_url: https://example.test/v1\n"
        "    preset: kimi\n    max_tokens: 4000\n",
        encoding="utf-8",
    )
    cfg = load_settings(path, env={}).providers["p"]
    quirks = provider_quirks(cfg.type, cfg.preset, cfg.max_tokens)
    assert quirks.max_tokens == 4000
    assert quirks.reasoning_control == PRESETS["kimi"].reasoning_control
    assert quirks.echo_reasoning is True
    assert PRESETS["kimi"].max_tokens is None  # the shared preset is not modified


def test_quirks_default_per_type() -> None:
    openai = provider_quirks("openai", None, None)
    assert openai == DEFAULT_QUIRKS["openai"]
    assert openai.max_tokens_field == "max_completion_tokens"
    assert openai.strict_fields is True
    deepseek = provider_quirks("openai", "deepseek", None)
    assert deepseek.max_tokens == 8192
    assert deepseek.max_tokens_field == "max_tokens"
    assert deepseek.echo_reasoning is True


def test_every_preset_and_type_has_quirks() -> None:
    assert set(PRESETS) == {
        "deepseek", "kimi", "glm", "qwen", "grok", "siliconflow", "openrouter", "ollama", "vllm",
    }  # fmt: skip
    assert set(DEFAULT_QUIRKS) == {"openai", "anthropic", "gemini", "openai-responses"}
    assert PRESETS["openrouter"].reasoning_field == "reasoning"
    assert PRESETS["vllm"].reasoning_control == "chat_template_kwargs"
