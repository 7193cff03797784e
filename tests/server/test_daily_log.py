"""The daily log file on its own: line format, rotation at local midnight and by size, pruning
of old days, json lines and redaction of bodies. Time comes from a settable clock, so nothing
sleeps; with no event loop running, a record is written at once by the calling thread."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import orjson
import pytest

from babelgate.books.record import UsageRecord
from babelgate.server.daily_log import DailyLog, Redactor, fields, record_text, text_line


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def local(y: int, mo: int, d: int, h: int = 12, mi: int = 0, s: int = 0) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))


def record(when: float, **changes: object) -> UsageRecord:
    values: dict[str, object] = dict(
        time=when, request_id="req_1", key=None, client="claude-code", protocol="anthropic",
        endpoint="/v1/messages", model="claude-sonnet", provider="ds",
        target_model="deepseek-chat", stream=False, status=200, input_tokens=10,
        output_tokens=20, cost=0.00012, latency_ms=812.4,
    )
    values.update(changes)
    return UsageRecord(**values)  # type: ignore[arg-type]


def test_a_text_line_has_the_issue_fields(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22, 15, 30, 45))
    log = DailyLog(tmp_path, clock=clock)
    log.record(record(clock.now, key="alice", route="claude-*"))
    line = (tmp_path / "babelgate-2026-01-22.log").read_text()
    assert line == (
        "2026-01-22 15:30:45 | INFO | REQUEST | model=claude-sonnet | target=ds/deepseek-chat"
        " | input_tokens=10 | output_tokens=20 | total_tokens=30 | cost=0.00012 | ms=812"
        " | status=success | http_status=200 | request_id=req_1 | key=alice"
        " | client=claude-code | protocol=anthropic | endpoint=/v1/messages | stream=false"
        " | route=claude-*\n"
    )


def test_failures_unknown_costs_and_hostile_model_names(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22))
    log = DailyLog(tmp_path, clock=clock)
    log.record(record(clock.now, cost=None, status=429, error_kind="rate_limit", final=False,
                      model="evil\n2026-01-22 00:00:00 | INFO | REQUEST | model=x|y",
                      stream=True, ttft_ms=120.0))
    text = (tmp_path / "babelgate-2026-01-22.log").read_text()
    assert text.count("\n") == 1  # the newline in the model name did not start a line
    assert " | WARNING | REQUEST | " in text
    assert "model=evil\\x0a2026-01-22 00:00:00 \\x7c INFO" in text
    assert "| cost=unknown |" in text
    assert "| ttft_ms=120 | status=error | error=rate_limit | http_status=429 |" in text
    assert text.endswith("| stream=true | fallback=true\n")


def test_rotation_at_local_midnight(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22, 23, 59, 59))
    log = DailyLog(tmp_path, clock=clock)
    log.record(record(clock.now, request_id="before"))
    clock.now = local(2026, 1, 23, 0, 0, 1)
    log.record(record(clock.now, request_id="after"))
    day1 = (tmp_path / "babelgate-2026-01-22.log").read_text()
    day2 = (tmp_path / "babelgate-2026-01-23.log").read_text()
    assert "request_id=before" in day1 and "request_id=after" not in day1
    assert day2.startswith("2026-01-23 00:00:01 | INFO")
    assert "request_id=after" in day2


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22))
    one = len(text_line(fields(record(clock.now, request_id="r0000"), "2026-01-22 12:00:00")))
    log = DailyLog(tmp_path, clock=clock, max_bytes=3 * one, backups=2)
    for i in range(14):  # five files' worth: three rotations, two backups kept
        log.record(record(clock.now, request_id=f"r{i:04d}"))
    base = tmp_path / "babelgate-2026-01-22.log"
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == [base.name, base.name + ".1", base.name + ".2"]
    for path in (base, Path(f"{base}.1"), Path(f"{base}.2")):
        assert path.stat().st_size <= 3 * one
    assert base.read_text().count("\n") == 2  # 14 = 3 + 3 + 3 + 3 + 2
    assert "request_id=r0012" in base.read_text()
    assert "request_id=r0009" in Path(f"{base}.1").read_text()
    assert "request_id=r0006" in Path(f"{base}.2").read_text()


def test_rotation_by_size_in_one_batch(tmp_path: Path) -> None:
    """Many lines handed over at once still split across files at the limit."""
    clock = Clock(local(2026, 1, 22))
    log = DailyLog(tmp_path, clock=clock, max_bytes=2000, backups=5)
    log.write([record(clock.now, request_id=f"r{i:04d}") for i in range(30)])
    files = sorted(tmp_path.iterdir())
    assert len(files) > 2
    lines = sum(p.read_text().count("\n") for p in files)
    assert lines == 30
    assert all(p.stat().st_size <= 2000 for p in files)


def test_keep_days_prunes_old_days(tmp_path: Path) -> None:
    for day in ("2026-01-01", "2026-01-13", "2026-01-14", "2026-01-20"):
        (tmp_path / f"babelgate-{day}.log").write_text("old\n")
    (tmp_path / "babelgate-2026-01-02.log.3").write_text("old backup\n")
    (tmp_path / "notes.txt").write_text("not ours\n")
    clock = Clock(local(2026, 1, 22, 9))
    log = DailyLog(tmp_path, clock=clock, keep_days=9)  # today and the 8 days before it
    log.record(record(clock.now))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["babelgate-2026-01-14.log", "babelgate-2026-01-20.log",
                     "babelgate-2026-01-22.log", "notes.txt"]
    # The next day's first line prunes again.
    clock.now = local(2026, 1, 23, 0, 0, 5)
    log.record(record(clock.now))
    assert not (tmp_path / "babelgate-2026-01-14.log").exists()
    assert (tmp_path / "babelgate-2026-01-22.log").exists()
    assert log.prune(dt.date(2026, 1, 23)) is None


def test_json_lines_carry_the_same_fields(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22, 15, 30, 45))
    log = DailyLog(tmp_path, clock=clock, format="json")
    log.record(record(clock.now, key="alice"))
    log.record(record(clock.now, cost=None, status=502, error_kind="api_error"))
    lines = (tmp_path / "babelgate-2026-01-22.log").read_text().splitlines()
    first, second = (orjson.loads(line) for line in lines)
    assert first == {
        "time": "2026-01-22 15:30:45", "level": "INFO", "event": "REQUEST",
        "model": "claude-sonnet", "target": "ds/deepseek-chat", "input_tokens": 10,
        "output_tokens": 20, "total_tokens": 30, "cost": 0.00012, "ms": 812,
        "status": "success", "http_status": 200, "request_id": "req_1", "key": "alice",
        "client": "claude-code", "protocol": "anthropic", "endpoint": "/v1/messages",
        "stream": False,
    }
    assert second["cost"] is None and second["error"] == "api_error"
    assert second["level"] == "WARNING" and second["status"] == "error"


def test_bodies_only_when_asked_and_redacted(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22))
    body = orjson.dumps({
        "model": "m", "api_key": "sk-provider-SECRET-1234",
        "headers": {"Authorization": "Bearer bg-client-SECRET-9999", "x-goog-api-key": "zz"},
        "note": "my key is AIzaSyA-SECRET-abcdefghijklmnop and own-secret-value",
    })
    quiet = DailyLog(tmp_path / "off", clock=clock)
    quiet.body("req_1", "request", body)
    assert not (tmp_path / "off").exists()
    log = DailyLog(tmp_path, clock=clock, bodies=True,
                   redactor=Redactor(["sk-provider-SECRET-1234"]))
    log.body("req_1", "request", body, secrets=("own-secret-value",))
    text = (tmp_path / "babelgate-2026-01-22.log").read_text()
    assert "| BODY | request_id=req_1 | what=request | body=" in text
    for secret in ("SECRET", "own-secret-value", '"zz"'):
        assert secret not in text
    assert '"model":"m"' in text


async def test_on_the_loop_lines_are_written_by_a_thread(tmp_path: Path) -> None:
    clock = Clock(local(2026, 1, 22))
    log = DailyLog(tmp_path, clock=clock, interval=60)
    for i in range(5):
        log.record(record(clock.now, request_id=f"r{i}"))
    assert not tmp_path.joinpath("babelgate-2026-01-22.log").exists()  # queued, not written
    await log.close()
    assert (tmp_path / "babelgate-2026-01-22.log").read_text().count("\n") == 5


@pytest.mark.parametrize("value,text", [(0.0, "0"), (1.5, "1.5"), (0.00012, "0.00012")])
def test_costs_are_written_as_decimals(tmp_path: Path, value: float, text: str) -> None:
    clock = Clock(local(2026, 1, 22))
    DailyLog(tmp_path, clock=clock).record(record(clock.now, cost=value))
    assert f"| cost={text} |" in (tmp_path / "babelgate-2026-01-22.log").read_text()


@pytest.mark.parametrize("changes", [
    {}, {"key": "alice", "route": "claude-*", "rule": "bg"},
    {"cost": None, "status": 429, "error_kind": "rate_limit", "final": False},
    {"cache_read_tokens": 5, "cache_write_tokens": 6, "reasoning_tokens": 7, "stream": True,
     "ttft_ms": 33.3}, {"status": 499, "error_kind": "cancelled", "cost": 0.0},
    {"provider": "", "target_model": "", "model": "a|b\nc", "key": "k\x7f"},
    {"request_id": "r|1\n"}, {"request_id": ""}, {"request_id": "0a1b2c3d4e5f000123"},
])
def test_the_written_out_text_line_is_the_generic_one(changes: dict[str, object]) -> None:
    rec = record(local(2026, 1, 22), **changes)
    assert record_text(rec, "2026-01-22 12:00:00") == text_line(
        fields(rec, "2026-01-22 12:00:00"))


def test_key_shaped_client_text_is_masked_in_every_line(tmp_path: Path) -> None:
    # The repeating parts of a line are formatted once and kept: the second line, built
    # from the kept parts, must be masked as the first.
    clock = Clock(local(2026, 1, 22))
    log = DailyLog(tmp_path, clock=clock)
    secret = "bg-Abcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(2):
        log.record(record(clock.now, request_id=f"r{i}", model=secret,
                          endpoint=f"/v1beta/models/x:generateContent?key={secret}"))
    text = (tmp_path / "babelgate-2026-01-22.log").read_text()
    assert secret not in text
    assert text.count("model=[redacted]") == 2
    assert text.count("request_id=r0") == 1 and text.count("request_id=r1") == 1


def test_a_request_id_is_escaped_and_masked_unless_it_is_plain(tmp_path: Path) -> None:
    # babelgate's own ids are letters and digits; anything else goes the long way.
    clock = Clock(local(2026, 1, 22))
    log = DailyLog(tmp_path, clock=clock)
    secret = "bg-Abcdefghijklmnopqrstuvwxyz0123456789"
    for request_id in ("0a1b2c3d4e5f000123", "x|y", secret, "AIza" + "B" * 30):
        log.record(record(clock.now, request_id=request_id))
    text = (tmp_path / "babelgate-2026-01-22.log").read_text()
    assert "request_id=0a1b2c3d4e5f000123 |" in text
    assert "request_id=x\\x7cy |" in text
    assert secret not in text and "AIza" not in text
    assert text.count("request_id=[redacted] |") == 2
