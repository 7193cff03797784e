"""finish_reason <-> canonical StopReason.

Many compatible upstreams say `stop` while returning tool calls; a response that carries tool
calls is a tool-use stop whatever the label, unless it was cut off by the token limit, and a
`tool_calls` label without any call is an ordinary end of turn.
"""

from __future__ import annotations

from babelgate.canonical import StopReason

_FROM_FINISH: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "error": "stop",
    "max_tokens": "length",
    "context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def stop_reason(finish_reason: str | None, has_tool_calls: bool) -> StopReason:
    reason = _FROM_FINISH.get(finish_reason or "", "end_turn")
    if has_tool_calls and reason != "max_tokens":
        return "tool_use"
    if reason == "tool_use":  # no call arrived: a client would wait for one forever
        return "end_turn"
    return reason


def finish_reason(reason: StopReason | None, has_tool_calls: bool) -> str:
    finish = _TO_FINISH.get(reason or "end_turn", "stop")
    if has_tool_calls and finish == "stop":
        return "tool_calls"
    return finish
