"""The daily log file: one line per finished upstream attempt, in `babelgate-YYYY-MM-DD.log`.

What this module promises:
- `DailyLog.record(rec)` runs on the request path and only appends to a list. A timer on the
  event loop hands what gathered to one writer thread every `interval` seconds; formatting,
  file I/O, rotation and pruning happen there, never on the event loop.
- A line goes to the file named for the local date of the injected clock when it is written:
  a new file at local midnight. Past `max_bytes` the day's file moves to `.1` (`.1` to `.2`
  ..., `backups` kept), so no file grows past the limit unless one line alone does. Files of
  days `keep_days` or more before today are deleted when a day's file is first opened.
- `text` lines read `2026-01-22 15:30:45 | INFO | REQUEST | model=... | target=... | ...`;
  `json` lines are one object with the same fields. A value a client chose (a model name)
  cannot break a line or forge a field: `|`, control characters and newlines are escaped.
- No key reaches the file: a record holds none, and a body (written only when `bodies` is
  on) passes through `Redactor` first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import orjson

from babelgate.books.record import UsageRecord

from .access_log import without_keys

log = logging.getLogger("babelgate")

Clock = Callable[[], float]  # unix seconds; time.time in production, a settable one in tests
FILE_PATTERN = re.compile(r"babelgate-(\d{4}-\d{2}-\d{2})\.log(?:\.\d+)?")

# A value written into a text line: nothing in it may end the line or look like a separator.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {ord("|"): "\\x7c", 127: "\\x7f"}


class Redactor:
    """Removes keys from a body before it is logged: every known secret (provider keys and
    header values from the configuration, the caller's own key), the values of credential
    headers or fields, and anything shaped like an API key."""

    PATTERNS = re.compile(
        r"""(?ix)
        ((?:authorization|x-api-key|x-goog-api-key|api[_-]?key)["']?\s*[:=]\s*["']?)
            ([^"'\s,}]+(?:\s[^"'\s,}]+)?)           # a credential field's value (Bearer x)
        | \b(?:sk|bg|rk|pk)-[A-Za-z0-9_\-]{8,}       # sk-..., bg-... keys
        | \bAIza[0-9A-Za-z_\-]{20,}                 # Google API keys
        """
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a key that contains another is replaced whole.
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def __call__(self, text: str, extra: Iterable[str] = ()) -> str:
        for secret in (*self.secrets, *extra):
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        return self.PATTERNS.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"{match.group(1)}[redacted]"
    return "[redacted]"


def fields(rec: UsageRecord, stamp: str) -> dict[str, Any]:
    """The fields of one line, in order; `stamp` is the record's local time, formatted."""
    failed = rec.error_kind is not None
    out: dict[str, Any] = {
        "time": stamp,
        # A client that left is no failure of ours nor of the upstream.
        "level": "WARNING" if failed and rec.error_kind != "cancelled" else "INFO",
        "event": "REQUEST",
        "model": rec.model,
        "target": f"{rec.provider}/{rec.target_model}" if rec.provider else "-",
        "input_tokens": rec.input_tokens,
        "output_tokens": rec.output_tokens,
        "total_tokens": rec.total_tokens,
    }
    for name in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        value = getattr(rec, name)
        if value:
            out[name] = value
    out["cost"] = rec.cost
    out["ms"] = round(rec.latency_ms)
    if rec.ttft_ms is not None:
        out["ttft_ms"] = round(rec.ttft_ms)
    out["status"] = "error" if failed else "success"
    if failed:
        out["error"] = rec.error_kind
    out["http_status"] = rec.status
    out["request_id"] = rec.request_id
    if rec.key is not None:
        out["key"] = rec.key
    out["client"] = rec.client
    out["protocol"] = rec.protocol
    out["endpoint"] = rec.endpoint
    out["stream"] = rec.stream
    if rec.route is not None:
        out["route"] = rec.route
    if rec.rule is not None:
        out["rule"] = rec.rule
    if not rec.final:
        out["fallback"] = True  # another target was tried after this attempt
    if rec.estimated:
        out["estimated"] = True  # some token count is babelgate's estimate
    return out


KNOWN_PARTS = 4096  # repeating parts of text lines a writer keeps formatted (then starts over)


def record_text(rec: UsageRecord, stamp: str,
                known: dict[Any, Any] | None = None) -> str:
    """`without_keys(text_line(fields(rec, stamp)))`, written out: the line every request
    writes (tests/server/test_daily_log.py holds the two equal). The parts that repeat from
    request to request (what was asked and served, who asked and how, the cost) are
    formatted, escaped and masked once and kept in `known` (the writer's own dict), found
    again with one lookup; the rest is one f-string. A key-shaped value cannot span two
    parts (a match stops at the spaces of " | "), so masking part by part masks what the
    whole line would."""
    if known is None:
        known = {}
    parts = (rec.model, rec.provider, rec.target_model, rec.key, rec.client, rec.protocol,
             rec.endpoint, rec.stream, rec.route, rec.rule, rec.final, rec.estimated)
    kept = known.get(parts)
    if kept is None:
        kept = _keep(known, parts, (_served_text(rec), _who_text(rec)))
    head, tail = kept
    kind = rec.error_kind
    if kind is None:
        level, status = "INFO", " | status=success"
    else:
        level = "INFO" if kind == "cancelled" else "WARNING"
        status = f" | status=error | error={without_keys(_esc(kind))}"
    cost = rec.cost
    cost_text: str | None = " | cost=unknown"
    if cost is not None:  # ("cost", value): no other key of `known` is a pair
        cost_text = known.get(("cost", cost))
        if cost_text is None:
            cost_text = _keep(known, ("cost", cost), f" | cost={_money(cost)}")
    tokens_in, tokens_out = rec.input_tokens, rec.output_tokens
    cache_read, cache_write, reasoning = (rec.cache_read_tokens, rec.cache_write_tokens,
                                          rec.reasoning_tokens)
    extra = _extra_tokens(cache_read, cache_write, reasoning) if (
        cache_read or cache_write or reasoning) else ""
    ttft = "" if rec.ttft_ms is None else f" | ttft_ms={round(rec.ttft_ms)}"
    request_id = rec.request_id
    # Ours (a hex prefix and counter): nothing to escape or mask, which the check says
    # without a call. Anything else goes the long way.
    if not request_id.isalnum() or "AIza" in request_id:
        request_id = without_keys(_esc(request_id))
    return (f"{stamp} | {level} | REQUEST{head} | input_tokens={tokens_in}"
            f" | output_tokens={tokens_out}"
            f" | total_tokens={tokens_in + cache_read + cache_write + tokens_out}{extra}"
            f"{cost_text} | ms={round(rec.latency_ms)}{ttft}{status}"
            f" | http_status={rec.status} | request_id={request_id}{tail}")


def _extra_tokens(cache_read: int, cache_write: int, reasoning: int) -> str:
    out = []
    if cache_read:
        out.append(f" | cache_read_tokens={cache_read}")
    if cache_write:
        out.append(f" | cache_write_tokens={cache_write}")
    if reasoning:
        out.append(f" | reasoning_tokens={reasoning}")
    return "".join(out)


def _keep(known: dict[Any, Any], key: Any, text: Any) -> Any:
    if len(known) >= KNOWN_PARTS:
        known.clear()
    known[key] = text
    return text


def _served_text(rec: UsageRecord) -> str:
    target = _esc(f"{rec.provider}/{rec.target_model}") if rec.provider else "-"
    return without_keys(f" | model={_esc(rec.model)} | target={target}")


def _who_text(rec: UsageRecord) -> str:
    out = []
    if rec.key is not None:
        out.append(f" | key={_esc(rec.key)}")
    out.append(f" | client={_esc(rec.client)} | protocol={_esc(rec.protocol)}"
               f" | endpoint={_esc(rec.endpoint)} | stream={'true' if rec.stream else 'false'}")
    if rec.route is not None:
        out.append(f" | route={_esc(rec.route)}")
    if rec.rule is not None:
        out.append(f" | rule={_esc(rec.rule)}")
    if not rec.final:
        out.append(" | fallback=true")
    if rec.estimated:
        out.append(" | estimated=true")
    out.append("\n")
    return without_keys("".join(out))


def _esc(value: str) -> str:
    # Nearly every value is plain: translating costs several times the check.
    if value.isprintable() and "|" not in value:
        return value
    return value.translate(_ESCAPES)


def text_line(values: Mapping[str, Any]) -> str:
    parts = [values["time"], values["level"], values["event"]]
    for name, value in values.items():
        if name in ("time", "level", "event"):
            continue
        parts.append(f"{name}={_text_value(name, value)}")
    return " | ".join(parts) + "\n"


def _text_value(name: str, value: Any) -> str:
    if value is None:
        return "unknown"
    if value is True or value is False:
        return "true" if value else "false"
    if name == "cost":
        return _money(value)
    if isinstance(value, str):
        return _esc(value)
    return str(value)


def _money(value: float) -> str:
    """0.00012, not 1.2e-04: ten decimals, trailing zeros dropped."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def json_line(values: Mapping[str, Any]) -> str:
    return orjson.dumps(values).decode() + "\n"


class DailyLog:
    """The file sink (RecordSink): see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_days: int = 30,
        format: Literal["text", "json"] = "text",
        max_bytes: int = 10 * 2**20,
        backups: int = 5,
        bodies: bool = False,
        redactor: Redactor | None = None,
        clock: Clock = time.time,
        interval: float = 0.5,
    ) -> None:
        self.dir = Path(directory)
        self.keep_days = keep_days
        self.line = json_line if format == "json" else text_line
        self.json = format == "json"
        self.max_bytes = max_bytes
        self.backups = backups
        self.bodies = bodies
        self.redactor = redactor or Redactor()
        self.clock = clock
        self.interval = interval
        self._pending: list[UsageRecord | _Body] = []
        self._scheduled = False
        self._writer: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None
        # The writer thread's own state.
        self._file: TextIO | None = None
        self._day = ""
        self._size = 0
        self._second = -1
        self._stamp = ""
        self._known: dict[Any, Any] = {}  # record_text's formatted parts

    # ------------------------------------------------------------------ the request path
    def record(self, rec: UsageRecord) -> None:
        self._pending.append(rec)
        if not self._scheduled:
            self._schedule()

    def body(self, request_id: str, what: str, raw: bytes, secrets: tuple[str, ...] = ()) -> None:
        """A request or response body for the file (`logs.bodies`), redacted when written;
        `secrets` are this request's own credentials (its key), redacted too."""
        if self.bodies:
            self._pending.append(_Body(self.clock(), request_id, what, raw, secrets))
            if not self._scheduled:
                self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        try:
            asyncio.get_running_loop().call_later(self.interval, self.hand_off)
        except RuntimeError:  # no loop (a synchronous caller): write now, here
            self._scheduled = False
            self.write(self._take())

    def _take(self) -> list[UsageRecord | _Body]:
        batch, self._pending = self._pending, []
        return batch

    def hand_off(self) -> None:
        """Give what gathered to the writer thread (on the event loop's timer)."""
        self._scheduled = False
        if not self._pending:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="babelgate-daily-log")
        self._last = self._writer.submit(self.write, self._take())

    async def close(self) -> None:
        """Write everything queued, then close the file."""
        self.hand_off()
        if self._writer is not None:
            last = self._last
            if last is not None:
                await asyncio.wrap_future(last)
            self._writer.shutdown(wait=False)
            self._writer = None
        self._close_file()

    # ------------------------------------------------------------------ the writer thread
    def write(self, batch: list[UsageRecord | _Body]) -> None:
        """Format and write `batch` (in the writer thread, or the caller's when no loop)."""
        try:
            self._open_for(self.clock())
            if self.json or self.bodies:
                self._write_lines(batch)
                return
            # Without `bodies` the batch holds records only.
            text = "".join(self._text_lines(cast("list[UsageRecord]", batch)))
            size = len(text) if text.isascii() else len(text.encode())
            if self._size + size > self.max_bytes and self._size + size > 0:
                self._write_lines(batch)  # the day's file fills up: line by line
                return
            self._emit([text], size)
        except OSError as exc:  # a full disk must not stop serving: say so on stderr
            log.warning("daily log: cannot write: %s", exc)
            self._close_file()

    def _text_lines(self, batch: list[UsageRecord]) -> list[str]:
        """The text lines of a batch of records (no bodies), the usual case: written out
        from `_format` and `_stamp_of`, which cost a call each a line."""
        known, second, stamp = self._known, self._second, self._stamp
        lines = []
        for rec in batch:
            now = int(rec.time)
            if now != second:
                stamp = self._stamp_of(now)
                second = now
            lines.append(record_text(rec, stamp, known))
        return lines

    def _write_lines(self, batch: list[UsageRecord | _Body]) -> None:
        """Each line sized on its own: the day's file moves to .1 before the line that would
        take it past `max_bytes`."""
        chunk: list[str] = []
        size = 0
        for item in batch:
            line = self._format(item)
            length = len(line.encode()) if not line.isascii() else len(line)
            if self._size + size + length > self.max_bytes and self._size + size > 0:
                self._emit(chunk, size)
                chunk, size = [], 0
                self._rotate()
            chunk.append(line)
            size += length
        self._emit(chunk, size)

    def _format(self, item: UsageRecord | _Body) -> str:
        if isinstance(item, _Body):
            text = self.redactor(item.raw.decode("utf-8", "replace"), item.secrets)
            values: dict[str, Any] = {
                "time": self._stamp_of(item.time), "level": "INFO", "event": "BODY",
                "request_id": item.request_id, "what": item.what, "body": text,
            }
            return self.line(values)
        stamp = self._stamp_of(item.time)
        if not self.json:  # masked for keys part by part (record_text)
            return record_text(item, stamp, self._known)
        # The model and endpoint are client text, where a careless client can put its key.
        return without_keys(json_line(fields(item, stamp)))

    def _stamp_of(self, when: float) -> str:
        second = int(when)
        if second != self._second:  # formatting a time costs more than the rest of a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._stamp

    def _emit(self, chunk: list[str], size: int) -> None:
        if chunk and self._file is not None:
            self._file.write("".join(chunk))
            self._file.flush()
            self._size += size

    def path_for(self, day: str) -> Path:
        return self.dir / f"babelgate-{day}.log"

    def _open_for(self, now: float) -> None:
        day = time.strftime("%Y-%m-%d", time.localtime(now))
        if day == self._day and self._file is not None:
            return
        self._close_file()
        self.dir.mkdir(parents=True, exist_ok=True)
        if day != self._day:
            self._day = day
            self.prune(dt.date.fromisoformat(day))
        self._file = self.path_for(day).open("a", encoding="utf-8")
        self._size = self._file.tell()

    def _rotate(self) -> None:
        """The day's file becomes .1 (.1 becomes .2, ...); a fresh one takes its name."""
        self._close_file()
        current = self.path_for(self._day)
        if self.backups == 0:
            current.unlink(missing_ok=True)
        else:
            for index in range(self.backups - 1, 0, -1):
                older = Path(f"{current}.{index}")
                if older.exists():
                    older.replace(f"{current}.{index + 1}")
            current.replace(f"{current}.1")
        self._file = current.open("a", encoding="utf-8")
        self._size = 0

    def prune(self, today: dt.date) -> None:
        """Delete the files of days `keep_days` or more before `today`."""
        oldest = today - dt.timedelta(days=self.keep_days - 1)
        for entry in self.dir.iterdir():
            match = FILE_PATTERN.fullmatch(entry.name)
            if match is None:
                continue
            try:
                day = dt.date.fromisoformat(match.group(1))
            except ValueError:
                continue
            if day < oldest:
                entry.unlink(missing_ok=True)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class _Body:
    """A body waiting to be redacted and written."""

    time: float
    request_id: str
    what: str  # "request" or "response"
    raw: bytes
    secrets: tuple[str, ...]
