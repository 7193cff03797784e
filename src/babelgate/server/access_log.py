"""The access log: one line per upstream attempt, written in batches.

`logging` builds a LogRecord, formats it and writes to stderr for every call: about 45 µs per
request on the hot path, measured under load (docs/benchmark.md), a tenth of a request's whole
budget. Here a line is one f-string appended to a list; a timer writes the batch to the
stream every 100 ms, and at shutdown. Warnings and errors still go through `logging`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

FLUSH_INTERVAL = 0.1  # seconds; lines reach the log at most this late


class AccessLog:
    __slots__ = ("_lines", "_scheduled", "_second", "_stamp", "enabled", "stream")

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._lines: list[str] = []
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def write(self, message: str) -> None:
        """Queue `message` (without newline) behind a timestamp; flushed soon."""
        now = int(time.time())
        if now != self._second:  # formatting a time costs more than the rest of the line
            self._second = now
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        self._lines.append(f"{self._stamp} INFO babelgate {message}\n")
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
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break serving
            pass
