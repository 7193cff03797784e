"""Claude Code's model picker on babelgate (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1): the
real CLI reads GET /v1/models in Anthropic's shape at start-up, keeps the ids that contain
`claude` or `anthropic`, writes them to ~/.claude/cache/gateway-models.json, and its /model
picker offers them, each with the answer's `description` under it (Claude Code 2.1.329 shows
its own name for an id it knows, "Haiku 3.5" for claude-3-5-haiku-latest, with the id in
brackets).

A configuration of glob routes alone (`"claude-*": ...`) names no concrete model, so
babelgate lists the price catalogue's Claude ids each glob decides (routing/router.py), and
the picker offers them. `provider/model` targets have no `claude` in them: the picker drops
them.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from tests.agents.harness import agent_binary, claude_env, make_workspace, run_agent
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI

from babelgate.books.prices import catalogue_model_ids

pytestmark = [pytest.mark.agent, pytest.mark.gateway,
              pytest.mark.skipif(agent_binary("claude") is None,
                                 reason="run scripts/install-agents.sh")]

GLOBS = {"claude-*opus*": "deepseek/big-model", "claude-*": "deepseek/test-model"}
API_KEY = "anything"
# Terminal control sequences: cursor moves, colours, modes, titles.
PROMPT_MARK = "\u276f"  # the arrow before Claude Code's input line
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


def discovery_env(url: str, home: Path) -> dict[str, str]:
    return {**claude_env(url, home, API_KEY), "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}


async def test_claude_code_caches_the_catalogue_ids_a_glob_decides(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    async with FakeOpenAI() as fake:
        gw = await gateway_factory({"deepseek": fake}, routes=GLOBS)
        debug = tmp_path / "claude-debug.txt"
        run = await run_agent([str(agent_binary("claude")), "-p", "hi", "--output-format",
                               "json", "--debug-file", str(debug)],
                              discovery_env(gw.url, ws.home), ws.workdir)
    assert run.returncode == 0, run.explain()
    cached = list(ws.home.rglob("gateway-models.json"))
    assert cached, debug.read_text()[-3000:] if debug.exists() else run.explain()
    offered = json.loads(cached[0].read_text())
    assert offered["baseUrl"] == gw.url
    models = {m["id"]: m["description"] for m in offered["models"]}
    # Every Claude id of the catalogue, in its order; the targets are not offered.
    assert list(models) == [name for name in catalogue_model_ids() if "claude" in name]
    assert models["claude-opus-4-8"] == "routed to deepseek/big-model by claude-*opus*"
    assert models["claude-sonnet-4-5"] == "routed to deepseek/test-model by claude-*"


async def test_the_model_picker_offers_them(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    # An interactive start without the first-run dialogs: onboarding done, the folder
    # trusted, the key from the environment accepted (Claude Code keeps its last 20 chars).
    (ws.home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark",
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "projects": {str(ws.workdir): {"hasTrustDialogAccepted": True,
                                       "hasCompletedProjectOnboarding": True}},
    }))
    async with FakeOpenAI() as fake:
        gw = await gateway_factory({"deepseek": fake}, routes=GLOBS)
        env = {**discovery_env(gw.url, ws.home), "TERM": "xterm-256color"}
        screen = await asyncio.to_thread(open_model_picker, env, ws.workdir, ws.home)
    assert "Select model" in screen, screen[-3000:]
    # Entries from the gateway, with where each goes (the picker shows ~10 at a time).
    assert "routed to deepseek/test-model by claude-*" in screen, screen[-3000:]


def open_model_picker(env: dict[str, str], workdir: Path, home: Path) -> str:
    """Start Claude Code in a terminal, wait for its discovery to be cached, type `/model`,
    and return what the terminal showed (control sequences removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 160, 0, 0))
    process = subprocess.Popen([str(agent_binary("claude"))], stdin=slave, stdout=slave,
                               stderr=slave, env=env, cwd=workdir, start_new_session=True)
    os.close(slave)
    shown = bytearray()

    def read_until(done: object, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (callable(done) and done()):
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    shown.extend(os.read(master, 65536))
                except OSError:  # the CLI has exited
                    return

    def text() -> str:
        return ANSI.sub(b"", bytes(shown)).decode("utf-8", "replace")

    try:
        cache = home / ".claude" / "cache" / "gateway-models.json"
        read_until(lambda: cache.exists() and PROMPT_MARK in text(), 60)
        read_until(None, 1.0)  # let the prompt settle before typing
        os.write(master, b"/model")
        read_until(None, 1.5)
        os.write(master, b"\r")
        read_until(lambda: "routed to" in text(), 20)
        read_until(None, 1.0)
        return text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
