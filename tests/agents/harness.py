"""Drive the real agent binaries (installed by scripts/install-agents.sh) in a sandbox.

Each run gets a fresh working directory holding `marker.txt` with a random token and a fresh
HOME, so no user configuration leaks in and nothing leaks out. Agents run as asyncio
subprocesses: the in-process fake upstreams keep serving while the agent works.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeUpstream

from babelgate.cli.gemini import gemini_env, write_gemini_home

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


# ---------------------------------------------------------------- Codex

CODEX_MODEL = "gpt-5.5"  # what Codex asks for; the gateway routes it to the fake's model


@dataclass
class CodexRun(AgentRun):
    """`codex exec --json`: `events` are its JSONL lines, `last_message` the final answer
    (from `--output-last-message`)."""

    events: list[Any] = field(default_factory=list)
    last_message: str = ""

    def usage(self) -> dict[str, Any]:
        done = [e for e in self.events if e.get("type") == "turn.completed"]
        return dict(done[-1].get("usage") or {}) if done else {}

    def commands(self) -> list[dict[str, Any]]:
        """The shell commands Codex ran (completed `command_execution` items)."""
        return [
            e["item"]
            for e in self.events
            if e.get("type") == "item.completed"
            and e.get("item", {}).get("type") == "command_execution"
        ]


def codex_config(base_url: str, model: str = CODEX_MODEL) -> str:
    """config.toml for a sandboxed Codex pointed at `base_url` (an OpenAI-style /v1 root).

    Everything that would reach the internet is off: the update check, analytics, feedback,
    OpenTelemetry, and the curated plugin sync (`features.plugins`, which otherwise clones
    github.com/openai/plugins and calls api.github.com and chatgpt.com at startup; observed
    with strace on 0.169.0). `--strict-config` in `run_codex` proves every key is known.
    """
    return f"""\
model = "{model}"
model_provider = "babelgate"
check_for_update_on_startup = false

[model_providers.babelgate]
name = "babelgate"
base_url = "{base_url}"
env_key = "BABELGATE_KEY"
wire_api = "responses"

{CODEX_OFFLINE}"""


# The tables of Codex's config.toml that keep it off the internet (codex_config says why).
CODEX_OFFLINE = """\
[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
"""


def codex_env(home: Path, api_key: str) -> dict[str, str]:
    """Only what Codex needs: a sandbox HOME and CODEX_HOME, the provider key."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "BABELGATE_KEY": api_key,
    }


async def run_codex(
    base_url: str,
    ws: Workspace,
    prompt: str = PROMPT,
    api_key: str = "sk-anything",
    model: str = CODEX_MODEL,
) -> CodexRun:
    """`codex exec` with no sandbox and no approvals (the workspace is a throwaway tmp dir);
    `base_url` is the /v1 root (the gateway's, or a Responses fake's)."""
    binary = agent_binary("codex")
    assert binary is not None, "run scripts/install-agents.sh first"
    codex_home = ws.home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url, model))
    last = ws.home / "last-message.txt"
    command = [
        str(binary),
        "exec",
        "--dangerously-bypass-approvals-and-sandbox",
        "--skip-git-repo-check",
        "--strict-config",
        "--json",
        "--output-last-message",
        str(last),
        prompt,
    ]
    run = await run_agent(command, codex_env(ws.home, api_key), ws.workdir)
    events = []
    for line in run.stdout.splitlines():
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # not an event (Codex prints only JSONL on stdout with --json)
    message = last.read_text() if last.exists() else ""
    return CodexRun(run.returncode, run.stdout, run.stderr, None, events, message)


# Upstream kinds the agent tests run against: name -> (fake factory, upstream model as that
# provider would spell it).
UPSTREAMS: dict[str, tuple[Callable[[], FakeUpstream], str]] = {
    "openai": (FakeOpenAI, "gpt-test"),
    "deepseek-thinking": (
        lambda: FakeOpenAI(preset="deepseek", modes=["deepseek_thinking"]),
        "deepseek-chat",
    ),
    "anthropic": (FakeAnthropic, "claude-test"),
    "gemini": (FakeGemini, "gemini-test"),
    "gemini3": (lambda: FakeGemini(modes=["gemini3"]), "gemini-3-test"),
}


# ---------------------------------------------------------------- Gemini CLI

GEMINI_MODEL = "gemini-2.5-pro"  # what the launcher's settings make Gemini CLI ask for


async def run_gemini(
    base_url: str, ws: Workspace, prompt: str = PROMPT, api_key: str = "anything"
) -> AgentRun:
    """Gemini CLI in headless mode (`-p`, `--yolo`, `--output-format json`), its home the
    one `babelgate gemini` prepares (babelgate.cli.gemini), pointed at `base_url` (the
    gateway's root, or a Gemini fake's)."""
    binary = agent_binary("gemini")
    assert binary is not None, "run scripts/install-agents.sh first"
    home = ws.home / "gemini-home"
    write_gemini_home(home, ws.workdir)
    env = gemini_env(gemini_base_env(ws.home), home, base_url, api_key)
    command = [str(binary), "-p", prompt, "--yolo", "--output-format", "json"]
    return await run_agent(command, env, ws.workdir)


def gemini_base_env(home: Path) -> dict[str, str]:
    """Only what Gemini CLI needs besides the launcher's variables: no terminal, no colours,
    and a HOME of the sandbox's (it still looks there for a few things)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


async def run_launcher(gateway_url: str, ws: Workspace, prompt: str = PROMPT) -> AgentRun:
    """`babelgate gemini --url GATEWAY -p PROMPT --yolo --output-format json`: the launcher
    as a user runs it, with the cached Gemini CLI."""
    binary = agent_binary("gemini")
    assert binary is not None, "run scripts/install-agents.sh first"
    env = {**gemini_base_env(ws.home), "BABELGATE_GEMINI_BIN": str(binary)}
    command = [sys.executable, "-m", "babelgate", "gemini", "--url", gateway_url,
               "-p", prompt, "--yolo", "--output-format", "json"]
    return await run_agent(command, env, ws.workdir)
