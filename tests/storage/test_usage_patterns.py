"""The usage writer on SQLite binds neither NULLs nor flags: each pattern of them has an
INSERT of its own with NULL, 0 and 1 written into it (storage/usage.py). What must hold,
over random batches mixing every pattern: the rows it stores are the rows a plain INSERT
binding every value as it is stores, value for value and type for type, in the same order."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from babelgate.storage.database import open_database
from babelgate.storage.migrations import migrate
from babelgate.storage.url import StorageURL
from babelgate.storage.usage import COLUMNS, UsageWriter

texts = st.text(max_size=12)
nullable_texts = st.none() | st.text(min_size=1, max_size=12)
counts = st.integers(min_value=0, max_value=2**40)
times = st.floats(min_value=0, max_value=2e9, allow_nan=False)
nullable_times = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)

# One strategy per column, in COLUMNS order: what a UsageRecord holds there.
COLUMN_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "time": times, "request_id": texts, "key": nullable_texts, "client": texts,
    "protocol": texts, "endpoint": texts, "model": texts, "provider": texts,
    "target_model": texts, "stream": st.booleans(), "status": st.integers(100, 599),
    "error_kind": nullable_texts, "rule": nullable_texts, "route": nullable_texts,
    "input_tokens": counts, "output_tokens": counts, "cache_read_tokens": counts,
    "cache_write_tokens": counts, "reasoning_tokens": counts,
    "cost": st.none() | st.floats(min_value=0, max_value=1e4, allow_nan=False),
    "latency_ms": st.floats(min_value=0, max_value=1e7, allow_nan=False),
    "ttft_ms": nullable_times, "final": st.booleans(), "estimated": st.booleans(),
}
assert tuple(COLUMN_VALUES) == COLUMNS
rows = st.tuples(*COLUMN_VALUES.values())


def stored(path: Path) -> list[tuple[tuple[type, Any], ...]]:
    """Every usage row in insertion order, each value with its Python type (1 and 1.0, or
    NULL and '', are different rows)."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM usage ORDER BY rowid")
        return [tuple((type(value), value) for value in row) for row in found]
    finally:
        conn.close()


def plainly(path: Path, batch: list[tuple[Any, ...]]) -> None:
    """The reference: one INSERT binding every value as it is (None, bools and all)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn)
        conn.executemany(f"INSERT INTO usage ({', '.join(COLUMNS)}) "
                         f"VALUES ({', '.join('?' for _ in COLUMNS)})", batch)
    finally:
        conn.close()


# No shrinking: each example makes two databases, and a failure's batch is short enough.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(batch=st.lists(rows, min_size=1, max_size=40), batch_rows=st.integers(1, 50))
def test_rows_are_stored_as_a_plain_insert_stores_them(
    batch: list[tuple[Any, ...]], batch_rows: int
) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        ours, reference = Path(workdir, "ours.db"), Path(workdir, "reference.db")
        db = open_database(StorageURL.sqlite(ours))
        writer = UsageWriter(db, flush_interval=3600, batch_rows=batch_rows)
        for row in batch:
            writer.add(row)
        writer.close()  # writes what is queued, in batches of batch_rows
        assert writer.written == len(batch)
        plainly(reference, batch)
        assert stored(ours) == stored(reference)
