"""The access log: one line per upstream attempt, and one per request refused before routing,
written in batches to stderr.

A line names the endpoint, the status and the request id (the one the daily log file and the
books carry); a failed upstream attempt is a WARNING line with the error's kind and message.
`logging` builds a LogRecord, formats it and writes to stderr for every call: about 45 µs per
request on the hot path, measured under load (docs/benchmark.md), a tenth of a request's whole
budget. Here a line is one f-string appended to a list; a timer writes the batch to the
stream every 100 ms, and at shutdown. Warnings and errors still go through `logging`.

Anything shaped like a key is masked before a line is queued. The part of an attempt's line
that repeats (endpoint, model, target and route: client and configuration text) is escaped
and masked once per distinct value and kept (`HEADS_KEPT` of them); the rest of the line is
numbers and our own request id, and an error's message is masked line by line. Masking the
whole batch at each flush cost ~4 K instructions a line under callgrind, formatting the
repeating part ~2 K.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from babelgate.books.record import UsageRecord

FLUSH_INTERVAL = 0.1  # seconds; lines reach the log at most this late
# Anything shaped like a key (a gateway key bg-..., sk-..., a Google AIza... key). A line holds
# client text (the model name, a Gemini path, an error message quoting either), and a careless
# client can put its key there: masked when the lines are written, off the request.
KEY_SHAPES = re.compile(r"\b(?:sk|bg|rk|pk)-[A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")
REDACTED = "[redacted]"
# What each shape starts with: five substring searches cost ~1.3 µs a line where the regex
# alone costs ~4.5 µs, so lines with none of them (nearly all) skip it.
KEY_MARKS = ("sk-", "bg-", "rk-", "pk-", "AIza")
HEADS_KEPT = 1024  # distinct (endpoint, model, target, route) kept formatted


def without_keys(text: str) -> str:
    """`text` with anything shaped like a key masked."""
    if any(mark in text for mark in KEY_MARKS):
        return KEY_SHAPES.sub(REDACTED, text)
    return text


class AccessLog:
    __slots__ = ("_heads", "_lines", "_scheduled", "_second", "_stamp", "enabled", "stream")

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._lines: list[str] = []
        self._scheduled = False
        self._second = -1
        self._stamp = ""
        # (endpoint, model, provider, target model, route) -> the line's head, escaped and
        # masked: immutable strings, emptied when full.
        self._heads: dict[tuple[str, str, str, str, str], str] = {}

    def attempt(self, rec: UsageRecord, route: str, message: str | None = None) -> None:
        """The line of one finished upstream attempt: `route` says what chose its target
        (`rule=... route=...`), `message` is its error's, if it failed."""
        where = (rec.endpoint, rec.model, rec.provider, rec.target_model, route)
        head = self._heads.get(where)
        if head is None:
            head = self._head(where)
        tail = f"ms={rec.latency_ms:.0f} request_id={rec.request_id}"
        if rec.error_kind is None:
            self._add(f"{head} in={rec.input_tokens} cache_read={rec.cache_read_tokens} "
                      f"out={rec.output_tokens} status={rec.status} {tail}")
        else:
            msg = without_keys(_safe((message or "")[:200]))
            # A client that left is no upstream's failure.
            level = "INFO" if rec.error_kind == "cancelled" else "WARNING"
            self._add(f"{head} error={rec.error_kind} status={rec.status} {tail} msg={msg}",
                      level)

    def _head(self, where: tuple[str, str, str, str, str]) -> str:
        endpoint, model, provider, target_model, route = where
        # The endpoint is client text too: a Gemini path carries the model, %0d%0a decoded.
        head = without_keys(f"{_safe(endpoint)} model={_safe(model)} target={provider}/"
                            f"{_safe(target_model)} {route}")
        if len(self._heads) >= HEADS_KEPT:
            self._heads.clear()
        self._heads[where] = head
        return head

    def refused(self, rec: UsageRecord, message: str) -> None:
        """The line of a request refused before any upstream was chosen."""
        self.write(f"{_safe(rec.endpoint)} model={_safe(rec.model)} status={rec.status} "
                   f"error={rec.error_kind} ms={rec.latency_ms:.0f} "
                   f"request_id={rec.request_id} msg={_safe(message[:200])}")

    def write(self, message: str, level: str = "INFO") -> None:
        """Queue `message` (without newline, masked here) behind a timestamp; flushed soon."""
        self._add(without_keys(message), level)

    def _add(self, message: str, level: str = "INFO") -> None:
        """Queue `message`, in which nothing is shaped like a key any more."""
        now = int(time.time())
        if now != self._second:  # formatting a time costs more than the rest of the line
            self._second = now
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        self._lines.append(f"{self._stamp} {level} babelgate {message}\n")
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        try:
            self.stream.write("".join(lines))  # masked as they were queued
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break serving
            pass


def _safe(text: str) -> str:
    """A client's text (a model name) cannot start a line of its own in the log."""
    return text if text.isprintable() else repr(text)[1:-1]
