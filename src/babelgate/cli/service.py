"""`babelgate service install|uninstall|status`: the gateway as a systemd user service.

What it promises:
- `install` writes ~/.config/systemd/user/babelgate.service ($XDG_CONFIG_HOME when set),
  running this installation's `babelgate serve` with the configuration given (else
  ./babelgate.yaml when present, as an absolute path) and keys from an optional
  EnvironmentFile (~/.config/babelgate/env); no key is ever written into the unit. A
  different existing unit is replaced only with --force.
- systemctl is run only where it exists: `daemon-reload`, then `enable --now` (`enable` with
  --no-start); every command run is printed with its outcome, and a failing one makes the
  exit status 1 (the unit file stays written).
- `uninstall` stops and disables the unit where systemctl exists and removes the file;
  `status` says whether the unit is installed, enabled and active (exit 0 only when active).
- With --json each prints one JSON object on stdout instead of its lines (install:
  {"unit", "written", "runs", "config", "env_file", "systemctl": [{"command", "ok",
  "detail"}], "error"}; uninstall: {"unit", "removed", "systemctl", "error"}), with the same
  exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelgate.config import DEFAULT_CONFIG_FILE

UNIT = "babelgate.service"


def add_service(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = commands.add_parser(
        "service", help="run the gateway as a systemd user service",
        description="Install, remove or inspect a systemd user unit that runs `babelgate "
        "serve` (~/.config/systemd/user/babelgate.service).")
    sub = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="write the unit, then enable and start it")
    install.add_argument("--config", metavar="FILE",
                         help=f"the configuration it serves (default: ./{DEFAULT_CONFIG_FILE} "
                         "when present, else providers from the environment file)")
    install.add_argument("--no-start", action="store_true", help="enable it, but do not start")
    install.add_argument("--force", action="store_true", help="replace a different unit")
    install.add_argument("--json", action="store_true", help="one JSON object")
    install.set_defaults(handler=_install)
    uninstall = sub.add_parser("uninstall", help="stop and disable the unit, remove its file")
    uninstall.add_argument("--json", action="store_true", help="one JSON object")
    uninstall.set_defaults(handler=_uninstall)
    status = sub.add_parser("status", help="is the unit installed, enabled, active")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)


def config_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")


def unit_path(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / "systemd" / "user" / UNIT


def environment_file(env: Mapping[str, str] | None = None) -> Path:
    return config_home(env) / "babelgate" / "env"


def _quote(word: str) -> str:
    """A word of ExecStart= as systemd splits it (double quotes, backslash escapes)."""
    if word and not any(c in word for c in ' \t"\\\'$%;'):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return '"' + escaped.replace("%", "%%") + '"'


def unit_text(command: Sequence[str], working_dir: Path, env_file: Path) -> str:
    return "\n".join([
        "# Written by `babelgate service install`; `babelgate service uninstall` removes it.",
        "[Unit]",
        "Description=babelgate, a self-hosted LLM API gateway",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={_quote(str(working_dir))}",
        f"ExecStart={' '.join(_quote(word) for word in command)}",
        "# Provider keys as KEY=value lines (optional; keep it readable only by you). The",
        "# configuration reads them as ${VAR}, so no key is written here.",
        f"EnvironmentFile=-{_quote(str(env_file))}",
        "Restart=on-failure",
        "RestartSec=2",
        "# SIGTERM lets open requests finish (server.shutdown_timeout), then it exits.",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def serve_command(config: Path | None) -> list[str]:
    command = [sys.executable, "-m", "babelgate", "serve"]
    return [*command, "--config", str(config)] if config is not None else command


@dataclass
class Systemctl:
    """`systemctl --user`, when there is one; each command kept in `ran` with its outcome,
    and printed unless `echo` is off (--json)."""

    path: str | None
    echo: bool = True
    ran: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def find(cls, echo: bool = True) -> Systemctl:
        return cls(shutil.which("systemctl"), echo)

    def run(self, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str] | None:
        if self.path is None:
            return None
        shown = "systemctl --user " + " ".join(args)
        try:
            done = subprocess.run([self.path, "--user", *args], capture_output=True, text=True,
                                  timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess([shown], 1, "", str(exc))
        if not quiet:
            said = (done.stderr or done.stdout).strip()
            self.ran.append({"command": shown, "ok": done.returncode == 0,
                             "detail": f"exit {done.returncode}: {said}" if done.returncode
                             else ""})
            if self.echo:
                outcome = f"failed (exit {done.returncode}): {said}" if done.returncode else "ok"
                print(f"  ran `{shown}`: {outcome}")
        return done


class Said:
    """What a command tells: lines on stdout, or with --json one object at the end."""

    def __init__(self, as_json: bool, doc: dict[str, Any]) -> None:
        self.as_json = as_json
        self.doc = doc

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text)

    def error(self, text: str) -> None:
        self.doc["error"] = text
        print(f"babelgate service: {text}", file=sys.stderr)

    def done(self, code: int) -> int:
        if self.as_json:
            print(json.dumps(self.doc))
        return code


def _install(args: argparse.Namespace) -> int:
    config = Path(args.config) if args.config else Path(DEFAULT_CONFIG_FILE)
    config_path = config.resolve() if config.is_file() else None
    path, env_file = unit_path(), environment_file()
    systemctl = Systemctl.find(echo=not args.json)
    said = Said(args.json, {"unit": str(path), "written": False,
                            "runs": serve_command(config_path),
                            "config": str(config_path) if config_path else None,
                            "env_file": str(env_file), "systemctl": systemctl.ran,
                            "error": None})
    if args.config and config_path is None:
        said.error(f"{config}: file not found")
        return said.done(2)
    working_dir = config_path.parent if config_path else Path.home()
    text = unit_text(serve_command(config_path), working_dir, env_file)
    if path.is_file() and path.read_text() != text and not args.force:
        said.error(f"{path} exists and differs; --force replaces it")
        return said.done(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    said.doc["written"] = True
    said.line(f"babelgate: wrote {path}")
    said.line(f"  runs: {' '.join(serve_command(config_path))}")
    if config_path is None:
        said.line("  no configuration file: providers come from the keys in the environment "
                  "file")
    said.line(f"  keys: KEY=value lines in {env_file} (optional; the unit reads it at start)")
    if systemctl.path is None:
        said.line("  systemctl not found: nothing enabled. On a systemd machine run "
                  f"`systemctl --user daemon-reload && systemctl --user enable --now {UNIT}`")
        return said.done(0)
    steps = [("daemon-reload",), ("enable", UNIT) if args.no_start else ("enable", "--now", UNIT)]
    failed = False
    for step in steps:
        done = systemctl.run(*step)
        failed = failed or done is None or done.returncode != 0
    if failed:
        said.line("  the unit file is written; run the failed command again once systemd's "
                  "user session is available (`loginctl enable-linger` keeps it after logout)")
        return said.done(1)
    said.line(f"  {'enabled' if args.no_start else 'enabled and started'}: "
              f"`journalctl --user -u {UNIT}` shows its log")
    return said.done(0)


def _uninstall(args: argparse.Namespace) -> int:
    path = unit_path()
    systemctl = Systemctl.find(echo=not args.json)
    said = Said(args.json, {"unit": str(path), "removed": False, "systemctl": systemctl.ran,
                            "error": None})
    if not path.is_file():
        said.line(f"babelgate: no unit at {path}; nothing to remove")
        return said.done(0)
    failed = False
    if systemctl.path is not None:
        done = systemctl.run("disable", "--now", UNIT)
        failed = done is None or done.returncode != 0
    path.unlink()
    said.doc["removed"] = True
    said.line(f"babelgate: removed {path}")
    if systemctl.path is not None:
        done = systemctl.run("daemon-reload")
        failed = failed or done is None or done.returncode != 0
    return said.done(1 if failed else 0)


def status_document() -> dict[str, object]:
    path = unit_path()
    systemctl = Systemctl.find()
    doc: dict[str, object] = {"unit": str(path), "installed": path.is_file(),
                              "systemctl": systemctl.path is not None,
                              "enabled": None, "active": None}
    if systemctl.path is not None and path.is_file():
        for field, verb in (("enabled", "is-enabled"), ("active", "is-active")):
            done = systemctl.run(verb, UNIT, quiet=True)
            answer = (done.stdout.strip() if done else "") or "unknown"
            doc[field] = answer.splitlines()[0]
    return doc


def _status(args: argparse.Namespace) -> int:
    doc = status_document()
    if args.json:
        print(json.dumps(doc))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, title="babelgate service")
        for name in ("unit", "installed", "systemctl", "enabled", "active"):
            value = doc[name]
            table.add_row(name, "-" if value is None else str(value))
        Console().print(table)
    return 0 if doc["active"] == "active" else 1
