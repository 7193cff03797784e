"""`babelgate usage`: what the gateway's usage table says about a period, as a table, JSON or
CSV. Reads the database the configuration names (`storage.url` or `storage.path`) through the
same query as the admin JSON API (books/query.py), so both always agree."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from typing import TextIO

import orjson

from babelgate.books.query import usage_summary
from babelgate.books.report import CSV_FIELDS, GROUPS, Group, Summary, parse_since
from babelgate.cli.settings import load_or_say, storage_or_say
from babelgate.storage.database import open_database
from babelgate.storage.url import StorageURL

EXIT_OK, EXIT_USAGE = 0, 2


def add_usage(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    usage = commands.add_parser(
        "usage",
        help="requests, tokens and cost of a period",
        description="Requests, tokens by kind, cost and errors from the gateway's usage "
        "records, summed by day, model, key or provider. Models without a known price are "
        "listed apart: their cost is unknown, never shown as $0.",
    )
    usage.add_argument("--since", default="7d",
                       help="a period (30m, 24h, 7d, 2w) or a date (2026-12-01); default 7d")
    usage.add_argument("--by", choices=GROUPS, default="day", help="how to group (day)")
    form = usage.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--csv", action="store_true", help="print CSV")
    usage.add_argument("--config", metavar="FILE", help="path to babelgate.yaml")
    usage.set_defaults(handler=run_usage)


def run_usage(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"babelgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = load_or_say(args.config)
    url = storage_or_say(settings) if settings is not None else None
    if url is None:
        return EXIT_USAGE
    summary = asyncio.run(_summary(url, since, args.by))
    if args.json:
        sys.stdout.write(orjson.dumps(summary.as_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif args.csv:
        write_csv(summary, sys.stdout)
    else:
        print_table(summary)
    return EXIT_OK


async def _summary(url: StorageURL, since: float, by: str) -> Summary:
    """The same summary GET /admin/api/usage answers (books/query.py), from the database."""
    db = open_database(url)
    try:
        await db.open()
        return await usage_summary(db, since, by)
    finally:
        await db.close()


def write_csv(summary: Summary, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([summary.by, *CSV_FIELDS[1:]])
    for group in [*summary.groups, summary.total]:
        writer.writerow([group.name, group.requests, group.input_tokens, group.output_tokens,
                         group.cache_read_tokens, group.cache_write_tokens,
                         group.reasoning_tokens, "" if group.cost is None else
                         f"{group.cost:.6f}", group.unpriced, group.errors,
                         group.estimated])


def money(group: Group) -> str:
    """The cost as a person should read it: unknown is not $0."""
    if group.cost is None:
        return "unknown" if group.unpriced else "-"  # nothing used, nothing priced
    text = f"${group.cost:,.4f}" if group.cost < 1 else f"${group.cost:,.2f}"
    return f"{text} + unpriced" if group.unpriced else text


def print_table(summary: Summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    since = summary.as_json()["since"]
    table = Table(title=f"babelgate usage since {since}, by {summary.by}")
    table.add_column(summary.by)
    for title in ("requests", "input", "output", "cache read", "cache write", "reasoning",
                  "cost", "errors"):
        table.add_column(title, justify="right")
    for group in summary.groups:
        table.add_row(*_cells(group))
    if summary.groups:
        table.add_section()
    table.add_row(*_cells(summary.total), style="bold")
    console.print(table)
    if summary.total.estimated:
        console.print(f"{summary.total.estimated:,} attempts' tokens include babelgate's own "
                      "estimate: their upstream reported no usage (or the client left first)")
    if summary.unpriced_models:
        unknown = Table(title="Models without a price (cost unknown; set `prices:` in the "
                        "configuration)")
        for title in ("model", "requests", "input", "output", "cache read", "cache write"):
            unknown.add_column(title, justify="left" if title == "model" else "right")
        for group in summary.unpriced_models:
            unknown.add_row(group.name, *(f"{n:,}" for n in (
                group.unpriced, group.input_tokens, group.output_tokens,
                group.cache_read_tokens, group.cache_write_tokens)))
        console.print(unknown)


def _cells(group: Group) -> list[str]:
    return [group.name, *(f"{n:,}" for n in (
        group.requests, group.input_tokens, group.output_tokens, group.cache_read_tokens,
        group.cache_write_tokens, group.reasoning_tokens)), money(group), f"{group.errors:,}"]
