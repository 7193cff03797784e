"""Quota windows: when a used-up quota comes back.

A window is a calendar period that resets at a fixed local time, or a rolling duration:
- `daily`, reset "HH:MM" (default "00:00");
- `weekly`, reset "<weekday> HH:MM" (mon..sun, default "mon 00:00");
- `monthly`, reset "<day of month> HH:MM" (default "1 00:00"; a day the month lacks, such as
  31 in April, means the month's last day);
- a duration (`90s`, `5h`, `1h30m`, `2d`, `1w`, `250ms`), counted from the refusal.
`Window.resets_at(since)` is the first reset strictly after `since` (Unix seconds). Calendar
times are the gateway machine's local time (or `tz`, for tests), daylight-saving changes
included: "mon 00:00" is midnight on the wall clock whatever the offset that day.
The syntax is checked when the configuration loads (config.py); `parse_window` trusts it.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PIECE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DEFAULT_RESET = {"daily": "00:00", "weekly": "mon 00:00", "monthly": "1 00:00"}


def parse_duration(text: str) -> float | None:
    """Seconds in "1h30m", "90s", "250ms", "6m0s" (Go's form, as x-ratelimit-reset-* use);
    None when `text` is not one."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for match in _PIECE.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos and pos == len(text) else None


@dataclass(frozen=True, slots=True)
class Window:
    kind: str  # daily | weekly | monthly | rolling
    seconds: float = 0.0  # rolling
    weekday: int = 0  # weekly: 0 is Monday
    day: int = 1  # monthly
    hour: int = 0
    minute: int = 0

    def resets_at(self, since: float, tz: tzinfo | None = None) -> float:
        if self.kind == "rolling":
            return since + self.seconds
        local = _local(since, tz)
        today = local.date()
        if self.kind == "daily":
            candidate = self._at(today, tz)
            return candidate if candidate > since else self._at(today + timedelta(days=1), tz)
        if self.kind == "weekly":
            day = today + timedelta(days=(self.weekday - today.weekday()) % 7)
            candidate = self._at(day, tz)
            return candidate if candidate > since else self._at(day + timedelta(days=7), tz)
        candidate = self._at(self._month_day(today.year, today.month), tz)
        if candidate > since:
            return candidate
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        return self._at(self._month_day(year, month), tz)

    def _month_day(self, year: int, month: int) -> date:
        return date(year, month, min(self.day, calendar.monthrange(year, month)[1]))

    def _at(self, day: date, tz: tzinfo | None) -> float:
        moment = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=tz)
        return moment.timestamp()  # naive: the local time zone, as mktime reads it


def _local(moment: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(moment, tz)  # tz None: local time, naive


def parse_window(window: str, reset: str | None = None) -> Window:
    """The Window for a configured `window` and `reset` (already validated)."""
    window = window.strip().lower()
    if window not in _DEFAULT_RESET:
        seconds = parse_duration(window)
        if seconds is None:
            raise ValueError(f"not a quota window: {window!r}")
        return Window("rolling", seconds=seconds)
    text = (reset or _DEFAULT_RESET[window]).strip().lower()
    first, _, clock = text.partition(" ")
    if window == "daily":
        clock, first = first, ""
    hour, minute = (int(x) for x in (clock or "00:00").split(":"))
    if window == "weekly":
        return Window("weekly", weekday=WEEKDAYS.index(first), hour=hour, minute=minute)
    if window == "monthly":
        return Window("monthly", day=int(first), hour=hour, minute=minute)
    return Window("daily", hour=hour, minute=minute)
