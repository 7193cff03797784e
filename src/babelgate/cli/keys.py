"""`babelgate keys create | list | revoke`: gateway keys in the gateway's own database.

What this module promises:
- The database is the one `serve` uses with the same --config (storage.url or storage.path).
- `create` prints the new key on stdout and nothing else there, so a script can capture it;
  the key is shown this once (only its hash is stored). A line for people goes to stderr.
  With `--json`, stdout is one object instead: the key and its record.
- `list` shows names, prefixes, scopes, limits, expiry, admin and spend (today and this
  month, from the usage table once it exists; "-" until then) as a table (rich);
  `--json` for programs. `revoke --json` prints {"name", "revoked": true}.
- Errors (a name taken, an unknown name, a bad value) are one line on stderr and exit 1;
  a bad configuration or command line exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from babelgate.cli.settings import EXIT_CONFIG, load_or_say, storage_or_say, whole_number
from babelgate.storage.database import Database, open_database
from babelgate.storage.key_admin import key_listing, parse_expiry
from babelgate.storage.keys import DuplicateKeyName, create_key, revoke_key
from babelgate.storage.url import StorageURL

T = TypeVar("T")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys", help="create, list and revoke gateway keys",
        description="Gateway keys: once one exists, every request needs one.")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--models", metavar="GLOBS",
                        help='model globs the key may use, comma-separated ("claude-*,gpt-5*")')
    create.add_argument("--rpm", type=whole_number("requests per minute", 1),
                        help="requests per minute")
    create.add_argument("--tpm", type=whole_number("tokens per minute", 1),
                        help="tokens per minute")
    create.add_argument("--concurrency", type=whole_number("requests at once", 1),
                        help="requests at once")
    create.add_argument("--budget", type=_positive_float, metavar="USD",
                        help="spend allowed per --per period, in USD")
    create.add_argument("--per", choices=("day", "month"), help="the budget's period (day)")
    create.add_argument("--expires", type=_expiry, metavar="WHEN",
                        help="90d, 12h, 30m, 2w, or a date (2026-12-31: the end of that day, "
                        "UTC) or ISO time")
    create.add_argument("--admin", action="store_true",
                        help="may use /admin/* and write /v1/quota")
    create.add_argument("--json", action="store_true",
                        help="one JSON object: the key (shown this once) and its settings")
    _config_option(create)
    create.set_defaults(handler=run, action=_create)

    listing = sub.add_parser("list", help="list the keys that are not revoked")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    _config_option(listing)
    listing.set_defaults(handler=run, action=_list)

    revoke = sub.add_parser("revoke", help="revoke a key: refused from now on")
    revoke.add_argument("name")
    revoke.add_argument("--json", action="store_true", help="one JSON object")
    _config_option(revoke)
    revoke.set_defaults(handler=run, action=_revoke)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="babelgate.yaml whose storage to use (default: as `serve`)")


# ---------------------------------------------------------------------------- values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _expiry(text: str) -> float:
    now = time.time()
    try:
        when = parse_expiry(text, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if when <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is already past")
    return when


# ---------------------------------------------------------------------------- commands


def run(args: argparse.Namespace) -> int:
    handler: Callable[[Database, argparse.Namespace], Awaitable[int]] = args.action
    settings = load_or_say(args.config)
    url = storage_or_say(settings) if settings is not None else None
    if url is None:
        return EXIT_CONFIG
    return asyncio.run(_with_database(url, args, handler))


async def _with_database(
    url: StorageURL, args: argparse.Namespace,
    handler: Callable[[Database, argparse.Namespace], Awaitable[int]],
) -> int:
    db = open_database(url)
    try:
        try:
            await db.open()
        except Exception as exc:  # any driver's failure to connect: one clear line
            print(f"babelgate: cannot open the database {url}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return await handler(db, args)
    finally:
        await db.close()


async def _create(db: Database, args: argparse.Namespace) -> int:
    if args.per is not None and args.budget is None:
        print("babelgate: --per needs --budget", file=sys.stderr)
        return EXIT_USAGE
    scopes = [glob.strip() for glob in (args.models or "").split(",") if glob.strip()]
    try:
        record, key = await create_key(
            db, args.name, now=time.time(), scopes=scopes, rpm=args.rpm, tpm=args.tpm,
            concurrency=args.concurrency, budget=args.budget,
            budget_period=args.per or "day", expires_at=args.expires, admin=args.admin,
        )
    except DuplicateKeyName:
        print(f"babelgate: a key named {args.name!r} exists; revoke it first or pick another "
              "name", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(orjson.dumps({"key": key, **record.public()}).decode())
    else:
        print(key)
    print(f"babelgate: created key {record.name!r} ({record.prefix}...) in {db.url}; it is "
          "shown only this once", file=sys.stderr)
    return EXIT_OK


async def _revoke(db: Database, args: argparse.Namespace) -> int:
    if not await revoke_key(db, args.name, now=time.time()):
        print(f"babelgate: no key named {args.name!r} (or it is revoked already)",
              file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(orjson.dumps({"name": args.name, "revoked": True}).decode())
    print(f"babelgate: revoked key {args.name!r}", file=sys.stderr)
    return EXIT_OK


async def _list(db: Database, args: argparse.Namespace) -> int:
    listing = await key_listing(db, revoked=args.all, now=time.time())
    if args.json:  # the same listing as GET /admin/api/keys (storage/key_admin.py)
        sys.stdout.write(orjson.dumps(listing, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    # Borderless, so the columns split on spaces for a quick `awk`; wide when piped, so
    # no cell is folded.
    table = Table(box=None, pad_edge=False)
    for title in ("NAME", "PREFIX", "MODELS", "RPM", "TPM", "CONC", "BUDGET", "EXPIRES",
                  "ADMIN", "TODAY", "MONTH"):
        table.add_column(title, no_wrap=True)
    for key in listing:
        table.add_row(*_row(key))
    Console(width=None if sys.stdout.isatty() else 240).print(table)
    if not listing:
        print("(no keys: the gateway is open; create one with `babelgate keys create NAME`)",
              file=sys.stderr)
    return EXIT_OK


def _row(key: dict[str, Any]) -> list[str]:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    def money(value: float | None) -> str:
        return "-" if value is None else f"${value:.4f}"

    budget = "-" if key["budget"] is None else f"${key['budget']:g}/{key['budget_period']}"
    expires = "-"
    if key["revoked_at"] is not None:
        expires = "revoked"
    elif key["expires_at"] is not None:
        expires = dt.datetime.fromtimestamp(key["expires_at"], dt.UTC).strftime(
            "%Y-%m-%d %H:%M")
        if key["expires_at"] <= time.time():
            expires += " (expired)"
    return [
        key["name"], key["prefix"] + "...", ",".join(key["models"]) or "*",
        number(key["rpm"]), number(key["tpm"]), number(key["concurrency"]), budget, expires,
        "yes" if key["admin"] else "-", money(key["spend_today"]), money(key["spend_month"]),
    ]
