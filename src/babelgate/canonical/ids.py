"""Identifiers the gateway makes up (message, call and response ids)."""

from __future__ import annotations

import os
import re

_ANTHROPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def new_id(prefix: str, length: int = 24) -> str:
    """A random id such as `msg_01c0ffee...`; `length` hex characters after the prefix."""
    return prefix + os.urandom(length // 2 + 1).hex()[:length]


def safe_call_id(call_id: str) -> str:
    """A tool call id valid everywhere (`^[A-Za-z0-9_-]+$`); valid ids pass unchanged, so the
    same input always gives the same output and calls still match their results."""
    if _ANTHROPIC_ID.match(call_id):
        return call_id
    return _INVALID_ID_CHARS.sub("_", call_id) or "call_"
