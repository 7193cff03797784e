"""`babelgate usage` as a user runs it: a real subprocess over a usage table written by the
store's own writer, in each output form; a model without a price is never shown as $0."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from babelgate.books.record import UsageRecord
from babelgate.books.store import UsageSink
from babelgate.storage.database import open_database
from babelgate.storage.url import StorageURL
from babelgate.storage.usage import UsageWriter

NOW = time.time()
DAY = 86400.0


def record(**fields: object) -> UsageRecord:
    base: dict[str, object] = dict(
        time=NOW - 60, request_id="r1", key=None, client="claude-code", protocol="anthropic",
        endpoint="/v1/messages", model="claude-sonnet-4-5", provider="deepseek",
        target_model="deepseek-chat", stream=True, status=200)
    base.update(fields)
    return UsageRecord(**base)  # type: ignore[arg-type]  # a test's keyword soup


@pytest.fixture
def config(tmp_path: Path) -> Path:
    db = tmp_path / "usage.db"
    database = open_database(StorageURL.from_settings(None, str(db)))
    sink = UsageSink(UsageWriter(database))
    for rec in (
        # a request that fell back: a failed attempt, then the answer
        record(request_id="a", provider="kimi", target_model="kimi-k2.5", status=503,
               error_kind="overloaded", final=False, cost=None),
        record(request_id="a", input_tokens=1000, output_tokens=200, cache_read_tokens=3000,
               cost=0.0005),
        record(request_id="b", key="alice", input_tokens=500, output_tokens=100,
               reasoning_tokens=40, cost=0.00025),
        # a model without a price
        record(request_id="c", key="alice", provider="local", target_model="qwen3-coder",
               input_tokens=700, output_tokens=70, cost=None),
        # too old for --since 7d
        record(request_id="d", time=NOW - 30 * DAY, input_tokens=9, cost=1.0),
    ):
        sink.record(rec)
    sink.close()
    asyncio.run(database.close())
    path = tmp_path / "babelgate.yaml"
    path.write_text(f"storage: {{path: {db}}}\n")
    return path


def usage(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "babelgate", "usage", "--config", str(config), *args],
        check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_json_by_provider(config: Path) -> None:
    data = orjson.loads(usage(config, "--since", "7d", "--by", "provider", "--json"))
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {"deepseek", "kimi", "local"}
    deepseek = groups["deepseek"]
    assert (deepseek["requests"], deepseek["input_tokens"], deepseek["output_tokens"],
            deepseek["cache_read_tokens"], deepseek["reasoning_tokens"]) == (
        2, 1500, 300, 3000, 40)
    assert deepseek["cost"] == pytest.approx(0.00075)
    assert groups["kimi"]["requests"] == 0 and groups["kimi"]["errors"] == 1
    assert groups["local"]["cost"] is None and groups["local"]["unpriced"] == 1
    total = data["total"]
    assert total["requests"] == 3 and total["errors"] == 1 and total["unpriced"] == 1
    assert total["cost"] == pytest.approx(0.00075)  # the known part; the rest is unknown
    assert [m["name"] for m in data["unpriced_models"]] == ["local/qwen3-coder"]


def test_csv_by_key(config: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(usage(config, "--by", "key", "--csv"))))
    by = {row["key"]: row for row in rows}
    assert set(by) == {"alice", "(no key)", "total"}
    assert by["alice"]["requests"] == "2" and by["alice"]["unpriced"] == "1"
    assert float(by["alice"]["cost"]) == pytest.approx(0.00025)
    assert by["(no key)"]["requests"] == "1"


def test_table_marks_unknown_cost(config: Path) -> None:
    out = usage(config, "--by", "model")
    assert "deepseek/deepseek-chat" in out and "$0.0008" in out
    assert "local/qwen3-coder" in out
    line = next(line for line in out.splitlines() if "local/qwen3-coder" in line)
    assert "unknown" in line and "$0 " not in line
    assert "Models without a price" in out


def test_a_bad_since_is_a_usage_error(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "babelgate", "usage", "--config", str(config), "--since",
         "yesterday"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--since 'yesterday'" in done.stderr


def test_no_database_yet_is_an_empty_report(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text(f"storage: {{path: {tmp_path / 'none.db'}}}\n")
    data = orjson.loads(usage(path, "--json"))
    assert data["groups"] == [] and data["total"]["requests"] == 0
