"""Tool names as an OpenAI Responses upstream accepts them, and the way back.

OpenAI accepts function names matching `^[a-zA-Z0-9_-]{1,64}$`. Other clients send names
outside that (MCP tools such as `mcp__server__a.very.long.name`), so outbound names are made
valid deterministically: the same name always gives the same upstream name, and a hash
suffix keeps two long names that share a prefix apart. The upstream answers with the
sanitized name; `name_map` turns it back into the client's own.
"""

from __future__ import annotations

import re

from babelgate.canonical import Request

from ..wire_names import hashed_name, renamed

MAX_NAME = 64
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def upstream_name(name: str) -> str:
    """`name` made valid for OpenAI; valid names pass unchanged."""
    if _VALID.match(name):
        return name
    cleaned = _INVALID_CHARS.sub("_", name) or "tool"
    # Replacing characters can make two names collide, so any rewritten name carries a
    # short hash of the original.
    return hashed_name(name, cleaned, MAX_NAME, "sha256")


def name_map(request: Request) -> dict[str, str]:
    """Upstream name -> the client's name, for every tool whose name had to change."""
    return renamed((tool.name for tool in request.tools), upstream_name)
