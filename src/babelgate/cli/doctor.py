"""`babelgate doctor [--provider NAME] [--json] [--deep] [--config FILE] [--timeout S]`:
every provider checked step by step (server/doctor.py), progress shown while it runs, a
table (or one JSON document) at the end; exit status 0 only when every check passed,
1 when one failed, 2 when the configuration does not load."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from babelgate.config import ConfigError, load_settings

if TYPE_CHECKING:
    from babelgate.server.doctor import Report

MARKS = {"ok": "[green]ok[/]", "failed": "[red]FAILED[/]", "skipped": "[yellow]skipped[/]"}


def add_doctor(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the configuration and every provider",
        description="Check the configuration, then per provider: name resolution, TCP, TLS, "
        "authentication, the model list, a one-token completion, a streamed one, and with "
        "--deep a tool-call round trip. Exit status 0 only when all pass.")
    doctor.add_argument("--provider", metavar="NAME", help="check only this provider")
    doctor.add_argument("--json", action="store_true", help="one JSON document")
    doctor.add_argument("--deep", action="store_true", help="also a tool-call round trip")
    doctor.add_argument("--config", metavar="FILE", help="path to babelgate.yaml")
    doctor.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                        help="per check (default 20)")
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    return run(args.config, args.provider, deep=args.deep, timeout=args.timeout,
               as_json=args.json)


def run(config_path: str | None, provider: str | None = None, *, deep: bool = False,
        timeout: float = 20.0, as_json: bool = False) -> int:
    """The whole `doctor` command (also run by `babelgate init` on the file it wrote)."""
    from rich.console import Console
    from rich.table import Table

    try:
        report = check(config_path, provider, deep=deep, timeout=timeout)
    except ConfigError as exc:
        if as_json:
            print(json.dumps(config_failure(exc)))
        else:
            print(f"babelgate doctor: configuration error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.to_json()))
        return 0 if report.ok else 1
    out = Console()
    config = report.config
    out.print(f"configuration: {MARKS[config.status]} {config.detail}")
    if config.hint:
        out.print(f"  -> {config.hint}")
    for checked in report.providers:
        table = Table(title=f"{checked.name} ({checked.type} {checked.base_url}"
                      f"{', model ' + checked.model if checked.model else ''})")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail / fix", overflow="fold")
        for step in checked.checks:
            text = step.detail + (f"\n-> {step.hint}" if step.hint else "")
            table.add_row(step.name, MARKS[step.status], text)
        out.print(table)
    out.print("[green]all checks passed[/]" if report.ok else "[red]some checks failed[/]")
    return 0 if report.ok else 1


def check(config_path: str | None, provider: str | None = None, *, deep: bool = False,
          timeout: float = 20.0) -> Report:
    """Every check of the configuration at `config_path`, with progress on stderr; raises
    ConfigError when it does not load."""
    from rich.console import Console

    from babelgate.server.doctor import diagnose

    settings = load_settings(config_path)
    with Console(stderr=True).status("checking the configuration") as status:
        def progress(name: str, step: str) -> None:
            status.update(f"{name}: {step}")

        return asyncio.run(diagnose(settings, provider, deep=deep, timeout=timeout,
                                    progress=progress))


def config_failure(exc: ConfigError) -> dict[str, Any]:
    """doctor's JSON document for a configuration that does not load."""
    return {"ok": False, "config": {"name": "configuration", "status": "failed",
                                    "detail": str(exc)}}
