"""`babelgate gemini [--url URL] [--config FILE] [--] [ARGS...]`: Gemini CLI on babelgate.

What it promises:
- The gateway is found or started in the background as for every launcher (cli/launch.py).
- Gemini CLI gets a home of its own for the session (GEMINI_CLI_HOME, a temporary
  directory removed afterwards), never the user's ~/.gemini, holding what Gemini CLI 0.61
  needs to run against a gateway (`gemini_settings`): API-key auth selected (with
  GOOGLE_GEMINI_BASE_URL set and nothing selected it picks its "gateway" auth type and stops
  with "Invalid auth method selected."), the current directory trusted (otherwise `--yolo`
  is overridden back to asking), a model name so that its router does not ask a classifier
  model for JSON before every turn, and telemetry, usage statistics and update checks off.
- GOOGLE_GEMINI_BASE_URL is the gateway; GEMINI_API_KEY is $BABELGATE_KEY (a gateway key,
  when the gateway has keys) or a placeholder. The gateway never forwards it.
- ARGS go to `gemini` unchanged (`$BABELGATE_GEMINI_BIN`, else `gemini` on PATH); the exit
  code is Gemini CLI's (it runs as a child, so that its home is removed afterwards).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from babelgate.cli import launch
from babelgate.cli.launch import Agent, Launch

DEFAULT_MODEL = "gemini-2.5-pro"  # what Gemini CLI asks the gateway for, unless `-m` says


def gemini_settings(model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The settings.json Gemini CLI needs to run against a gateway (see the module doc)."""
    return {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "model": {"name": model},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }


def write_gemini_home(home: Path, trusted: Path, model: str = DEFAULT_MODEL) -> None:
    """A Gemini CLI home (what GEMINI_CLI_HOME points at): `.gemini/settings.json`, and
    `.gemini/trustedFolders.json` trusting `trusted`."""
    gemini_dir = home / ".gemini"
    gemini_dir.mkdir(parents=True, exist_ok=True)
    (gemini_dir / "settings.json").write_text(json.dumps(gemini_settings(model), indent=2))
    trust = {str(trusted.resolve()): "TRUST_FOLDER"}
    (gemini_dir / "trustedFolders.json").write_text(json.dumps(trust, indent=2))


def gemini_env(base: Mapping[str, str], home: Path, url: str, key: str) -> dict[str, str]:
    """Gemini CLI's environment: `base` with the gateway and the session home."""
    env = dict(base)
    env.update({
        "GEMINI_CLI_HOME": str(home),
        "GOOGLE_GEMINI_BASE_URL": url,
        "GEMINI_API_KEY": key,
    })
    # These would take Gemini CLI past the gateway (Vertex AI, Code Assist login).
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA", "GOOGLE_API_KEY"):
        env.pop(name, None)
    return env


def prepare(url: str, key: str, home: Path | None, args: tuple[str, ...],
            base: Mapping[str, str]) -> Launch:
    assert home is not None  # GEMINI.needs_home
    write_gemini_home(home, Path.cwd())
    return Launch(args, gemini_env(base, home, url, key))


GEMINI = Agent(
    name="gemini",
    title="Gemini CLI",
    install_hint="npm install -g @google/gemini-cli",
    prepare=prepare,
    needs_home=True,
)


def run(argv: Sequence[str]) -> int:
    """The command; returns the exit code."""
    return launch.run(GEMINI, argv)


def env_lines(url: str) -> list[str]:
    """`babelgate env gemini`: the environment for a Gemini CLI started by hand (its
    settings.json still needs the auth type; see gemini_settings)."""
    return [f"export GOOGLE_GEMINI_BASE_URL={url}",
            'export GEMINI_API_KEY="${BABELGATE_KEY:-babelgate}"',
            "unset GOOGLE_GENAI_USE_VERTEXAI GOOGLE_GENAI_USE_GCA GOOGLE_API_KEY",
            "# and in ~/.gemini/settings.json: "
            + json.dumps({"security": gemini_settings()["security"]})]


def env_document(url: str) -> dict[str, Any]:
    """`babelgate env gemini --json`: env_lines as data."""
    return {"set": {"GOOGLE_GEMINI_BASE_URL": url,
                    "GEMINI_API_KEY": "${BABELGATE_KEY:-babelgate}"},
            "unset": ["GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA", "GOOGLE_API_KEY"],
            "gemini_settings": {"security": gemini_settings()["security"]}}
