"""What a client-facing Anthropic codec hides in fields Claude Code echoes back unchanged.

- Reasoning from another upstream family (a Gemini thought signature, DeepSeek reasoning text,
  Responses encrypted reasoning) becomes a `thinking` block whose `signature` is our envelope
  (`canonical.carry.pack`). On the next turn `reasoning_from_block` opens it and restores the
  Reasoning exactly: origin, the upstream's own signature, provider_metadata, redacted data
  and summary.
- Anthropic's own reasoning keeps its real signature (or `redacted_thinking` data) as is.
- Tool call metadata (Gemini's thought signature on a call) rides on the tool_use id via
  `attach_to_id`, and comes back on both the tool_use and the tool_result.

Envelope payload keys (short, because Claude Code sends every one back on every turn):
`sig` upstream signature, `md` provider_metadata, `red` redacted data, `sum` summaries.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import Reasoning, ToolCall
from babelgate.canonical.carry import attach_to_id, pack, unpack
from babelgate.canonical.ids import safe_call_id

JSON = dict[str, Any]
ANTHROPIC = "anthropic"
_UNKNOWN_ORIGIN = "unknown"


def is_native(reasoning: Reasoning) -> bool:
    return reasoning.origin == ANTHROPIC


def client_signature(reasoning: Reasoning) -> str:
    """The `signature` a client gets for this reasoning: Anthropic's own, or an envelope."""
    if is_native(reasoning):
        return reasoning.signature or ""
    payload: JSON = {}
    if reasoning.signature:
        payload["sig"] = reasoning.signature
    if reasoning.provider_metadata:
        payload["md"] = reasoning.provider_metadata
    if reasoning.redacted:
        payload["red"] = reasoning.redacted
    if reasoning.summary is not None:
        payload["sum"] = list(reasoning.summary)
    return pack(reasoning.origin or _UNKNOWN_ORIGIN, payload)


def reasoning_block(reasoning: Reasoning) -> JSON:
    """A finished Reasoning -> the client's thinking (or redacted_thinking) block."""
    if is_native(reasoning) and reasoning.redacted:
        return {"type": "redacted_thinking", "data": reasoning.redacted}
    return {
        "type": "thinking",
        "thinking": reasoning.text,
        "signature": client_signature(reasoning),
    }


def reasoning_from_thinking(text: str, signature: str | None) -> Reasoning:
    """A client's thinking block -> Reasoning, opening our envelope when it is one."""
    opened = unpack(signature)
    if opened is None:
        return Reasoning(text=text, signature=signature or None, origin=ANTHROPIC)
    origin, payload = opened
    summary = payload.get("sum")
    metadata = payload.get("md")
    return Reasoning(
        text=text,
        signature=_str_or_none(payload.get("sig")),
        origin=origin,
        redacted=_str_or_none(payload.get("red")),
        summary=tuple([str(s) for s in summary]) if isinstance(summary, list) else None,
        provider_metadata=metadata if isinstance(metadata, dict) else None,
    )


def client_call_id(call: ToolCall) -> str:
    """The tool_use id a client sees: valid for Anthropic, carrying the call's metadata."""
    return attach_to_id(safe_call_id(call.id), call.provider_metadata)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
