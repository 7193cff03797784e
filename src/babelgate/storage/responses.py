"""Stored Responses API turns, so clients can continue with `previous_response_id`.

What this module promises:
- Each response is one row: its own new input items, the response object the client got, the
  id it continued (`previous`) and its `owner`. A conversation is stored once, turn by turn:
  `chain(id, owner)` walks the links back (one recursive query, at most `max_turns` rows) and
  returns the turns oldest first, so storing turn n costs the size of turn n, not of the
  whole history.
- The tools a response echoes (a coding agent resends the same ~10 KB list every turn) are
  kept once per distinct list, in `response_tools` under the digest of their JSON, which the
  row names; reads put them back into the response object (as its last key). A row's list
  is written after the row itself, so a sweep of unused lists by another process sharing
  the database can never take one that a row being written needs; unused lists go when a
  response is deleted or pruned.
- `ResponseStore.put()` never blocks the event loop and never waits on the disk: the record
  goes into an in-memory `pending` dict at once and is written in the background. Reads see
  a put record immediately (from `pending` until its row is committed), so a follow-up
  request that arrives right after a response always finds it.
- The database (SQLite or PostgreSQL, storage/database.py) runs operations in the order
  they were issued: a delete after a put removes it.
- Every read, delete and continuation is scoped to an owner (None: the open gateway without
  keys); a record is invisible to any other owner, and a write never replaces another
  owner's row.
- On SQLite nothing touches the disk until a record is put, except `start()`, which prunes
  an existing database; a gateway whose clients never store leaves no file behind.
- A response older than `ttl_days` is never returned nor continued from; the turns before a
  live response stay as long as it needs them. Expired rows are pruned at start-up and then
  every `prune_every` seconds by a background task, off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .database import Database, Row, open_database
from .url import StorageURL, default_db_path

__all__ = ["DAY", "JSON", "ResponseStore", "StoredResponse", "default_db_path"]

log = logging.getLogger("babelgate")

JSON = dict[str, Any]
DAY = 86400.0


@dataclass(slots=True, frozen=True)
class StoredResponse:
    """One turn: the input items it added, the response object sent back, the response it
    continued (None: the conversation starts here) and whose it is (None: the open
    gateway)."""

    id: str
    created_at: float
    input: list[JSON]
    response: JSON
    previous: str | None = None
    owner: str | None = None

    @property
    def output(self) -> list[JSON]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


# The turns from one id back to the start of its conversation, newest first. The head must
# be unexpired; the turns before it are kept for it whatever their age. `depth` bounds the
# walk (and ends it should ids ever form a loop).
_CHAIN = """
WITH RECURSIVE chain(id, created_at, input, response, previous, tools, depth) AS (
    SELECT id, created_at, input, response, previous, tools, 1 FROM responses
    WHERE id = ? AND owner IS NOT DISTINCT FROM ? AND created_at >= ?
    UNION ALL
    SELECT r.id, r.created_at, r.input, r.response, r.previous, r.tools, chain.depth + 1
    FROM responses AS r JOIN chain ON r.id = chain.previous
    WHERE r.owner IS NOT DISTINCT FROM ? AND chain.depth < ?
)
SELECT chain.id, chain.created_at, chain.input, chain.response, chain.previous, chain.tools,
    t.tools
FROM chain LEFT JOIN response_tools AS t ON t.digest = chain.tools ORDER BY chain.depth
"""

_GET = """
SELECT r.created_at, r.input, r.response, r.previous, r.tools, t.tools
FROM responses AS r LEFT JOIN response_tools AS t ON t.digest = r.tools
WHERE r.id = ? AND r.owner IS NOT DISTINCT FROM ? AND r.created_at >= ?
"""

# Expired rows that no unexpired response continues from, directly or not. UNION (not
# UNION ALL) visits each ancestor once, however many live turns share it.
_PRUNE = """
WITH RECURSIVE needed(id) AS (
    SELECT previous FROM responses WHERE created_at >= ? AND previous IS NOT NULL
    UNION
    SELECT r.previous FROM responses AS r JOIN needed ON r.id = needed.id
    WHERE r.previous IS NOT NULL
)
DELETE FROM responses WHERE created_at < ? AND id NOT IN (SELECT id FROM needed)
"""

_WRITE = """
INSERT INTO responses (id, created_at, input, response, previous, owner, tools)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, input = excluded.input,
    response = excluded.response, previous = excluded.previous, tools = excluded.tools
WHERE responses.owner IS NOT DISTINCT FROM excluded.owner
"""

_WRITE_TOOLS = """
INSERT INTO response_tools (digest, tools) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING
"""

# Tool lists no row names any more (responses.tools is indexed: one lookup per list).
_SWEEP_TOOLS = """
DELETE FROM response_tools
WHERE NOT EXISTS (SELECT 1 FROM responses WHERE responses.tools = response_tools.digest)
"""


class ResponseStore:
    def __init__(
        self, db: Database | str | os.PathLike[str], ttl_days: float = 30.0, *,
        max_turns: int = 1000, prune_every: float = 3600.0,
    ) -> None:
        # A path: a SQLite file of the store's own, closed with it. A Database: the app's,
        # shared with keys and usage, closed by the app.
        self._owns_db = not isinstance(db, Database)
        self.db = db if isinstance(db, Database) else open_database(StorageURL.sqlite(db))
        self.ttl = ttl_days * DAY
        # A continuation loads every turn of its conversation: this bounds that memory.
        self.max_turns = max_turns
        self.prune_every = prune_every  # seconds between two prunes while running
        self.pending: dict[str, StoredResponse] = {}
        self._writes: set[asyncio.Future[int]] = set()
        self._pruner: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self.db.url.path

    # ------------------------------------------------------------ lifecycle (event loop)
    async def start(self) -> int:
        """Prune an existing database and start pruning periodically; returns how many
        records went now. A missing file is left missing until the first put."""
        pruned = await self._prune_if_any()
        self._pruner = asyncio.get_running_loop().create_task(self._prune_periodically())
        return pruned

    async def close(self) -> None:
        """Stop pruning, finish queued writes (and close the database if it is the
        store's own)."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self.flush()
        if self._owns_db:
            await self.db.close()

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.prune_every)
            try:
                await self._prune_if_any()
            except Exception:  # a locked or broken database: say so, try again next time
                log.exception("could not prune stored responses")

    async def _prune_if_any(self) -> int:
        if not self.db.exists():
            return 0
        return await self.prune()

    # ------------------------------------------------------------ operations (event loop)
    def put(self, record: StoredResponse) -> None:
        """Keep `record` now, write it in the background.

        Why not await the write before the client's last bytes: measured on the 2-core dev
        box, a write (24 KB of history) takes ~0.1 ms at p50 but ~8 ms at p99 (WAL
        checkpoints), all of it added to the client's latency. `put` itself costs ~15 us
        (p50) on the event loop, and `pending` makes the record visible at once."""
        try:
            items = orjson.dumps(record.input)
            response, tools = _split_tools(record.response)
        except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. nested past orjson's limit
            # The client already has its answer; only a later continuation will miss it.
            log.error("could not store response %s: %s", record.id, exc)
            return
        digest = None if tools is None else hashlib.blake2b(tools, digest_size=16).hexdigest()
        self.pending[record.id] = record
        write = self.db.execute(
            _WRITE, record.id, record.created_at, items, response, record.previous,
            record.owner, digest,
        )
        self._writes.add(write)
        write.add_done_callback(lambda done: self._written(record, done))
        if digest is not None:
            # After the row (see the module's promise); most often a list already kept.
            kept = self.db.execute(_WRITE_TOOLS, digest, tools)
            self._writes.add(kept)
            kept.add_done_callback(lambda done: self._tools_written(record, done))

    async def get(self, rid: str, owner: str | None) -> StoredResponse | None:
        """One unexpired response of `owner`."""
        oldest = time.time() - self.ttl
        record = self.pending.get(rid)
        if record is not None:
            return record if _visible(record, owner, oldest) else None
        if not self.db.exists():
            return None
        row = await self.db.fetchone(_GET, rid, owner, oldest)
        if row is None:
            return None
        return StoredResponse(
            rid, row[0], orjson.loads(row[1]), _response(row[2], row[4], row[5], {}), row[3],
            owner,
        )

    async def chain(self, rid: str, owner: str | None) -> list[StoredResponse] | None:
        """The turns of the conversation that ends with `rid`, oldest first, at most
        `max_turns` of them; None when `rid` is not an unexpired response of `owner`. The
        first turn's `previous` is not None when the chain is broken (a turn before it was
        deleted) or longer than `max_turns`."""
        oldest = time.time() - self.ttl
        turns: list[StoredResponse] = []
        cursor: str | None = rid
        # Turns not yet written are newest; every older one is on disk or queued to be
        # (the database runs them before it reads the chain).
        while cursor is not None and len(turns) < self.max_turns:
            record = self.pending.get(cursor)
            if record is None:
                break
            if not _visible(record, owner, oldest if not turns else 0.0):
                return None if not turns else _oldest_first(turns)
            turns.append(record)
            cursor = record.previous
        if cursor is not None and len(turns) < self.max_turns and self.db.exists():
            rows = await self.db.fetch(
                _CHAIN, cursor, owner, oldest if not turns else 0.0, owner,
                self.max_turns - len(turns),
            )
            tools: dict[str, list[JSON]] = {}  # each list decoded once
            turns += [_stored(row, owner, tools) for row in rows]
        return _oldest_first(turns) if turns else None

    async def delete(self, rid: str, owner: str | None) -> bool:
        record = self.pending.get(rid)
        was_pending = record is not None and record.owner == owner
        if was_pending:
            del self.pending[rid]
        if not self.db.exists():
            return was_pending
        # Issued after any write of the same id (the database runs them in order), so the
        # row cannot come back.
        deleted = await self.db.execute(
            "DELETE FROM responses WHERE id = ? AND owner IS NOT DISTINCT FROM ?", rid, owner
        )
        if deleted:
            await self.db.execute(_SWEEP_TOOLS)  # its tools too, unless another row uses them
        return deleted > 0 or was_pending

    async def prune(self, now: float | None = None) -> int:
        oldest = (time.time() if now is None else now) - self.ttl
        count = await self.db.execute(_PRUNE, oldest, oldest)
        await self.db.execute(_SWEEP_TOOLS)
        if count:
            log.info("pruned %d stored responses older than %g days", count, self.ttl / DAY)
        return count

    async def flush(self) -> None:
        """Wait until every put so far is on disk (tests, shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _written(self, record: StoredResponse, done: asyncio.Future[int]) -> None:
        self._writes.discard(done)
        if self.pending.get(record.id) is record:
            del self.pending[record.id]
        if not done.cancelled() and done.exception() is not None:
            # The client already has its answer; only a later continuation will miss it.
            log.error("could not store response %s: %s", record.id, done.exception())

    def _tools_written(self, record: StoredResponse, done: asyncio.Future[int]) -> None:
        self._writes.discard(done)
        if not done.cancelled() and done.exception() is not None:
            # Read back, the response lacks only its echo of the tools.
            log.error("could not store the tools of response %s: %s", record.id,
                      done.exception())


def _split_tools(response: JSON) -> tuple[bytes, bytes | None]:
    """The response object's JSON without its tools, and theirs (None: it echoes none)."""
    tools = response.get("tools")
    if not isinstance(tools, list) or not tools:
        return orjson.dumps(response), None
    rest = {key: value for key, value in response.items() if key != "tools"}
    return orjson.dumps(rest), orjson.dumps(tools)


def _response(raw: bytes, digest: str | None, tools: bytes | None,
              decoded: dict[str, list[JSON]]) -> JSON:
    """A stored response object with its tools put back (`decoded`: the lists already read,
    by digest). A row stored before the tools had their table holds its own."""
    response: JSON = orjson.loads(raw)
    if digest is not None and tools is not None:
        found = decoded.get(digest)
        if found is None:
            found = decoded[digest] = orjson.loads(tools)
        response["tools"] = found
    return response


def _stored(row: Row, owner: str | None, tools: dict[str, list[JSON]]) -> StoredResponse:
    return StoredResponse(
        row[0], row[1], orjson.loads(row[2]), _response(row[3], row[5], row[6], tools), row[4],
        owner,
    )


def _visible(record: StoredResponse, owner: str | None, oldest: float) -> bool:
    return record.owner == owner and record.created_at >= oldest


def _oldest_first(turns: list[StoredResponse]) -> list[StoredResponse]:
    turns.reverse()
    return turns
