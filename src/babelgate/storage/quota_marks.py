"""Quota marks in the database: which providers (or keys of a provider's `api_keys`) are used
up, and until when, across restarts and across the gateways that share the database.

What this module promises:
- Rows are (provider, key_id, since, resets_at, reason): `key_id` names one key of the
  provider's `api_keys` by a short hash (routing/policy.py `key_id`), '' for the provider as a
  whole; never a key itself.
- `load()` returns every stored mark; on SQLite it touches nothing when the file does not
  exist yet (a gateway that never stored anything leaves no file behind).
- `save()` and `delete()` never block the caller (the future they return says when the
  write is done): the statement is issued to the database
  (storage/database.py runs what was issued in order, off the event loop: a delete after a
  save removes it). A failed write is logged; the mark in memory stands.
- Plain SQL on plain values, the same on SQLite and PostgreSQL: nothing here knows what a
  quota is for.
"""

from __future__ import annotations

import asyncio
import logging

from .database import Database

log = logging.getLogger("babelgate")

Row = tuple[str, str, float, float, str]
PROVIDER = ""  # the key_id of a mark on the provider as a whole

_SAVE = """
INSERT INTO quota_marks (provider, key_id, since, resets_at, reason) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (provider, key_id) DO UPDATE SET since = excluded.since,
    resets_at = excluded.resets_at, reason = excluded.reason
"""


class QuotaStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: set[asyncio.Future[int]] = set()

    async def load(self) -> list[Row]:
        if not self.db.exists():
            return []
        rows = await self.db.fetch(
            "SELECT provider, key_id, since, resets_at, reason FROM quota_marks")
        return [(str(p), str(k), float(s), float(r), str(why)) for p, k, s, r, why in rows]

    def save(self, provider: str, key: str, since: float, resets_at: float,
             reason: str) -> asyncio.Future[int]:
        return self._issue(self.db.execute(_SAVE, provider, key, since, resets_at, reason))

    def delete(self, provider: str | None, key: str | None = None) -> asyncio.Future[int]:
        """Forget the marks of every provider (None), of one (`key` None: the provider's own
        and its keys'), or one mark."""
        if provider is None:
            future = self.db.execute("DELETE FROM quota_marks")
        elif key is None:
            future = self.db.execute("DELETE FROM quota_marks WHERE provider = ?", provider)
        else:
            future = self.db.execute(
                "DELETE FROM quota_marks WHERE provider = ? AND key_id = ?", provider, key)
        return self._issue(future)

    async def flush(self) -> None:
        """Wait for the writes issued so far (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _issue(self, future: asyncio.Future[int]) -> asyncio.Future[int]:
        self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[int]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("could not store a quota mark: %s", future.exception())
