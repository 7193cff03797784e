"""Budget periods on the local calendar: a day from local midnight, a month from the first.

What this module promises: `Periods.current(period, now)` is the (start, end) in unix time of
the local day or month holding `now`, computed with the calendar once per period and cached
after, so the request path pays two comparisons. A DST change makes a day 23 or 25 hours
long, as the calendar says.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

Period = Literal["day", "month"]


def bounds(period: Period, now: float) -> tuple[float, float]:
    """The local `period` holding `now`: (start, end)."""
    today = dt.datetime.fromtimestamp(now).date()
    if period == "day":
        first, after = today, today + dt.timedelta(days=1)
    else:
        first = today.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    # Naive datetimes are local time: .timestamp() asks the system's zone (DST included).
    start = dt.datetime.combine(first, dt.time()).timestamp()
    end = dt.datetime.combine(after, dt.time()).timestamp()
    return start, end


class Periods:
    """The current day and month, recomputed only when one ends."""

    __slots__ = ("_day", "_month")

    def __init__(self) -> None:
        self._day = (0.0, 0.0)
        self._month = (0.0, 0.0)

    def current(self, period: Period, now: float) -> tuple[float, float]:
        cached = self._day if period == "day" else self._month
        if cached[0] <= now < cached[1]:
            return cached
        fresh = bounds(period, now)
        if period == "day":
            self._day = fresh
        else:
            self._month = fresh
        return fresh


def reset_text(end: float) -> str:
    """When a budget comes back, as a person reads it: local time with its zone."""
    return dt.datetime.fromtimestamp(end).astimezone().strftime("%Y-%m-%d %H:%M %Z")
