"""Carrying provider data through a client that only knows its own protocol.

Some upstream data must come back on the next turn (a Gemini thought signature, DeepSeek's
reasoning text, an Anthropic signature when the client speaks Responses). The client-facing
codec packs it into a field the client echoes unchanged: a thinking block's `signature`, a
Responses item's `encrypted_content`, or a tool call id. The packed form starts with a marker,
so a codec can tell our envelopes from a real provider's opaque strings.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

ENVELOPE_PREFIX = "bg1."
ID_MARK = "__bg1_"


def pack(origin: str, payload: dict[str, Any]) -> str:
    """`payload` from the upstream family `origin` -> an opaque ASCII string."""
    raw = orjson.dumps({"o": origin, "p": payload})
    return ENVELOPE_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unpack(value: str | None) -> tuple[str, dict[str, Any]] | None:
    """The (origin, payload) inside an envelope, or None for anything else (including a real
    provider's signature)."""
    if not value or not value.startswith(ENVELOPE_PREFIX):
        return None
    body = value[len(ENVELOPE_PREFIX) :]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p"), dict):
        return None
    return str(data.get("o")), data["p"]


def attach_to_id(call_id: str, metadata: dict[str, Any] | None) -> str:
    """A tool call id that also carries `metadata`; stays within `[A-Za-z0-9_-]`."""
    if not metadata:
        return call_id
    raw = base64.urlsafe_b64encode(orjson.dumps(metadata)).rstrip(b"=").decode()
    return call_id + ID_MARK + raw


def split_id(call_id: str) -> tuple[str, dict[str, Any] | None]:
    """Undo attach_to_id: (the original id, its metadata or None)."""
    head, mark, raw = call_id.partition(ID_MARK)
    if not mark:
        return call_id, None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return call_id, None
    return head, data if isinstance(data, dict) else None
