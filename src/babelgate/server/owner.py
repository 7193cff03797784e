"""Whose stored state a request may see: the owner that scopes it.

What this module promises: `owner_of(request)` is the one place that says which owner a
request acts for. Everything scoped by owner (stored Responses conversations: creating,
continuing, reading and deleting them) asks here and nowhere else.

Today babelgate has no gateway keys, so every caller is the open single-user gateway and the
owner is None (rows stored with a NULL owner). When gateway keys arrive (issue 10), this
function returns the calling key's stable id (never the key itself), and each key then sees
only the responses it stored.
"""

from __future__ import annotations

from .http import Request


def owner_of(request: Request) -> str | None:
    """The owner `request` acts for; None: the open gateway, which has no keys."""
    return None
