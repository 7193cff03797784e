"""Same protocol in and out: forward the client's body, rewrite only what must change.

Rewritten: the model name (to the target's), and max_tokens when the provider clamps it.
Everything else goes through as the client sent it, so fields the gateway does not know yet
(new betas, new block types) still work. The upstream's answer streams back byte for byte;
`UsageTap` reads usage off it without re-encoding anything.
"""

from __future__ import annotations

from typing import Any

import orjson

from babelgate.canonical import Usage
from babelgate.canonical.carry import ENVELOPE_PREFIX
from babelgate.protocols import Quirks
from babelgate.protocols.sse import SSEDecoder

# Protocols whose bodies we know how to pass through, with the field that limits output.
MAX_TOKENS_FIELD = {"anthropic": "max_tokens"}

_ENVELOPE_MARK = b'"' + ENVELOPE_PREFIX.encode()


def can_pass_through(client_protocol: str, provider_type: str, raw_body: bytes) -> bool:
    """Pass through when both sides speak the same protocol, unless the history carries
    reasoning from another provider (our envelopes): that needs the codec to drop it, since
    an upstream rejects signatures it did not issue."""
    return (
        client_protocol == provider_type
        and client_protocol in MAX_TOKENS_FIELD
        and _ENVELOPE_MARK not in raw_body
    )


def rewrite_body(protocol: str, data: dict[str, Any], model: str, quirks: Quirks) -> bytes:
    """The client's body for one target: its model name, and max tokens clamped."""
    out = dict(data)  # shallow: the caller's dict serves the next fallback target unchanged
    out["model"] = model
    field = MAX_TOKENS_FIELD[protocol]
    limit = quirks.max_tokens
    requested = out.get(field)
    if limit is not None and isinstance(requested, int) and requested > limit:
        out[field] = limit
        thinking = out.get("thinking")
        if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
            # Anthropic requires budget_tokens < max_tokens.
            budget = min(thinking["budget_tokens"], limit - 1)
            out["thinking"] = {**thinking, "budget_tokens": max(budget, 1024)}
    return orjson.dumps(out)


def anthropic_usage(data: Any) -> Usage:
    """Usage from an Anthropic `usage` object (message body, message_start or message_delta)."""
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=data.get("input_tokens") or 0,
        output_tokens=data.get("output_tokens") or 0,
        cache_read_tokens=data.get("cache_read_input_tokens") or 0,
        cache_write_tokens=data.get("cache_creation_input_tokens") or 0,
    )


class UsageTap:
    """Watches an Anthropic event stream go by and keeps the usage and any error it reports.
    Only `message_start`, `message_delta` and `error` events are parsed. `events` counts the
    events seen and `error_data` keeps an error event's raw data, so the caller can tell a
    stream that failed before it started (worth a fallback) from one that did start."""

    __slots__ = ("_sse", "error_data", "error_message", "events", "started", "usage")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.usage = Usage()
        self.error_message: str | None = None
        self.error_data: str | None = None
        self.events = 0
        self.started = False

    def feed(self, chunk: bytes) -> None:
        for event in self._sse.feed(chunk):
            self.events += 1
            if event.event == "message_start":
                self.started = True
                message = _loads(event.data).get("message")
                if isinstance(message, dict):
                    self.usage = anthropic_usage(message.get("usage"))
            elif event.event == "message_delta":
                self._merge(anthropic_usage(_loads(event.data).get("usage")))
            elif event.event == "error":
                self.error_data = event.data
                error = _loads(event.data).get("error")
                message = error.get("message") if isinstance(error, dict) else None
                self.error_message = str(message or "error")

    def _merge(self, delta: Usage) -> None:
        # message_delta usage is cumulative; input fields are often absent there (0).
        usage = self.usage
        usage.output_tokens = delta.output_tokens or usage.output_tokens
        usage.input_tokens = delta.input_tokens or usage.input_tokens
        usage.cache_read_tokens = delta.cache_read_tokens or usage.cache_read_tokens
        usage.cache_write_tokens = delta.cache_write_tokens or usage.cache_write_tokens


def _loads(data: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
