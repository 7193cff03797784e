"""`babelgate gemini [--url URL] [--config FILE] [--] [ARGS...]`: Gemini CLI on babelgate.

What it promises:
- The gateway: `--url` names a running one; without it, a babelgate already answering
  `/health` at the configured address (server.host/port, 127.0.0.1:8080 by default) is used;
  else one is started for the session (`babelgate serve` as a subprocess on a free loopback
  port, its log in the session directory) and stopped when Gemini CLI exits.
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
  code is Gemini CLI's. Options of ours are read only before the first other argument.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "gemini-2.5-pro"  # what Gemini CLI asks the gateway for, unless `-m` says
PLACEHOLDER_KEY = "babelgate"
HEALTH_TIMEOUT = 20.0  # seconds a started gateway has to answer /health
EXIT_USAGE = 2


@dataclass
class LauncherArgs:
    url: str | None = None
    config: str | None = None
    gemini_args: tuple[str, ...] = ()


def split_args(argv: Sequence[str]) -> LauncherArgs:
    """Our options (`--url`, `--config`, each with a value or `=value`), then `--` or the
    first argument that is not ours: from there on, everything is Gemini CLI's."""
    args = LauncherArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        name, eq, value = arg.partition("=")
        if name not in ("--url", "--config"):
            break
        if not eq:
            if i + 1 >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[i + 1]
            i += 1
        setattr(args, name[2:], value)
        i += 1
    args.gemini_args = tuple(argv[i:])
    return args


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


def healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StartedGateway:
    """A `babelgate serve` subprocess for one session."""

    def __init__(self, config: str | None, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "babelgate", "serve",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        if config:
            command += ["--config", config]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if healthy(self.url, 0.5):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def configured_url(config: str | None) -> str | None:
    """The address the configuration says a gateway listens on, if the configuration loads."""
    from babelgate.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError:
        return None
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{settings.server.port}"


def run(argv: Sequence[str]) -> int:
    """The command; returns the exit code."""
    try:
        args = split_args(argv)
    except ValueError as exc:
        print(f"babelgate gemini: {exc}", file=sys.stderr)
        return EXIT_USAGE
    binary = os.environ.get("BABELGATE_GEMINI_BIN") or shutil.which("gemini")
    if not binary:
        print("babelgate gemini: Gemini CLI not found: install it (npm install -g "
              "@google/gemini-cli) or set BABELGATE_GEMINI_BIN", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="babelgate-gemini-") as session:
        session_dir = Path(session)
        started: StartedGateway | None = None
        url = args.url.rstrip("/") if args.url else None
        if url is None:
            found = configured_url(args.config)
            if found is not None and healthy(found):
                url = found
        if url is None:
            started = StartedGateway(args.config, session_dir / "babelgate.log")
            if not started.wait_healthy():
                started.stop()
                print(f"babelgate gemini: the gateway did not start:\n"
                      f"{started.log_path.read_text(errors='replace')[-3000:]}",
                      file=sys.stderr)
                return 1
            url = started.url
        try:
            home = session_dir / "home"
            write_gemini_home(home, Path.cwd())
            key = os.environ.get("BABELGATE_KEY") or PLACEHOLDER_KEY
            env = gemini_env(os.environ, home, url, key)
            return _run_gemini([binary, *args.gemini_args], env)
        finally:
            if started is not None:
                started.stop()


def _run_gemini(command: list[str], env: dict[str, str]) -> int:
    """Gemini CLI in the foreground. Ctrl-C reaches it (same process group); we wait for it
    rather than die first and leave the gateway running. A SIGTERM to us is passed on to
    it, and we still clean up after it exits."""
    process = subprocess.Popen(command, env=env)

    def pass_on(signum: int, frame: object) -> None:
        process.send_signal(signum)

    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, pass_on)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
