"""What each gateway key spent today and this month (UTC), from the usage records.

`spend_by_key` is what `babelgate keys list` shows: per key id, the summed `cost` of its
usage rows since 00:00 UTC and since the first of the month. Until the database has a
`usage` table (the books) there is nothing to read and it returns {}: spend is unknown, which
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


# The usage table's `key` is the calling key's id (server/owner.py); `cost` is NULL where no
# price was known, which SUM leaves out (`babelgate usage` lists those models apart).
_SPEND = """
SELECT key, SUM(CASE WHEN time >= ? THEN cost ELSE 0 END), SUM(cost)
FROM usage WHERE time >= ? AND key IS NOT NULL GROUP BY key
"""


async def spend_by_key(db: Database, key_ids: Sequence[str], now: float) -> dict[str, Spend]:
    if not key_ids or not await db.has_table("usage"):
        return {}
    day, month = day_and_month_start(now)
    wanted = set(key_ids)
    rows = await db.fetch(_SPEND, day, month)
    spend = {row[0]: Spend(float(row[1] or 0.0), float(row[2] or 0.0))
             for row in rows if row[0] in wanted}
    # A key with no usage row this month spent nothing (the table exists: this is known).
    return {key: spend.get(key, Spend(0.0, 0.0)) for key in key_ids}


_SPEND_SINCE = """
SELECT key, SUM(cost) FROM usage WHERE time >= ? AND key IS NOT NULL GROUP BY key
"""


async def spend_since(db: Database, since: float) -> dict[str, float]:
    """USD each key id spent since `since` (unix time): the budgets' seed at start-up
    (babelgate.limits); a key without rows is absent."""
    if not db.exists() or not await db.has_table("usage"):
        return {}
    return {row[0]: float(row[1] or 0.0) for row in await db.fetch(_SPEND_SINCE, since)}
