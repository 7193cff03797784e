"""What each gateway key spent today and this month (UTC), from the usage records.

`spend_by_key` is what `babelgate keys list` shows. Until the database has a `usage` table
(the books, issue 10) there is nothing to read and it returns {}: spend is unknown, which
the listing shows as "-", never as 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .database import Database


@dataclass(frozen=True, slots=True)
class Spend:
    today: float  # USD since 00:00 UTC
    month: float  # USD since the first of the month, 00:00 UTC


def day_and_month_start(now: float) -> tuple[float, float]:
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
    return day.timestamp(), day.replace(day=1).timestamp()


async def spend_by_key(db: Database, key_ids: Sequence[str], now: float) -> dict[str, Spend]:
    if not key_ids or not await db.has_table("usage"):
        return {}
    return {}
