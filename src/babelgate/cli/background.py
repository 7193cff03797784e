"""The background gateway the launchers share: started once, detached, found again.

What it promises:
- `data_dir()` is $XDG_DATA_HOME/babelgate, else ~/.local/share/babelgate; the background
  gateway's log is `gateway.log` there and its pid file `gateway.pid` (JSON: pid, url,
  config, started).
- `start()` runs `babelgate serve` on the configured address in a session of its own
  (it survives the launcher and the terminal closing), waits until it answers /health, and
  writes the pid file. `stop()` sends SIGTERM (the server's graceful shutdown), waits, and
  removes the pid file. Neither touches a gateway this module did not start.
- `healthy(url)` and `health(url)` ask /health with a short timeout, never raising.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEALTH_TIMEOUT = 20.0  # seconds a started gateway has to answer /health
STOP_TIMEOUT = 15.0  # seconds a gateway has to finish after SIGTERM


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local"
                                           / "share")
    return Path(base) / "babelgate"


def health(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The gateway's /health document, or None when nothing healthy answers."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as answer:
            if answer.status != 200:
                return None
            body = json.loads(answer.read())
            return body if isinstance(body, dict) else {}
    except (OSError, urllib.error.URLError, ValueError):
        return None


def healthy(url: str, timeout: float = 1.0) -> bool:
    return health(url, timeout) is not None


def configured_url(config: str | None) -> str | None:
    """The address the configuration says a gateway listens on, if the configuration loads."""
    from babelgate.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError:
        return None
    return url_for(settings.server.host, settings.server.port)


def url_for(host: str, port: int) -> str:
    # A wildcard listen address is reached over loopback.
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class Record:
    """What the pid file says about the background gateway."""

    pid: int
    url: str
    config: str | None
    started: float

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Background:
    """The background gateway's files in `directory` (data_dir() by default)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or data_dir()
        self.log_path = self.directory / "gateway.log"
        self.pid_path = self.directory / "gateway.pid"

    def record(self) -> Record | None:
        try:
            data = json.loads(self.pid_path.read_text())
            return Record(int(data["pid"]), str(data["url"]), data.get("config"),
                          float(data["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def start(self, config: str | None, url: str, host: str, port: int,
              timeout: float = HEALTH_TIMEOUT) -> str | None:
        """Start it; None when it answers /health, else what went wrong (the log's tail)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "babelgate", "serve", "--host", host,
                   "--port", str(port)]
        if config:
            config = str(Path(config).resolve())
            command += ["--config", config]
        with self.log_path.open("ab") as log:
            log.write(f"\n--- babelgate serve started by a launcher at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if healthy(url, 0.5):
                record = {"pid": process.pid, "url": url, "config": config,
                          "started": time.time()}
                self.pid_path.write_text(json.dumps(record) + "\n")
                return None
            time.sleep(0.1)
        if process.poll() is None:
            process.terminate()
            process.wait(STOP_TIMEOUT)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return f"the gateway did not start (log: {self.log_path}):\n{tail}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> Record | None:
        """SIGTERM the recorded gateway and wait for it; the record, or None if none ran."""
        record = self.record()
        if record is None or not record.alive():
            self.pid_path.unlink(missing_ok=True)
            return None
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while record.alive() and time.monotonic() < deadline:
            _reap(record.pid)
            time.sleep(0.05)
        if record.alive():
            os.kill(record.pid, signal.SIGKILL)
            _reap(record.pid)
        self.pid_path.unlink(missing_ok=True)
        return record


def _reap(pid: int) -> None:
    """Collect the exit status when the gateway is our own child (a test's, or a launcher
    still running), so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
