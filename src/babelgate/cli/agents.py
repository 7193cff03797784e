"""Claude Code and Codex on babelgate: `babelgate claude|codex [--url URL] [--config FILE]
[--] [ARGS...]` (the shared launcher is cli/launch.py) and `babelgate env AGENT`.

What it promises:
- Claude Code gets ANTHROPIC_BASE_URL (the gateway) and ANTHROPIC_AUTH_TOKEN ($BABELGATE_KEY
  or a placeholder, sent as a bearer token, which Claude Code uses without asking to
  approve an API key); ANTHROPIC_API_KEY and the Bedrock / Vertex switches are removed from
  its environment, so no Anthropic key goes to the gateway and nothing goes past it; and
  CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 unless the user set it, so its /model picker
  offers the gateway's /v1/models (docs/configuration.md).
- Codex gets `-c` overrides before ARGS: a model provider `babelgate` (base_url the
  gateway's /v1, wire_api "responses", env_key BABELGATE_KEY) selected as model_provider, and
  BABELGATE_KEY in its environment. Nothing is written to ~/.codex: the user's own
  config.toml (model, approvals, MCP servers) still applies around the override.
- `env_text(agent, url)` is the same setup for a manual start: shell lines, and for Codex
  the config.toml snippet; `env_document` the same as data, for `env --json`. The key is
  written as `${BABELGATE_KEY:-babelgate}`, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from babelgate.cli.launch import Agent, Launch

PROVIDER = "babelgate"  # the Codex model provider's name
KEY_VAR = "BABELGATE_KEY"
# Switches that would send Claude Code past the gateway, or a key it should not send.
CLAUDE_DROPPED = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
# Claude Code reads the gateway's model list into its /model picker only when this is set.
MODEL_DISCOVERY = "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"


def claude_env(base: Mapping[str, str], url: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in CLAUDE_DROPPED}
    env["ANTHROPIC_BASE_URL"] = url
    env["ANTHROPIC_AUTH_TOKEN"] = key
    env.setdefault(MODEL_DISCOVERY, "1")
    return env


def _claude(url: str, key: str, home: Path | None, args: tuple[str, ...],
            base: Mapping[str, str]) -> Launch:
    return Launch(args, claude_env(base, url, key))


def codex_overrides(url: str) -> tuple[str, ...]:
    """`-c key=value` pairs (values in TOML) selecting the gateway as Codex's provider."""
    table = f"model_providers.{PROVIDER}"
    pairs = (
        ("model_provider", PROVIDER),
        (f"{table}.name", PROVIDER),
        (f"{table}.base_url", f"{url}/v1"),
        (f"{table}.wire_api", "responses"),
        (f"{table}.env_key", KEY_VAR),
    )
    out: list[str] = []
    for name, value in pairs:
        out += ["-c", f'{name}="{value}"']
    return tuple(out)


def _codex(url: str, key: str, home: Path | None, args: tuple[str, ...],
           base: Mapping[str, str]) -> Launch:
    return Launch((*codex_overrides(url), *args), {**base, KEY_VAR: key})


CLAUDE = Agent(name="claude", title="Claude Code",
               install_hint="npm install -g @anthropic-ai/claude-code", prepare=_claude)
CODEX = Agent(name="codex", title="Codex", install_hint="npm install -g @openai/codex",
              prepare=_codex)


def env_text(agent: str, url: str) -> str:
    """`babelgate env AGENT`: what to set to start AGENT against the gateway at `url`."""
    key = f'"${{{KEY_VAR}:-babelgate}}"'
    if agent == "claude":
        return "\n".join([
            f"export ANTHROPIC_BASE_URL={url}",
            f"export ANTHROPIC_AUTH_TOKEN={key}",
            f"export {MODEL_DISCOVERY}=1",
            "unset ANTHROPIC_API_KEY",
        ]) + "\n"
    if agent == "codex":
        return "\n".join([
            f"export {KEY_VAR}={key}",
            "# in ~/.codex/config.toml (or pass each as -c NAME=VALUE):",
            f'model_provider = "{PROVIDER}"',
            "",
            f"[model_providers.{PROVIDER}]",
            f'name = "{PROVIDER}"',
            f'base_url = "{url}/v1"',
            'wire_api = "responses"',
            f'env_key = "{KEY_VAR}"',
        ]) + "\n"
    from babelgate.cli.gemini import env_lines

    return "\n".join(env_lines(url)) + "\n"


KEY_REFERENCE = f"${{{KEY_VAR}:-babelgate}}"  # a shell expression, never the key itself


def env_document(agent: str, url: str) -> dict[str, Any]:
    """`babelgate env AGENT --json`: variables to set (values may be shell expressions) and
    to unset, and for Codex and Gemini CLI the settings file content."""
    doc: dict[str, Any] = {"agent": agent, "url": url}
    if agent == "claude":
        return {**doc, "set": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": KEY_REFERENCE,
                               MODEL_DISCOVERY: "1"},
                "unset": list(CLAUDE_DROPPED)}
    if agent == "codex":
        provider = {"name": PROVIDER, "base_url": f"{url}/v1", "wire_api": "responses",
                    "env_key": KEY_VAR}
        return {**doc, "set": {KEY_VAR: KEY_REFERENCE}, "unset": [],
                "codex_config": {"model_provider": PROVIDER,
                                 "model_providers": {PROVIDER: provider}}}
    from babelgate.cli.gemini import env_document as gemini_document

    return {**doc, **gemini_document(url)}
