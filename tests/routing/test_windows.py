"""Quota windows: each kind's next reset, in a fixed zone and in one with daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from babelgate.routing.windows import Window, parse_duration, parse_window

PLUS2 = timezone(timedelta(hours=2))
BERLIN = ZoneInfo("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int, minute: int,
       tz: timezone | ZoneInfo = PLUS2) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def local(moment: float, tz: timezone | ZoneInfo = PLUS2) -> datetime:
    return datetime.fromtimestamp(moment, tz)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5h", 18000), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
    ("6m0s", 360), ("250ms", 0.25), ("1.5s", 1.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "h", "5x", "5h x", "-5s"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_rolling_window_counts_from_the_refusal() -> None:
    window = parse_window("5h")
    assert window == Window("rolling", seconds=18000)
    assert window.resets_at(1000.0) == 19000.0


def test_daily_resets_at_the_next_local_time() -> None:
    window = parse_window("daily", "04:30")
    assert local(window.resets_at(at(2026, 12, 9, 3, 0), PLUS2)) == datetime(
        2026, 12, 9, 4, 30, tzinfo=PLUS2)
    # At or after today's reset: tomorrow's.
    assert local(window.resets_at(at(2026, 12, 9, 4, 30), PLUS2)) == datetime(
        2026, 12, 10, 4, 30, tzinfo=PLUS2)
    assert local(parse_window("daily").resets_at(at(2026, 12, 9, 23, 59), PLUS2)) == datetime(
        2026, 12, 10, 0, 0, tzinfo=PLUS2)


def test_weekly_resets_on_the_local_weekday() -> None:
    window = parse_window("weekly", "mon 00:00")
    # Wednesday 2026-12-09 -> Monday 2026-12-14, midnight local time.
    assert local(window.resets_at(at(2026, 12, 9, 15, 0), PLUS2)) == datetime(
        2026, 12, 14, 0, 0, tzinfo=PLUS2)
    # Monday before midnight's reset has passed: the Monday after.
    assert local(window.resets_at(at(2026, 12, 14, 0, 0), PLUS2)) == datetime(
        2026, 12, 21, 0, 0, tzinfo=PLUS2)
    # Sunday 23:59 -> the next minute.
    assert window.resets_at(at(2026, 12, 13, 23, 59), PLUS2) == at(2026, 12, 14, 0, 0)
    # A weekday and time other than the default.
    fri = parse_window("weekly", "fri 18:15")
    assert local(fri.resets_at(at(2026, 12, 9, 15, 0), PLUS2)) == datetime(
        2026, 12, 11, 18, 15, tzinfo=PLUS2)


def test_weekly_reset_is_wall_clock_midnight_across_daylight_saving() -> None:
    # Europe/Berlin leaves summer time on Sunday 2026-10-25: Monday's midnight is +01:00,
    # the refusal on Wednesday was at +02:00.
    window = parse_window("weekly", "mon")
    resets = window.resets_at(at(2026, 10, 21, 12, 0, tz=BERLIN), BERLIN)
    assert local(resets, BERLIN).replace(tzinfo=None) == datetime(2026, 10, 26, 0, 0)
    assert resets == datetime(2026, 10, 25, 23, 0, tzinfo=UTC).timestamp()


def test_weekly_reset_in_the_machines_local_time() -> None:
    # tz None: the process's local zone, whatever it is.
    window = parse_window("weekly", "tue 06:00")
    resets = window.resets_at(datetime(2026, 12, 9, 12, 0).timestamp())
    assert datetime.fromtimestamp(resets) == datetime(2026, 12, 15, 6, 0)


def test_monthly_resets_on_the_day_of_month() -> None:
    window = parse_window("monthly")  # "1 00:00"
    assert local(window.resets_at(at(2026, 12, 9, 12, 0), PLUS2)) == datetime(
        2027, 1, 1, 0, 0, tzinfo=PLUS2)
    mid = parse_window("monthly", "15 08:00")
    assert local(mid.resets_at(at(2026, 12, 9, 12, 0), PLUS2)) == datetime(
        2026, 12, 15, 8, 0, tzinfo=PLUS2)
    # A day the month lacks: its last day.
    end = parse_window("monthly", "31")
    assert local(end.resets_at(at(2027, 2, 3, 12, 0), PLUS2)) == datetime(
        2027, 2, 28, 0, 0, tzinfo=PLUS2)
