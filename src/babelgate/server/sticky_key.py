"""Which conversation a request belongs to, for routing's stickiness (routing/sticky.py).

In order of preference:
1. the client's session header: Claude Code's `x-claude-code-session-id`, Codex's
   `session-id` / `session_id`;
2. the session in the body: Anthropic `metadata.user_id` (Claude Code puts its session
   there), OpenAI `prompt_cache_key` (Codex: one per conversation), Responses
   `previous_response_id` is not one (it changes every turn);
3. a digest of the first user message, which every turn of a conversation resends.
Only computed when a route spreads requests by weight, or a provider the route names has
several `api_keys` (a conversation stays on its key); the key is a short digest, never the
client's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from babelgate.canonical import Request

_SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")


def conversation_key(
    headers: Mapping[str, str], data: Mapping[str, Any], request: Request
) -> str | None:
    for name in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return _digest("h", value)
    metadata = data.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and "session" in user_id:
        return _digest("u", user_id)
    cache_key = data.get("prompt_cache_key")
    if isinstance(cache_key, str) and cache_key:
        return _digest("p", cache_key)
    for message in request.messages:
        if message.role == "user":
            return _digest("m", msgspec.json.encode(message.parts).decode())
    return None


def _digest(kind: str, text: str) -> str:
    return kind + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
