"""`babelgate keys create | list | revoke` as a user runs them: real subprocesses on a real
SQLite file (the PostgreSQL side: tests/storage/test_postgres.py)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from tests.keys_support import KEY_SHAPE, create, keys_cli, storage_config

from babelgate.cli.keys import parse_expiry
from babelgate.storage.keys import hash_key


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return storage_config(tmp_path, {"path": str(tmp_path / "data" / "bg.db")})


def test_create_prints_the_key_alone_and_stores_only_its_hash(
        config: Path, tmp_path: Path) -> None:
    result = keys_cli(config, "create", "alice", "--models", "claude-*,gpt-5*", "--rpm", "60",
                      "--tpm", "400000", "--concurrency", "4", "--budget", "20", "--per", "day",
                      "--expires", "90d")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and KEY_SHAPE.match(key)  # nothing else on stdout
    assert "created key 'alice'" in result.stderr and "only this once" in result.stderr
    assert key not in result.stderr
    db = tmp_path / "data" / "bg.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    stored = b"".join(p.read_bytes() for p in db.parent.iterdir())
    assert key.encode() not in stored and hash_key(key).encode() in stored


def test_list_shows_scopes_limits_expiry_and_spend(config: Path, tmp_path: Path) -> None:
    alice = create(config, "alice", "--models", "claude-*,gpt-5*", "--rpm", "60", "--tpm",
                   "400000", "--concurrency", "4", "--budget", "20", "--per", "day",
                   "--expires", "2030-12-31")
    admin = create(config, "ops", "--admin")
    text = keys_cli(config, "list")
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["NAME", "PREFIX", "MODELS", "RPM", "TPM", "CONC", "BUDGET",
                              "EXPIRES", "ADMIN", "TODAY", "MONTH"]
    assert rows[0].split() == ["alice", alice[:10] + "...", "claude-*,gpt-5*", "60", "400000",
                               "4", "$20/day", "2031-01-01", "00:00", "-", "$0.0000", "$0.0000"]
    assert rows[1].split() == ["ops", admin[:10] + "...", "*", "-", "-", "-", "-", "-", "yes",
                               "$0.0000", "$0.0000"]
    assert alice not in text.stdout and admin not in text.stdout

    listed = json.loads(keys_cli(config, "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["alice", "ops"]
    first = listed[0]
    assert first["models"] == ["claude-*", "gpt-5*"]
    assert (first["rpm"], first["tpm"], first["concurrency"]) == (60, 400000, 4)
    assert (first["budget"], first["budget_period"], first["admin"]) == (20, "day", False)
    assert first["expires_at"] == dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp()
    assert first["spend_today"] == 0 and first["spend_month"] == 0
    assert first["id"].startswith("key_") and "hash" not in first
    assert listed[1]["admin"] is True

    # Spend is the usage rows' cost by key id: today's, and this month's (UTC).
    now = time.time()
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
    earlier = day.timestamp() - 1 if day.day > 1 else None  # yesterday, if in this month
    usage = [(now, first["id"], 0.25), (now, first["id"], 0.5), (now, first["id"], None),
             (now, listed[1]["id"], 1.0)]
    if earlier is not None:
        usage.append((earlier, first["id"], 2.0))
    conn = sqlite3.connect(tmp_path / "data" / "bg.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(usage)")]
    for when, key, cost in usage:
        row = {name: 0 for name in columns} | {"time": when, "key": key, "cost": cost,
                                               "request_id": "r", "client": "c",
                                               "protocol": "p", "endpoint": "e",
                                               "model": "m", "provider": "p",
                                               "target_model": "t", "ttft_ms": None}
        conn.execute(f"INSERT INTO usage ({', '.join(row)}) VALUES "
                     f"({', '.join('?' for _ in row)})", list(row.values()))
    conn.commit()
    conn.close()
    spent = {k["name"]: (k["spend_today"], k["spend_month"])
             for k in json.loads(keys_cli(config, "list", "--json").stdout)}
    assert spent == {"alice": (0.75, 0.75 + (2.0 if earlier else 0.0)), "ops": (1.0, 1.0)}


def test_revoke_then_the_name_is_free_again(config: Path) -> None:
    first = create(config, "bob")
    again = keys_cli(config, "create", "bob")
    assert again.returncode == 1 and "a key named 'bob' exists" in again.stderr
    assert again.stdout == ""
    revoked = keys_cli(config, "revoke", "bob")
    assert revoked.returncode == 0 and "revoked key 'bob'" in revoked.stderr
    assert keys_cli(config, "revoke", "bob").returncode == 1
    assert "bob" not in keys_cli(config, "list").stdout
    second = create(config, "bob")
    assert second != first
    everything = json.loads(keys_cli(config, "list", "--json", "--all").stdout)
    assert [(k["name"], k["revoked_at"] is not None) for k in everything] == [
        ("bob", True), ("bob", False)]


def test_bad_values_are_usage_errors(config: Path) -> None:
    for args in (["--rpm", "0"], ["--expires", "soon"], ["--per", "week"]):
        result = keys_cli(config, "create", "x", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
    result = keys_cli(config, "create", "x", "--per", "day")
    assert result.returncode == 2 and "--per needs --budget" in result.stderr
    result = keys_cli(config, "create", "x", "--expires", "2001-01-01")
    assert result.returncode == 2 and "already past" in result.stderr


def test_expiry_spellings() -> None:
    now = 1_000_000.0
    assert parse_expiry("90d", now) == now + 90 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("30m", now) == now + 1800
    assert parse_expiry("2026-12-31", now) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert parse_expiry("2026-12-31T12:00:00+00:00", now) == dt.datetime(
        2026, 12, 31, 12, tzinfo=dt.UTC).timestamp()
    assert abs(parse_expiry("1h", time.time()) - time.time() - 3600) < 5
