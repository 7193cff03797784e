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
    openai = provider_quirks("openai", None, None, "https://api.openai.com/v1")
    assert openai == DEFAULT_QUIRKS["openai"]
    assert openai.max_tokens_field == "max_completion_tokens"
    assert openai.strict_fields is True
    assert openai.system_anywhere is True
    assert provider_quirks("openai", "openai", None, "https://relay.test/v1") == openai
    deepseek = provider_quirks("openai", "deepseek", None)
    assert deepseek.max_tokens == 8192
    assert deepseek.max_tokens_field == "max_tokens"
    assert deepseek.echo_reasoning is True


def test_an_openai_compatible_server_gets_only_what_every_one_reads() -> None:
    """`type: openai` elsewhere than OpenAI, without a preset (llama.cpp's server, LM Studio):
    the limit as max_tokens (llama-cpp-python ignores max_completion_tokens), no reasoning
    control it never declared, later system messages folded into the first."""
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:1234/v1", "https://llm.corp/v1"):
        quirks = provider_quirks("openai", None, 256, url)
        assert quirks.max_tokens_field == "max_tokens"
        assert quirks.max_tokens == 256
        assert quirks.reasoning_control == "none"
        assert quirks.system_anywhere is False
    for preset in ("llamacpp", "lmstudio"):
        assert PRESETS[preset].max_tokens_field == "max_tokens"
        assert PRESETS[preset].reasoning_control == "none"
        assert PRESETS[preset].system_anywhere is False


def test_every_preset_and_type_has_quirks() -> None:
    assert set(PRESETS) == {
        "openai", "deepseek", "kimi", "glm", "qwen", "grok", "siliconflow", "openrouter",
        "ollama", "vllm", "llamacpp", "lmstudio",
    }  # fmt: skip
    assert set(DEFAULT_QUIRKS) == {"openai", "anthropic", "gemini", "openai-responses"}
    assert PRESETS["openrouter"].reasoning_field == "reasoning"
    assert PRESETS["vllm"].reasoning_control == "chat_template_kwargs"
