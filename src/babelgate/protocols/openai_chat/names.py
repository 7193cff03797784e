"""Names and ids the Chat Completions wire accepts, made so deterministically.

OpenAI-compatible upstreams reject tool names outside `^[a-zA-Z0-9_-]{1,64}$` (MCP tools such
as `mcp__server__very_long_tool_name` overflow it), tool call ids longer than 40 characters
and (possibly) end-user ids longer than 64. Each is rewritten with a hash of the original, so
the same input always gives the same wire value (a call and its result still match) and the
request's own tool list maps a wire name back to the client's name.

Nothing here is kept by the module: what is worth remembering between requests (the map of a
tool list, a long end-user id's hash) is remembered by the caller's reuse table, which the
app owns (protocols/reuse.py), and is immutable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from babelgate.canonical import Request, Tool

from ..reuse import Reuse
from ..wire_names import WireNames

_ACCEPTED = r"[a-zA-Z0-9_-]"
_REJECTED = re.compile(r"[^a-zA-Z0-9_-]")
# The name sent upstream: valid names unchanged, others cleaned, cut and suffixed with a hash
# of the original (so two names that clean to the same text stay distinct).
wire_name = WireNames(re.compile(_ACCEPTED + "{1,64}"), _REJECTED, 64, "sha256")
# A call id OpenAI accepts (at most 40 characters of `[A-Za-z0-9_-]`).
wire_call_id = WireNames(re.compile(_ACCEPTED + "{1,40}"), _REJECTED, 40, "sha256")
# OpenAI caps end-user ids at 64 characters for `safety_identifier`; whether `user` has the
# same cap is unverified, so long ids (Claude Code's metadata.user_id is ~150) are hashed.
_MAX_USER = 64

ToolMap = Mapping[str, Tool]
_Names = tuple[tuple[str, Literal["function", "custom", "hosted"]], ...]


def tools_by_wire_name(request: Request, reuse: Reuse) -> ToolMap:
    """The request's tools keyed by the name the upstream saw, to map its calls back. Only
    `name` and `kind` of each Tool are kept; clients send the same tool list on every turn,
    so the map is found straight from a shared tool list (protocols/reuse.py), else from the
    table's memo of the list's names (a new conversation with the same tools), and holds no
    schema of any request. Read-only: it is shared between requests."""
    return reuse.derive(_tool_map, request.tools, reuse)


def _tool_map(tools: tuple[Tool, ...], reuse: Reuse) -> ToolMap:
    names = tuple((tool.name, tool.kind) for tool in tools if tool.kind != "hosted")
    return reuse.memo(_map_of, names)


def _map_of(names: _Names) -> ToolMap:
    return MappingProxyType({wire_name(name): Tool(name, kind=kind) for name, kind in names})


def wire_user(user: str, reuse: Reuse) -> str:
    """An end-user id short enough for every upstream; still one stable value per user
    (Claude Code sends the same long id on every request: its hash is remembered)."""
    if len(user) <= _MAX_USER:
        return user
    return reuse.memo(_hashed_user, user)


def _hashed_user(user: str) -> str:
    return "u_" + hashlib.sha256(user.encode()).hexdigest()[: _MAX_USER - 2]
