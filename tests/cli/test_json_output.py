"""`--json` where a script wants it, on commands whose plain output is for people: `env`,
`stop`, `keys create`, `keys revoke`. Real processes; each answer is one JSON document that
holds no key it should not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "babelgate", *args], cwd=cwd,
                          env={"PATH": os.environ["PATH"], "HOME": str(cwd), **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_env_json_for_each_agent(tmp_path: Path) -> None:
    secret = {"BABELGATE_KEY": "bg-secret-value"}
    claude = json.loads(cli("env", "claude", "--url", "http://gw:9", "--json", cwd=tmp_path,
                            env=secret).stdout)
    assert claude == {"agent": "claude", "url": "http://gw:9",
                      "set": {"ANTHROPIC_BASE_URL": "http://gw:9",
                              "ANTHROPIC_AUTH_TOKEN": "${BABELGATE_KEY:-babelgate}",
                              "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"},
                      "unset": ["ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK",
                                "CLAUDE_CODE_USE_VERTEX"]}
    codex = json.loads(cli("env", "codex", "--url", "http://gw:9/", "--json",
                           cwd=tmp_path, env=secret).stdout)
    provider = codex["codex_config"]["model_providers"]["babelgate"]
    assert codex["codex_config"]["model_provider"] == "babelgate"
    assert provider == {"name": "babelgate", "base_url": "http://gw:9/v1",
                        "wire_api": "responses", "env_key": "BABELGATE_KEY"}
    gemini = cli("env", "gemini", "--url", "http://gw:9", "--json", cwd=tmp_path, env=secret)
    doc = json.loads(gemini.stdout)
    assert doc["set"]["GOOGLE_GEMINI_BASE_URL"] == "http://gw:9"
    assert doc["gemini_settings"]["security"]["auth"]["selectedType"] == "gemini-api-key"
    for out in (gemini.stdout, json.dumps(claude), json.dumps(codex)):
        assert "bg-secret-value" not in out


def test_stop_json_when_nothing_runs(tmp_path: Path) -> None:
    result = cli("stop", "--json", cwd=tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "d")})
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"stopped": False}


def test_keys_create_and_revoke_json(tmp_path: Path) -> None:
    config = tmp_path / "babelgate.yaml"
    config.write_text(f"storage: {{path: {tmp_path / 'keys.db'}}}\n")
    created = cli("keys", "create", "ci", "--rpm", "5", "--json", "--config", str(config),
                  cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["name"] == "ci" and doc["rpm"] == 5 and doc["key"].startswith(doc["prefix"])
    assert "hash" not in doc
    listed = cli("keys", "list", "--config", str(config), cwd=tmp_path)
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "PREFIX", "MODELS"]
    assert row.split()[:2] == ["ci", doc["prefix"] + "..."]
    assert doc["key"] not in listed.stdout
    revoked = cli("keys", "revoke", "ci", "--json", "--config", str(config), cwd=tmp_path)
    assert revoked.returncode == 0
    assert json.loads(revoked.stdout) == {"name": "ci", "revoked": True}
