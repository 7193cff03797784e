"""`babelgate claude|codex`, `env`, `status`, `stop`: real subprocesses and a real background
gateway, with a stand-in agent that writes down its arguments and environment (the real
Claude Code and Codex run in tests/agents/test_launchers.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from babelgate.cli.agents import codex_overrides
from babelgate.cli.background import healthy

STAND_IN = '''#!{python}
import json, os, sys
json.dump({{"args": sys.argv[1:], "env": dict(os.environ)}},
          open(os.environ["STAND_IN_RECORD"], "w"))
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class User:
    """A user's directory, HOME and environment, and the stand-in agents."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "babelgate.yaml").write_text(
            f"server: {{host: 127.0.0.1, port: {self.port}}}\n"
            "providers:\n  up: {type: openai, base_url: 'http://127.0.0.1:9/v1', "
            "api_key: sk-provider-secret}\n"
            "routes:\n  default: up/model\n"
            f"storage: {{path: '{root / 'bg.db'}'}}\n")
        stand_in = root / "agent"
        stand_in.write_text(STAND_IN.format(python=sys.executable))
        stand_in.chmod(0o755)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                    "BABELGATE_CLAUDE_BIN": str(stand_in), "BABELGATE_CODEX_BIN": str(stand_in),
                    "STAND_IN_RECORD": str(root / "record.json"),
                    "ANTHROPIC_API_KEY": "sk-ant-users-own"}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "babelgate", *args], cwd=self.root,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=60, check=False)

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "record.json").read_text())
        return data


@pytest.fixture
def user(tmp_path: Path) -> Iterator[User]:
    user = User(tmp_path)
    yield user
    user.run("stop")


def test_claude_starts_a_background_gateway_and_execs_claude(user: User) -> None:
    result = user.run("claude", "-p", "hi", "--model", "x", STAND_IN_EXIT="4")
    assert result.returncode == 4, result.stderr  # Claude Code's own exit code
    seen = user.record()
    assert seen["args"] == ["-p", "hi", "--model", "x"]
    assert seen["env"]["ANTHROPIC_BASE_URL"] == user.url
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] == "babelgate"
    # Its /model picker offers the gateway's models (docs/configuration.md).
    assert seen["env"]["CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"] == "1"
    assert "ANTHROPIC_API_KEY" not in seen["env"]  # the user's Anthropic key stays home
    # Still running after the launcher is gone; its log and pid file in the data directory.
    assert healthy(user.url)
    data = user.home / ".local" / "share" / "babelgate"
    assert (data / "gateway.log").exists() and (data / "gateway.pid").exists()
    status = user.run("status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["running"] and doc["url"] == user.url and doc["pid"] > 0
    assert doc["config"] == str(user.root / "babelgate.yaml") and doc["uptime_s"] >= 0
    table = user.run("status")
    assert user.url in table.stdout and str(doc["pid"]) in table.stdout
    assert "sk-provider-secret" not in (data / "gateway.log").read_text()

    # A second launch uses the same gateway; the key is $BABELGATE_KEY when set.
    again = user.run("codex", "exec", "hi", BABELGATE_KEY="bg-key-2")
    assert again.returncode == 0, again.stderr
    assert "starting the gateway" not in again.stderr
    assert json.loads(user.run("status", "--json").stdout)["pid"] == doc["pid"]
    seen = user.record()
    assert seen["args"] == [*codex_overrides(user.url), "exec", "hi"]
    assert seen["env"]["BABELGATE_KEY"] == "bg-key-2"
    assert not (user.home / ".codex").exists()  # nothing written to the user's Codex home

    stop = user.run("stop")
    assert stop.returncode == 0 and f"pid {doc['pid']}" in stop.stdout, stop
    assert not healthy(user.url)
    assert not (data / "gateway.pid").exists()
    after = user.run("status", "--json")
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False
    assert "no background gateway" in user.run("stop").stdout


def test_codex_overrides_select_the_gateway() -> None:
    assert codex_overrides("http://h:1") == (
        "-c", 'model_provider="babelgate"',
        "-c", 'model_providers.babelgate.name="babelgate"',
        "-c", 'model_providers.babelgate.base_url="http://h:1/v1"',
        "-c", 'model_providers.babelgate.wire_api="responses"',
        "-c", 'model_providers.babelgate.env_key="BABELGATE_KEY"',
    )


def test_env_prints_the_manual_settings(user: User) -> None:
    claude = user.run("env", "claude")
    assert claude.returncode == 0, claude.stderr
    assert f"export ANTHROPIC_BASE_URL={user.url}\n" in claude.stdout
    assert 'export ANTHROPIC_AUTH_TOKEN="${BABELGATE_KEY:-babelgate}"' in claude.stdout
    assert "export CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1\n" in claude.stdout
    codex = user.run("env", "codex", "--url", "http://gw:9/", BABELGATE_KEY="secret-key")
    assert 'base_url = "http://gw:9/v1"' in codex.stdout
    assert 'wire_api = "responses"' in codex.stdout and "secret-key" not in codex.stdout
    gemini = user.run("env", "gemini")
    assert f"export GOOGLE_GEMINI_BASE_URL={user.url}" in gemini.stdout
    assert not healthy(user.url)  # `env` starts nothing


def test_a_missing_agent_says_how_to_get_it(user: User) -> None:
    result = user.run("claude", "-p", "hi", BABELGATE_CLAUDE_BIN="", PATH=str(user.root))
    assert result.returncode == 1
    assert "@anthropic-ai/claude-code" in result.stderr and "BABELGATE_CLAUDE_BIN" in result.stderr


def test_a_gateway_that_cannot_start_is_explained(user: User) -> None:
    with socket.socket() as busy:  # the configured port is taken by something else
        busy.bind(("127.0.0.1", user.port))
        busy.listen()
        result = user.run("claude", "-p", "hi")
    assert result.returncode == 1
    assert "did not start" in result.stderr and "gateway.log" in result.stderr


def _write_config(path: Path, port: int, providers: str) -> None:
    path.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\nproviders: {providers}\n"
                    f"storage: {{path: '{path.parent / (path.stem + '.db')}'}}\n")


def test_the_background_gateway_started_with_no_provider_is_restarted_once_there_is_one(
        user: User) -> None:
    # The first launch found nothing configured (here: a file with no provider); the user
    # then set things up. The next launch must not keep sending Claude Code to a gateway
    # that answers every request with "no provider configured".
    _write_config(user.root / "empty.yaml", user.port, "{}")
    first = user.run("claude", "--config", "empty.yaml", "-p", "hi")
    assert first.returncode == 0, first.stderr
    before = json.loads(user.run("status", "--json").stdout)
    assert before["config"] == str(user.root / "empty.yaml")

    second = user.run("claude", "-p", "hi")  # ./babelgate.yaml has the provider `up`
    assert second.returncode == 0, second.stderr
    assert "has no provider" in second.stderr and "restarting it with up" in second.stderr
    after = json.loads(user.run("status", "--json").stdout)
    assert after["config"] == str(user.root / "babelgate.yaml")
    assert after["pid"] != before["pid"]
    answer = subprocess.run(["curl", "-s", user.url + "/health"], capture_output=True,
                            text=True, check=True, timeout=10)
    assert [p["name"] for p in json.loads(answer.stdout)["providers"]] == ["up"]


def _serve(user: User, config: str) -> subprocess.Popen[bytes]:
    """A gateway the user started by hand (as `make run` does), not by a launcher."""
    process = subprocess.Popen([sys.executable, "-m", "babelgate", "serve", "--config", config],
                               cwd=user.root, env=user.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(200):
        if healthy(user.url, 0.2):
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the hand-started gateway did not answer /health")


def test_a_hand_started_gateway_with_no_provider_is_refused_with_the_fix(user: User) -> None:
    _write_config(user.root / "empty.yaml", user.port, "{}")
    process = _serve(user, "empty.yaml")
    try:
        result = user.run("claude", "-p", "hi")
        assert result.returncode == 1
        assert "has no provider" in result.stderr and "make run" in result.stderr
        assert f"pid {process.pid}" in result.stderr
        assert not (user.root / "record.json").exists()  # the agent was not started
        assert process.poll() is None  # and the user's gateway was left alone
    finally:
        process.terminate()
        process.wait(20)


def test_a_hand_started_gateway_with_other_providers_is_used_with_a_note(user: User) -> None:
    _write_config(user.root / "other.yaml", user.port,
                  "{other: {type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: k}}")
    process = _serve(user, "other.yaml")
    try:
        result = user.run("claude", "-p", "hi")
        assert result.returncode == 0, result.stderr
        assert "serves other" in result.stderr and "not up" in result.stderr
        assert user.record()["env"]["ANTHROPIC_BASE_URL"] == user.url
    finally:
        process.terminate()
        process.wait(20)
