"""Reading the books: the queries `babelgate usage` and the admin JSON API share.

What this module promises:
- Each function takes the gateway's `Database` (SQLite or PostgreSQL) and answers plain
  JSON-ready values; the CLI prints them (or tables of them), the server sends them. There
  is one copy of each query.
- Usage rows name a key by its id; every answer here names it as people do (`name`, or
  `name (revoked)`), an id no key has any more stays as it is.
- `usage_summary` is `babelgate usage`'s summary (books/report.py); `usage_series` splits a
  period into at most `MAX_BUCKETS` equal steps (requests, tokens, cost in each);
  `recent_requests` is the last `limit` requests (final records: a request that fell back is
  its last attempt), newest first, at most `MAX_RECENT`.
- A database with no usage table yet answers empty results, never an error.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from babelgate.storage.database import Database
from babelgate.storage.keys import list_keys
from babelgate.storage.usage import COLUMNS, read_since_db

from .report import TOKENS, Summary, summarise

MAX_BUCKETS = 500
MAX_RECENT = 500


async def key_names(db: Database) -> dict[str, str]:
    """Key id -> the key's name (`name (revoked)` for a revoked one)."""
    if not await db.has_table("keys"):
        return {}
    return {record.id: record.name + (" (revoked)" if record.revoked_at else "")
            for record in await list_keys(db, revoked=True)}


async def usage_rows(db: Database, since: float) -> list[dict[str, Any]]:
    """The usage rows from `since` (unix seconds) on, oldest first, keys by name."""
    rows = await read_since_db(db, since)
    if any(row["key"] for row in rows):
        names = await key_names(db)
        for row in rows:
            if row["key"]:
                row["key"] = names.get(row["key"], row["key"])
    return rows


async def usage_summary(db: Database, since: float, by: str) -> Summary:
    """Requests, tokens, cost and errors of the period, grouped `by` day, model, key or
    provider (books/report.py)."""
    return summarise(await usage_rows(db, since), by, since)


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds")


def _bucket_seconds(span: float, buckets: int) -> int:
    """A round step (1 min, 5 min, 15 min, 1 h, 6 h, 1 day...) giving at most `buckets`."""
    for step in (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400):
        if span / step <= buckets:
            return step
    return int(span / buckets) + 1


def series_of(rows: list[dict[str, Any]], since: float, until: float,
              buckets: int) -> dict[str, Any]:
    """`rows` counted in equal steps from `since` to `until` (see usage_series)."""
    buckets = max(1, min(buckets, MAX_BUCKETS))
    step = _bucket_seconds(max(until - since, 60.0), buckets)
    start = since - since % step  # steps on round times: 10:00, 10:05...
    count = int((until - start) // step) + 1
    points: list[dict[str, Any]] = [
        {"time": _iso(start + i * step), "requests": 0, "input_tokens": 0, "output_tokens": 0,
         "cost": 0.0, "errors": 0}
        for i in range(count)]
    for row in rows:
        at = int((row["time"] - start) // step)
        if not 0 <= at < count:
            continue
        point = points[at]
        if row["final"]:
            point["requests"] += 1
        point["input_tokens"] += row["input_tokens"] or 0
        point["output_tokens"] += row["output_tokens"] or 0
        point["cost"] += row["cost"] or 0.0
        if row["error_kind"] is not None and row["error_kind"] != "cancelled":
            point["errors"] += 1
    return {"since": _iso(since), "until": _iso(until), "step_s": step, "points": points}


async def usage_series(db: Database, since: float, until: float,
                       buckets: int = 48) -> dict[str, Any]:
    """Requests, input and output tokens, cost and errors per step of the period (counted as
    `usage_summary` counts them), each step named by its start time (UTC)."""
    return series_of(await usage_rows(db, since), since, until, buckets)


_RECENT = (f"SELECT {', '.join(COLUMNS)} FROM usage WHERE final = ? "
           "ORDER BY time DESC LIMIT ?")


async def recent_requests(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` requests, newest first: time (ISO UTC), client, key, model asked,
    target served (`provider/model`, null when refused before any upstream), tokens,
    latency, status and error kind."""
    if not await db.has_table("usage"):
        return []
    limit = max(1, min(limit, MAX_RECENT))
    # `final` is a boolean on PostgreSQL and 0/1 on SQLite: True binds as either.
    rows = [dict(zip(COLUMNS, row, strict=True))
            for row in await db.fetch(_RECENT, True, limit)]
    names = await key_names(db) if any(row["key"] for row in rows) else {}
    return [{
        "time": _iso(row["time"]), "request_id": row["request_id"],
        "client": row["client"], "key": names.get(row["key"], row["key"]),
        "protocol": row["protocol"], "model": row["model"],
        "target": f"{row['provider']}/{row['target_model']}" if row["provider"] else None,
        "stream": bool(row["stream"]), "status": row["status"],
        "error_kind": row["error_kind"],
        **{name: row[name] or 0 for name in TOKENS},
        "cost": row["cost"], "latency_ms": row["latency_ms"], "ttft_ms": row["ttft_ms"],
    } for row in rows]
