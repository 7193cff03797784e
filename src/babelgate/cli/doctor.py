"""`babelgate doctor [--provider NAME] [--json] [--deep] [--config FILE] [--timeout S]`:
every provider checked step by step (server/doctor.py), progress shown while it runs, a
table (or one JSON document) at the end; exit status 0 only when every check passed,
1 when one failed, 2 when the configuration does not load."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from babelgate.config import ConfigError, load_settings

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
    from rich.console import Console
    from rich.table import Table

    from babelgate.server.doctor import diagnose

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "config": {"name": "configuration",
                                                      "status": "failed", "detail": str(exc)}}))
        else:
            print(f"babelgate doctor: configuration error: {exc}", file=sys.stderr)
        return 2
    err = Console(stderr=True)
    with err.status("checking the configuration") as status:
        def progress(provider: str, check: str) -> None:
            status.update(f"{provider}: {check}")

        report = asyncio.run(diagnose(settings, args.provider, deep=args.deep,
                                      timeout=args.timeout, progress=progress))
    if args.json:
        print(json.dumps(report.to_json()))
        return 0 if report.ok else 1
    out = Console()
    config = report.config
    out.print(f"configuration: {MARKS[config.status]} {config.detail}")
    if config.hint:
        out.print(f"  -> {config.hint}")
    for provider in report.providers:
        table = Table(title=f"{provider.name} ({provider.type} {provider.base_url}"
                      f"{', model ' + provider.model if provider.model else ''})")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail / fix", overflow="fold")
        for check in provider.checks:
            text = check.detail + (f"\n-> {check.hint}" if check.hint else "")
            table.add_row(check.name, MARKS[check.status], text)
        out.print(table)
    out.print("[green]all checks passed[/]" if report.ok else "[red]some checks failed[/]")
    return 0 if report.ok else 1
