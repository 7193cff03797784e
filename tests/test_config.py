"""babelgate.config: the documented YAML loads as written, ${VAR} expansion, error messages
that name the field and the file, and provider discovery from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelgate.cli.example import EXAMPLE_CONFIG
from babelgate.config import (
    NO_PROVIDER_HINT,
    ConfigError,
    expand_env,
    load_settings,
    ollama_v1_url,
)

DOCUMENTED_YAML = """\
server: {host: 127.0.0.1, port: 8080}
providers:
  deepseek:
    type: openai
    base_url: https://api.deepseek.com/v1
    api_key: ${DEEPSEEK_API_KEY}
    preset: deepseek
    max_tokens: 8192
    headers: {}
    timeout: 600
  kimi:
    type: anthropic
    base_url: https://api.moonshot.cn/anthropic
    api_key: ${MOONSHOT_API_KEY}
  gemini:
    type: gemini
    base_url: https://generativelanguage.googleapis.com
    api_key: ${GEMINI_API_KEY}
routes:
  "claude-*haiku*": gemini/gemini-2.5-flash
  "claude-*opus*": [deepseek/deepseek-reasoner, gemini/gemini-2.5-pro]
  default: deepseek/deepseek-chat
"""

MINIMAL_PROVIDER = """\
providers:
  p:
    type: openai
    base_url: https://example.test/v1
"""


def write(tmp_path: Path, text: str, name: str = "babelgate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


DOCUMENTED_KEYS = {"DEEPSEEK_API_KEY": "d", "MOONSHOT_API_KEY": "m", "GEMINI_API_KEY": "g"}


def config_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return str(info.value)


# ---------------------------------------------------------------- the documented file


def test_documented_yaml_loads_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, DOCUMENTED_YAML)
    env = {"DEEPSEEK_API_KEY": "sk-deep", "MOONSHOT_API_KEY": "sk-moon", "GEMINI_API_KEY": ""}

    settings = load_settings(path, env=env)

    assert settings.source == str(path)
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert list(settings.providers) == ["deepseek", "kimi", "gemini"]
    deepseek = settings.providers["deepseek"]
    assert deepseek.type == "openai"
    assert deepseek.base_url == "https://api.deepseek.com/v1"
    assert deepseek.api_key == "sk-deep"
    assert deepseek.preset == "deepseek"
    assert deepseek.max_tokens == 8192
    assert deepseek.headers == {}
    assert deepseek.timeout == 600
    kimi = settings.providers["kimi"]
    assert (kimi.type, kimi.base_url, kimi.api_key) == (
        "anthropic",
        "https://api.moonshot.cn/anthropic",
        "sk-moon",
    )
    # GEMINI_API_KEY is unset: it expands to "" and the upstream's 401 will be relayed.
    assert settings.providers["gemini"].api_key == ""
    assert settings.routes == {
        "claude-*haiku*": ["gemini/gemini-2.5-flash"],
        "claude-*opus*": ["deepseek/deepseek-reasoner", "gemini/gemini-2.5-pro"],
        "default": ["deepseek/deepseek-chat"],
    }


EXAMPLE_KEYS = {"DEEPSEEK_API_KEY": "d", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}


def test_init_example_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, EXAMPLE_CONFIG), env=EXAMPLE_KEYS)
    assert set(settings.providers) == {"deepseek", "anthropic", "gemini"}
    assert settings.routes["claude-*"] == ["anthropic"]


def test_api_key_never_in_repr(tmp_path: Path) -> None:
    env = {"DEEPSEEK_API_KEY": "sk-secret", "MOONSHOT_API_KEY": "", "GEMINI_API_KEY": ""}
    settings = load_settings(write(tmp_path, DOCUMENTED_YAML), env=env)
    assert "sk-secret" not in repr(settings)
    assert "sk-secret" not in str(settings)


def test_base_url_trailing_slash_is_dropped(tmp_path: Path) -> None:
    text = MINIMAL_PROVIDER.replace("/v1", "/v1/")
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.providers["p"].base_url == "https://example.test/v1"


def test_empty_file_is_no_providers(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings.providers == {}
    assert settings.routes == {}
    assert settings.server.port == 8080


# ---------------------------------------------------------------- ${VAR} expansion


def test_expansion_with_defaults_everywhere(tmp_path: Path) -> None:
    text = """\
server: {host: "${HOST:-0.0.0.0}", port: "${PORT:-9000}"}
providers:
  p:
    type: openai
    base_url: ${BASE:-https://fallback.test}/v1
    api_key: ${KEY:-none}
    headers: {X-Team: "team-${TEAM}", X-Lit: "$${NOT_EXPANDED}"}
routes:
  default: p/${MODEL:-gpt-5}
"""
    env = {"PORT": "9100", "KEY": "", "TEAM": "blue", "MODEL": "o3"}
    settings = load_settings(write(tmp_path, text), env=env)

    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9100  # the string from the environment becomes an int
    provider = settings.providers["p"]
    assert provider.base_url == "https://fallback.test/v1"
    assert provider.api_key == "none"  # empty counts as unset for :- as in the shell
    assert provider.headers == {"X-Team": "team-blue", "X-Lit": "${NOT_EXPANDED}"}
    assert settings.routes["default"] == ["p/o3"]


def test_expand_env_leaves_keys_and_non_strings_alone() -> None:
    data = {"${K}": ["${V}", 3, None, True], "n": 1.5}
    assert expand_env(data, {"K": "k", "V": "v"}) == {"${K}": ["v", 3, None, True], "n": 1.5}


def test_set_but_empty_variable_expands_to_nothing() -> None:
    assert expand_env("a${EMPTY}b", {"EMPTY": ""}) == "ab"


def test_unset_variable_without_default_names_variable_field_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_PROVIDER + "    api_key: ${BG_SURELY_UNSET_KEY}\n")
    message = config_error(path)
    assert "BG_SURELY_UNSET_KEY" in message
    assert "providers.p.api_key" in message
    assert str(path) in message


def test_unset_variable_in_a_list_names_its_index(tmp_path: Path) -> None:
    text = MINIMAL_PROVIDER + "routes:\n  default: [p/a, \"p/${BG_SURELY_UNSET_MODEL}\"]\n"
    assert "routes.default[1]" in config_error(write(tmp_path, text))


def test_empty_default_is_allowed_for_an_unset_variable() -> None:
    assert expand_env("a${MISSING:-}b", {}) == "ab"


def test_default_comes_from_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BG_TEST_KEY", "from-os")
    text = MINIMAL_PROVIDER + "    api_key: ${BG_TEST_KEY}\n"
    assert load_settings(write(tmp_path, text)).providers["p"].api_key == "from-os"


# ---------------------------------------------------------------- errors name field and file


def test_unknown_provider_field(tmp_path: Path) -> None:
    path = write(tmp_path, DOCUMENTED_YAML.replace("base_url: https://api.deepseek", "bse_url: x"))
    message = config_error(path, DOCUMENTED_KEYS)
    assert f"providers.deepseek.bse_url: unknown field in {path}" in message
    assert "base_url" in message  # the hint lists the known fields


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("servr: {}\n", "servr: unknown field", "known: server, providers, routes"),
        ("server: {prt: 1}\n", "server.prt: unknown field", "host, port"),
        ("server: {port: http}\n", "server.port:", "port number"),
        ("server: {port: 70000}\n", "server.port:", "between 1 and 65535"),
        ("server: {reuse_mb: -1}\n", "server.reuse_mb:", "0"),
        (MINIMAL_PROVIDER.replace("openai\n", "azure\n"), "providers.p.type:", "anthropic"),
        (MINIMAL_PROVIDER.replace("https://", ""), "providers.p.base_url:", "http"),
        (MINIMAL_PROVIDER + "    timeout: -1\n", "providers.p.timeout:", "seconds"),
        (MINIMAL_PROVIDER + "    max_tokens: 0\n", "providers.p.max_tokens:", "positive"),
        (MINIMAL_PROVIDER + "    headers: {X-A: [1]}\n", "providers.p.headers.X-A:", "docs"),
        ("providers:\n  p: {base_url: https://x.test}\n", "providers.p.type: required", "add"),
        ("routes: {default: [1]}\n", "routes.default.0:", "provider/model"),
    ],
)
def test_errors_name_field_file_and_hint(tmp_path: Path, text: str, field: str, hint: str) -> None:
    path = write(tmp_path, text, "gw.yaml")
    message = config_error(path)
    assert field in message
    assert str(path) in message
    assert hint in message


def test_unknown_preset_lists_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_PROVIDER + "    preset: deepsek\n")
    message = config_error(path)
    assert "providers.p.preset: unknown preset 'deepsek'" in message
    assert str(path) in message
    for name in ("deepseek", "kimi", "glm", "qwen", "grok", "siliconflow", "openrouter"):
        assert name in message


def test_route_to_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_PROVIDER + "routes:\n  default: deepsek/deepseek-chat\n")
    message = config_error(path)
    assert "routes.default:" in message
    assert "'deepsek'" in message
    assert str(path) in message
    assert "use one of: p" in message


def test_route_with_empty_list(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL_PROVIDER + "routes:\n  default: []\n"))
    assert "routes.default: no target" in message


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  p: [unclosed\n")
    message = config_error(path)
    assert str(path) in message
    assert "line" in message


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert "top level must be a mapping" in config_error(path)


def test_missing_file(tmp_path: Path) -> None:
    message = config_error(tmp_path / "nope.yaml")
    assert "nope.yaml: file not found" in message
    assert "babelgate init" in message


def test_error_never_shows_api_key(tmp_path: Path) -> None:
    text = MINIMAL_PROVIDER + "    api_key: ${KEY}\n    max_tokens: lots\n"
    message = config_error(write(tmp_path, text), env={"KEY": "sk-very-secret"})
    assert "providers.p.max_tokens" in message
    assert "sk-very-secret" not in message


def test_several_problems_reported_together(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "server: {port: x, hst: y}\n"))
    assert message.startswith("2 problems in")
    assert message.index("server.hst") < message.index("server.port")  # typos first


# ---------------------------------------------------------------- environment discovery

ENV_CASES = [
    ("ANTHROPIC_API_KEY", "anthropic", "anthropic", "https://api.anthropic.com", None),
    ("OPENAI_API_KEY", "openai", "openai", "https://api.openai.com/v1", None),
    ("GEMINI_API_KEY", "gemini", "gemini", "https://generativelanguage.googleapis.com", None),
    ("DEEPSEEK_API_KEY", "deepseek", "openai", "https://api.deepseek.com/v1", "deepseek"),
    ("MOONSHOT_API_KEY", "kimi", "openai", "https://api.moonshot.ai/v1", "kimi"),
    ("ZHIPU_API_KEY", "glm", "openai", "https://open.bigmodel.cn/api/paas/v4", "glm"),
    ("XAI_API_KEY", "grok", "openai", "https://api.x.ai/v1", "grok"),
    ("OPENROUTER_API_KEY", "openrouter", "openai", "https://openrouter.ai/api/v1", "openrouter"),
    (
        "SILICONFLOW_API_KEY",
        "siliconflow",
        "openai",
        "https://api.siliconflow.cn/v1",
        "siliconflow",
    ),
]


@pytest.mark.parametrize("case", ENV_CASES, ids=[case[0] for case in ENV_CASES])
def test_env_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str, str, str, str | None]
) -> None:
    variable, name, kind, base_url, preset = case
    monkeypatch.chdir(tmp_path)  # no ./babelgate.yaml here
    settings = load_settings(env={variable: "key-123"})

    assert settings.source == "environment"
    assert list(settings.providers) == [name]
    provider = settings.providers[name]
    assert (provider.type, provider.base_url, provider.preset) == (kind, base_url, preset)
    assert provider.api_key == "key-123"
    assert settings.routes["default"][0].startswith(f"{name}/")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://localhost:11434", "http://localhost:11434/v1"),
        ("http://localhost:11434/", "http://localhost:11434/v1"),
        ("http://gpu-box:11434/v1", "http://gpu-box:11434/v1"),
        ("localhost:11434", "http://localhost:11434/v1"),
    ],
)
def test_ollama_base_url(value: str, expected: str) -> None:
    assert ollama_v1_url(value) == expected


def test_env_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"OLLAMA_BASE_URL": "http://localhost:11434"})
    ollama = settings.providers["ollama"]
    assert (ollama.type, ollama.base_url, ollama.preset) == (
        "openai",
        "http://localhost:11434/v1",
        "ollama",
    )
    assert ollama.api_key is None


def test_env_provider_address_from_babelgate_name_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variable `babelgate init`'s files read too: a proxy or a test server stands in.
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"DEEPSEEK_API_KEY": "k", "OPENAI_API_KEY": "o",
                                  "BABELGATE_DEEPSEEK_URL": "http://127.0.0.1:9/v1",
                                  "BABELGATE_OPENAI_URL": " "})
    assert settings.providers["deepseek"].base_url == "http://127.0.0.1:9/v1"
    assert settings.providers["deepseek"].preset == "deepseek"
    assert settings.providers["openai"].base_url == "https://api.openai.com/v1"  # blank: unset


def test_env_no_provider_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"UNRELATED": "1", "OPENAI_API_KEY": "  "})
    assert settings.providers == {}
    assert settings.routes == {}
    assert settings.source == "environment"
    assert "babelgate.yaml" in NO_PROVIDER_HINT and "ANTHROPIC_API_KEY" in NO_PROVIDER_HINT


def test_env_deepseek_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"DEEPSEEK_API_KEY": "k"})
    assert settings.routes["claude-*haiku*"] == ["deepseek/deepseek-chat"]
    assert settings.routes["claude-*opus*"] == ["deepseek/deepseek-reasoner"]
    assert settings.routes["claude-*"] == ["deepseek/deepseek-chat"]
    assert settings.routes["default"] == ["deepseek/deepseek-chat"]
    assert settings.routes["deepseek-*"] == ["deepseek"]


def test_env_claude_goes_to_anthropic_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"DEEPSEEK_API_KEY": "d", "ANTHROPIC_API_KEY": "a"})
    assert list(settings.providers) == ["anthropic", "deepseek"]
    assert settings.routes["claude-*"] == ["anthropic"]
    assert "claude-*haiku*" not in settings.routes


def test_env_first_provider_takes_claude_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"GEMINI_API_KEY": "g", "OPENAI_API_KEY": "o"})
    assert settings.routes["claude-*haiku*"] == ["openai/gpt-5-mini"]
    assert settings.routes["gemini-*"] == ["gemini"]
    assert settings.routes["gpt-*"] == ["openai"]


def test_local_babelgate_yaml_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, MINIMAL_PROVIDER)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"OPENAI_API_KEY": "o"})
    assert settings.source == "babelgate.yaml"
    assert list(settings.providers) == ["p"]


# ---------------------------------------------------------------- rules

RULES_YAML = """\
providers:
  deepseek: {type: openai, base_url: https://api.deepseek.com/v1}
  gemini: {type: gemini, base_url: https://generativelanguage.googleapis.com}
rules:
  - if: {background: true}
    to: deepseek/deepseek-chat
  - name: screenshots
    if: {image: true, long_context: 100000, web_search: false, tools: true, thinking: false,
         model: "claude-*", user_agent: "claude-cli/*", header: {x-app: cli}}
    to: [gemini/gemini-2.5-flash, deepseek]
  - if: {user_agent: "CherryStudio*"}
    system_prepend: "You are Claude Code, Anthropic's official CLI for Claude."
    system_append: "Answer briefly."
    set: {temperature: 0.3, stop: "END"}
    remove: [metadata]
    max_tokens: 4096
  - if:
    to: gemini
routes:
  default: deepseek/deepseek-chat
"""


def test_rules_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, RULES_YAML), env={})
    first, second, third, fourth = settings.rules
    assert (first.when.background, first.to) == (True, ["deepseek/deepseek-chat"])
    assert second.name == "screenshots" and second.to == ["gemini/gemini-2.5-flash", "deepseek"]
    assert (second.when.long_context, second.when.header) == (100000, {"x-app": "cli"})
    assert (third.to, third.set, third.remove, third.max_tokens) == (
        None, {"temperature": 0.3, "stop": "END"}, ["metadata"], 4096)
    assert fourth.when.model is None and fourth.to == ["gemini"]


@pytest.mark.parametrize(("rule", "message"), [
    ("{if: {backgrund: true}, to: deepseek}", "rules.0.if.backgrund: unknown field in"),
    ("{iff: {}, to: deepseek}", "rules.0.iff: unknown field in"),
    ("{if: {thinking: maybe}}", "rules.0.if.thinking: Input should be a valid boolean in"),
    ("{if: {long_context: lots}}", "rules.0.if.long_context: Input should be a valid integer"),
    ("{to: nowhere/model}", "rules.0.to: target 'nowhere/model' names provider 'nowhere', "
                            "which is not configured in"),
    ("{to: []}", "rules.0.to: no target in"),
    ("{set: {model: gpt-5}}", "rules.0.set.model: cannot set 'model'; settable fields: "
                              "temperature, top_p"),
    ("{set: {temperature: hot}}", "rules.0.set.temperature: expected a number in"),
    ("{set: {max_tokens: 0}}", "rules.0.set.max_tokens: expected a positive whole number in"),
    ("{set: {reasoning: {effort: extreme}}}", "rules.0.set.reasoning: Invalid enum value"),
    ("{remove: [messages]}", "rules.0.remove.0: cannot remove 'messages'; removable fields:"),
    ("{max_tokens: -1}", "rules.0.max_tokens: Input should be greater than 0 in"),
])
def test_rule_errors_name_field_and_file(tmp_path: Path, rule: str, message: str) -> None:
    provider = MINIMAL_PROVIDER.replace("  p:", "  deepseek:")
    path = write(tmp_path, provider + f"rules:\n  - {rule}\n")
    error = config_error(path)
    assert message in error
    assert str(path) in error
