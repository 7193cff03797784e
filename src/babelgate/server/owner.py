"""Who a request acts for: the one function that names the caller.

What this module promises: `owner_of(request)` is the one place that says which owner a
request acts for. Everything scoped by owner (stored Responses conversations: creating,
continuing, reading and deleting them; the reuse table's partitions; usage records) asks
here and nowhere else.

The owner is the calling gateway key's stable id (`key_...`, never the key itself), set on
the request by the app once server/auth.py accepted the key. While the gateway has no keys
every caller is the open single-user gateway and the owner is None (rows stored with a NULL
owner); each key sees only what it stored itself.
"""

from __future__ import annotations

from .http import Request


def owner_of(request: Request) -> str | None:
    """The owner `request` acts for; None: the open gateway, which has no keys."""
    caller = request.caller
    return None if caller is None else caller.id
