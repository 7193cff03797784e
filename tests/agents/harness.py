"""Drive the real agent binaries (installed by scripts/install-agents.sh) in a sandbox.

Each run gets a fresh working directory holding `marker.txt` with a random token and a fresh
HOME, so no user configuration leaks in and nothing leaks out. Agents run as asyncio
subprocesses: the in-process fake upstreams keep serving while the agent works.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from tests.fakes import FakeUpstream

AGENT_CACHE = Path(
    os.environ.get("BABELGATE_AGENT_CACHE", Path.home() / ".cache" / "babelgate" / "agents")
)
AGENT_TIMEOUT = 120.0
# The default fake brain runs the command between these markers with the agent's shell tool.
PROMPT = "Run this shell command and tell me what it printed: RUN<<cat marker.txt>>"


@dataclass
class Workspace:
    workdir: Path
    home: Path
    token: str


@dataclass
class AgentRun:
    returncode: int
    stdout: str
    stderr: str
    result: Any  # the parsed `--output-format json` document, None if unparsable

    def explain(self) -> str:
        out, err = self.stdout[-4000:], self.stderr[-4000:]
        return f"exit {self.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def agent_binary(name: str) -> Path | None:
    path = AGENT_CACHE / "node_modules" / ".bin" / name
    return path if path.exists() else None


def make_workspace(tmp_path: Path) -> Workspace:
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    token = "tok-" + secrets.token_hex(8)
    (workdir / "marker.txt").write_text(token + "\n")
    return Workspace(workdir, home, token)


def claude_env(base_url: str, home: Path, api_key: str) -> dict[str, str]:
    """A minimal environment: only what Claude Code needs, pointed at `base_url`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "IS_SANDBOX": "1",  # lets --dangerously-skip-permissions run as root in containers
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


async def run_agent(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float = AGENT_TIMEOUT
) -> AgentRun:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        err += f"\n[harness] killed after {timeout} s".encode()
    stdout = out.decode(errors="replace")
    try:
        result = orjson.loads(stdout)
    except orjson.JSONDecodeError:
        result = None
    return AgentRun(process.returncode or 0, stdout, err.decode(errors="replace"), result)


async def run_claude(
    base_url: str, ws: Workspace, prompt: str = PROMPT, api_key: str = "sk-ant-anything"
) -> AgentRun:
    """Claude Code in print mode; `api_key` must match when `base_url` is a fake itself."""
    binary = agent_binary("claude")
    assert binary is not None, "run scripts/install-agents.sh first"
    command = [
        str(binary),
        "-p",
        prompt,
        "--output-format",
        "json",
        "--dangerously-skip-permissions",
    ]
    return await run_agent(command, claude_env(base_url, ws.home, api_key), ws.workdir)


def tool_results_seen(fake: FakeUpstream) -> list[str]:
    """Every tool result text the fake received, in any request's latest turn."""
    seen: list[str] = []
    for rec in fake.requests:
        if isinstance(rec.body, dict):
            try:
                seen += fake.view(rec.body).tool_results
            except (KeyError, TypeError, AttributeError, IndexError):
                continue  # a request the fake refused as malformed; not a conversation
    return seen


# Codex (next issue): `agent_binary("codex")`, a `codex exec --json` runner with
# OPENAI_BASE_URL pointing at the gateway's /v1 and a config.toml in the sandbox HOME, and
# tests/agents/test_codex.py mirroring test_claude_code.py over the same upstream fakes.
