"""One finished upstream attempt, as the books, the logs and the metrics see it.

What this module promises:
- `UsageRecord` is frozen and holds plain values only (no request body, no key): it may be
  queued, written from another thread and kept in a batch without copying.
- A request that fell back has one record per failed attempt (`final=False`) and one for the
  attempt that answered or failed last (`final=True`); counting requests counts final ones.
- `cost` is None when the model has no known price: unknown, never silently zero.
- Tokens an upstream did not report are estimated, never booked as zero, and the record
  says so (`estimated`).
- `RecordSink` is what consumes records: `record(rec)` is called on the event loop, on the
  request path, so a sink only queues (a list append); its I/O happens later, elsewhere.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from .trace_context import TraceContext


class UsageRecord(msgspec.Struct, frozen=True, gc=False):
    time: float  # unix seconds when the attempt started
    request_id: str  # the same for every attempt of one request
    key: str | None  # the gateway key's name; None: the open gateway without keys
    client: str  # claude-code | codex | gemini-cli | openai-sdk | anthropic-sdk | other
    protocol: str  # the inbound protocol: anthropic | openai | openai-responses | gemini
    endpoint: str  # the request path
    model: str  # the model the client asked for
    provider: str  # the target's provider
    target_model: str  # the model the upstream was asked for
    stream: bool
    status: int  # the HTTP status of the attempt (200, or the error's)
    error_kind: str | None = None  # canonical ErrorKind of a failure; None: success
    rule: str | None = None  # the rule that decided, if any
    route: str | None = None  # the route that matched (pattern, "default", "direct")
    input_tokens: int = 0  # excluding cache reads and writes (Anthropic's convention)
    output_tokens: int = 0  # including reasoning tokens
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # USD; None: no price known for the target model
    latency_ms: float = 0.0  # from the attempt's start to its end (last byte sent)
    ttft_ms: float | None = None  # to the first content sent (streams); None: not a stream
    final: bool = True  # False: a failed attempt after which another target was tried
    # True: the upstream did not report some token count (llama.cpp's server, an OpenAI-
    # compatible stream without usage, a stream the client left) and babelgate's local
    # estimate (tokens.py) stands in for it: booked, priced, and said to be an estimate.
    estimated: bool = False
    # Not stored (the usage table's columns are the fields above): with OpenTelemetry
    # traces on, the request's trace, and the span of this attempt, which its upstream
    # request named as its parent in a `traceparent` header (books/trace_context.py).
    trace: TraceContext | None = None
    span_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
                + self.output_tokens)


class RecordSink(Protocol):
    def record(self, rec: UsageRecord) -> None:
        """Take `rec`; called on the request path, so queue it and return."""
