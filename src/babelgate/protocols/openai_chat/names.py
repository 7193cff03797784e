"""Names and ids the Chat Completions wire accepts, made so deterministically.

OpenAI-compatible upstreams reject tool names outside `^[a-zA-Z0-9_-]{1,64}$` (MCP tools such
as `mcp__server__very_long_tool_name` overflow it), tool call ids longer than 40 characters
and (possibly) end-user ids longer than 64. Each is rewritten with a hash of the original, so
the same input always gives the same wire value (a call and its result still match) and the
request's own tool list maps a wire name back to the client's name.
"""

from __future__ import annotations

import functools
import hashlib
import re

from babelgate.canonical import Request, Tool

from ..reuse import Reuse
from ..wire_names import hashed_name

_VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 64
_MAX_CALL_ID = 40
# OpenAI caps end-user ids at 64 characters for `safety_identifier`; whether `user` has the
# same cap is unverified, so long ids (Claude Code's metadata.user_id is ~150) are hashed.
_MAX_USER = 64


@functools.lru_cache(maxsize=4096)
def wire_name(name: str) -> str:
    """The name sent upstream: valid names unchanged, others cleaned, cut and suffixed with a
    hash of the original (so two names that clean to the same text stay distinct). Cached:
    clients send the same few dozen tool names on every turn."""
    if _VALID_NAME.match(name):
        return name
    return hashed_name(name, _INVALID_CHARS.sub("_", name), _MAX_NAME, "sha256")


def wire_call_id(call_id: str) -> str:
    """A call id OpenAI accepts (at most 40 characters of `[A-Za-z0-9_-]`)."""
    if len(call_id) <= _MAX_CALL_ID and _VALID_NAME.match(call_id):
        return call_id
    return hashed_name(call_id, _INVALID_CHARS.sub("_", call_id), _MAX_CALL_ID, "sha256")


_MAPS: dict[tuple[tuple[str, str], ...], dict[str, Tool]] = {}
_MAX_MAPS = 256


def tools_by_wire_name(request: Request, reuse: Reuse) -> dict[str, Tool]:
    """The request's tools keyed by the name the upstream saw, to map its calls back. Only
    `name` and `kind` of each Tool are kept; clients send the same tool list on every turn,
    so the map is built once per distinct list (and holds no schema of any request), and
    found straight from a shared tool list (protocols/reuse.py)."""
    return reuse.derive(_tool_map, request.tools)


def _tool_map(tools: tuple[Tool, ...]) -> dict[str, Tool]:
    key = tuple((tool.name, tool.kind) for tool in tools if tool.kind != "hosted")
    found = _MAPS.get(key)
    if found is None:
        if len(_MAPS) >= _MAX_MAPS:
            _MAPS.clear()
        found = _MAPS[key] = {wire_name(name): Tool(name, kind=kind) for name, kind in key}
    return found


@functools.lru_cache(maxsize=1024)
def wire_user(user: str) -> str:
    """An end-user id short enough for every upstream; still one stable value per user."""
    if len(user) <= _MAX_USER:
        return user
    return "u_" + hashlib.sha256(user.encode()).hexdigest()[: _MAX_USER - 2]
