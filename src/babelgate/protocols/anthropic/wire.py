"""Small translations both directions share: stop reasons and usage."""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from babelgate.canonical import StopReason, Usage

JSON = dict[str, Any]

_TO_CLIENT: dict[str, str] = {
    "context_window_exceeded": "model_context_window_exceeded",
    # No Anthropic equivalent: the turn ended, and the error (if any) travels separately.
    "error": "end_turn",
}
_FROM_UPSTREAM: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "pause_turn": "pause_turn",
    "refusal": "refusal",
    "model_context_window_exceeded": "context_window_exceeded",
}


def client_stop_reason(reason: StopReason | None) -> str:
    if reason is None:
        return "end_turn"
    return _TO_CLIENT.get(reason, reason)


def canonical_stop_reason(reason: object) -> StopReason | None:
    if reason is None:
        return None
    return _FROM_UPSTREAM.get(str(reason), "end_turn")


def usage_body(usage: Usage) -> JSON:
    """Anthropic usage with every field present (Claude Code reads all four)."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def update_usage(usage: Usage, body: object) -> Usage:
    """`usage` with an upstream usage object folded in; absent or null fields keep their
    value (message_delta repeats only some of them). Written out field by field: a stream
    folds two of these (message_start, message_delta), and a loop over the fields cost
    twice as much (22 k instructions a stream against 12 k). `type(...) is int` takes what
    JSON decodes to an int, and not a bool."""
    if not isinstance(body, dict):
        return usage
    get = body.get
    read = get("input_tokens")
    written = get("output_tokens")
    cache_write = get("cache_creation_input_tokens")
    cache_read = get("cache_read_input_tokens")
    return replace(
        usage,
        input_tokens=read if type(read) is int else usage.input_tokens,
        output_tokens=written if type(written) is int else usage.output_tokens,
        cache_write_tokens=cache_write if type(cache_write) is int else usage.cache_write_tokens,
        cache_read_tokens=cache_read if type(cache_read) is int else usage.cache_read_tokens,
    )
