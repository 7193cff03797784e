"""`babelgate claude` and `babelgate codex` as a user runs them, with the real Claude Code and
Codex CLIs: no gateway is running, so the launcher starts one in the background on the
configured port; the agent completes the one-tool task (the fake's brain asks for `cat
marker.txt`, the second turn quotes its token) against a fake upstream; `babelgate status`
sees the background gateway and `babelgate stop` ends it. A gateway with no provider: the
agent shows the message saying how to configure one.

Install the agents first: scripts/install-agents.sh. Deselect with `-m "not agent"`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.agents.harness import (
    CODEX_MODEL,
    CODEX_OFFLINE,
    PROMPT,
    AgentRun,
    Workspace,
    agent_binary,
    make_workspace,
    run_agent,
    tool_results_seen,
)
from tests.fakes import FakeOpenAI, FakeResponses
from tests.fakes.core import free_port

from babelgate.cli.background import healthy
from babelgate.config import NO_PROVIDER_HINT

pytestmark = [pytest.mark.agent]

SAID = NO_PROVIDER_HINT.split(".")[0]
# Codex's own settings, as a user would have them; the launcher must leave them as they are.
USER_CODEX_CONFIG = f"""\
model = "{CODEX_MODEL}"
check_for_update_on_startup = false

{CODEX_OFFLINE}"""


def write_config(ws: Workspace, providers: dict[str, Any], model: str) -> tuple[Path, str]:
    port = free_port()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "providers": providers,
        "storage": {"path": str(ws.home / "gateway.db")},
    }
    if providers:
        config["routes"] = {"default": f"up/{model}"}
    path = ws.workdir / "babelgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, f"http://127.0.0.1:{port}"


def user_env(ws: Workspace) -> dict[str, str]:
    """The sandbox user's environment: their HOME (so the data directory is the sandbox's
    ~/.local/share/babelgate), the cached agents, nothing of ours."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ws.home),
        "CODEX_HOME": str(ws.home / ".codex"),
        "BABELGATE_CLAUDE_BIN": str(agent_binary("claude")),
        "BABELGATE_CODEX_BIN": str(agent_binary("codex")),
        "IS_SANDBOX": "1",  # lets --dangerously-skip-permissions run as root in containers
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_COLOR": "1",
    }


def babelgate(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "babelgate", *args], cwd=ws.workdir,
                          env=user_env(ws), capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Workspace]:
    """A workspace whose background gateway, if a launcher started one, is stopped after."""
    ws = make_workspace(tmp_path)
    (ws.home / ".codex").mkdir()
    (ws.home / ".codex" / "config.toml").write_text(USER_CODEX_CONFIG)
    yield ws
    await asyncio.to_thread(babelgate, ws, "stop")


async def launch(ws: Workspace, agent: str, *args: str) -> AgentRun:
    command = [sys.executable, "-m", "babelgate", agent, *args]
    return await run_agent(command, user_env(ws), ws.workdir)


def assert_background_gateway(ws: Workspace, url: str) -> None:
    status = babelgate(ws, "status", "--json")
    assert status.returncode == 0, status
    doc = json.loads(status.stdout)
    assert doc["running"] and doc["url"] == url, doc
    assert doc["config"] == str((ws.workdir / "babelgate.yaml").resolve()), doc
    log = ws.home / ".local" / "share" / "babelgate" / "gateway.log"
    assert doc["log"] == str(log) and log.exists(), doc
    stop = babelgate(ws, "stop")
    assert stop.returncode == 0 and f"pid {doc['pid']}" in stop.stdout, stop
    assert not healthy(url), "the gateway answers after `babelgate stop`"
    assert babelgate(ws, "status").returncode == 1


@pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh")
async def test_babelgate_claude_completes_a_task(sandbox: Workspace) -> None:
    ws = sandbox
    async with FakeOpenAI() as fake:
        _, url = write_config(ws, {"up": fake.provider_config()}, "gpt-test")
        assert not healthy(url)
        run = await launch(ws, "claude", "--config", "babelgate.yaml", "-p", PROMPT,
                           "--output-format", "json", "--dangerously-skip-permissions")
        assert run.returncode == 0, run.explain()
        assert ws.token in str((run.result or {}).get("result")), run.explain()
        assert any(ws.token in text for text in tool_results_seen(fake)), fake.requests
        assert fake.rejections == [], fake.rejections
        # The gateway outlived the launcher (Claude Code replaced it, then exited).
        assert healthy(url), "the background gateway is gone"
        assert_background_gateway(ws, url)


@pytest.mark.skipif(agent_binary("codex") is None, reason="run scripts/install-agents.sh")
async def test_babelgate_codex_completes_a_task(sandbox: Workspace) -> None:
    ws = sandbox
    async with FakeResponses() as fake:
        _, url = write_config(ws, {"up": fake.provider_config()}, "gpt-resp-test")
        last = ws.home / "last.txt"
        run = await launch(ws, "codex", "exec", "--dangerously-bypass-approvals-and-sandbox",
                           "--skip-git-repo-check", "--strict-config", "--json",
                           "--output-last-message", str(last), PROMPT)
        assert run.returncode == 0, run.explain()
        assert ws.token in last.read_text(), run.explain()
        assert any(ws.token in text for text in tool_results_seen(fake)), fake.requests
        # The user's own Codex configuration is as it was.
        assert (ws.home / ".codex" / "config.toml").read_text() == USER_CODEX_CONFIG
        assert_background_gateway(ws, url)


@pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh")
async def test_babelgate_claude_without_a_provider_says_how_to_add_one(
    sandbox: Workspace,
) -> None:
    write_config(sandbox, {}, "")
    run = await launch(sandbox, "claude", "--config", "babelgate.yaml", "-p", "hi")
    assert SAID in run.stdout + run.stderr, run.explain()
    assert "selected model" not in run.stdout, run.explain()


@pytest.mark.skipif(agent_binary("codex") is None, reason="run scripts/install-agents.sh")
async def test_babelgate_codex_without_a_provider_says_how_to_add_one(
    sandbox: Workspace,
) -> None:
    write_config(sandbox, {}, "")
    run = await launch(sandbox, "codex", "exec", "--skip-git-repo-check", "hi")
    assert SAID in run.stdout + run.stderr, run.explain()
    assert "Reconnecting" not in run.stdout + run.stderr, run.explain()
