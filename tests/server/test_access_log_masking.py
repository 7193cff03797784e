"""The access log masks keys as it queues a line, and an attempt's repeating part (endpoint,
model, target, route) once per distinct value (server/access_log.py). What must hold, over
random client text with key shapes and control characters in every place: the lines written
are those of the plain way, each line built whole and masked whole when written."""

from __future__ import annotations

import io
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from babelgate.books.record import UsageRecord
from babelgate.server.access_log import AccessLog, _safe, without_keys

KEYISH = st.sampled_from(["sk-", "bg-", "rk-", "pk-", "AIza", "sk-abcdefgh12", "x", "-", "/",
                          " ", "\r\n", "=", "AIzaSyA0123456789abcdefghij", "é", "\x00"])
texts = st.lists(KEYISH | st.text(max_size=6), max_size=6).map("".join)
# The provider's name and the route come from the configuration: one line each.
names = texts.map(lambda text: text.replace("\n", "").replace("\r", ""))


def plain_line(rec: UsageRecord, route: str, message: str | None) -> str:
    """An attempt's line as it was built before the heads were kept: whole, then masked."""
    head = (f"{_safe(rec.endpoint)} model={_safe(rec.model)} target={rec.provider}/"
            f"{_safe(rec.target_model)} {route}")
    tail = f"ms={rec.latency_ms:.0f} request_id={rec.request_id}"
    if rec.error_kind is None:
        line = (f"{head} in={rec.input_tokens} cache_read={rec.cache_read_tokens} "
                f"out={rec.output_tokens} status={rec.status} {tail}")
        level = "INFO"
    else:
        msg = _safe((message or "")[:200])
        level = "INFO" if rec.error_kind == "cancelled" else "WARNING"
        line = f"{head} error={rec.error_kind} status={rec.status} {tail} msg={msg}"
    return without_keys(f"{level} babelgate {line}")


def record(endpoint: str, model: str, provider: str, target: str, error: str | None
           ) -> UsageRecord:
    return UsageRecord(time.time(), "abc123000001", None, "other", "anthropic", endpoint,
                       model, provider, target, False, 200 if error is None else 502, error,
                       None, None, 12, 3, 0, 0, 0, None, 12.5, None, True, False)


@settings(max_examples=200, deadline=None)
@given(attempts=st.lists(st.tuples(texts, texts, names, texts, names,
                                   st.none() | st.sampled_from(["api_error", "cancelled"]),
                                   st.none() | texts), min_size=1, max_size=8))
def test_lines_are_the_plain_ones(
    attempts: list[tuple[str, str, str, str, str, str | None, str | None]],
) -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    wanted = []
    for endpoint, model, provider, target, route, error, message in attempts * 2:  # kept
        rec = record(endpoint, model, provider, target, error)
        log.attempt(rec, route, message)
        wanted.append(plain_line(rec, route, message))
    log.flush()
    # Each line after its timestamp ("YYYY-MM-DD HH:MM:SS ").
    written = [line[20:] for line in stream.getvalue().split("\n")[:-1]]
    assert written == wanted
