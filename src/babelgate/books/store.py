"""The usage store as a record sink: each UsageRecord becomes one row of the `usage` table.

What this module promises: `UsageSink.record` turns the record into a tuple (one C call) and
queues it on the storage writer (storage/usage.py), which writes batches on its own thread;
the request never waits for the database. `close()` writes what is still queued.
"""

from __future__ import annotations

from msgspec.structs import astuple

from babelgate.storage.usage import COLUMNS, UsageWriter

from .record import UsageRecord

# The table's columns are the record's first fields, in order: a row is the record as a
# tuple, cut after them (the trace context that follows is not stored).
assert UsageRecord.__struct_fields__[:len(COLUMNS)] == COLUMNS, \
    "storage/usage.py COLUMNS != UsageRecord"
STORED = len(COLUMNS)


class UsageSink:
    __slots__ = ("writer",)

    def __init__(self, writer: UsageWriter) -> None:
        self.writer = writer

    def record(self, rec: UsageRecord) -> None:
        self.writer.add(astuple(rec)[:STORED])

    def close(self) -> None:
        self.writer.close()
