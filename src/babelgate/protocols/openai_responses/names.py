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

from ..wire_names import WireNames, renamed

MAX_NAME = 64
# `name` made valid for OpenAI; valid names pass unchanged. Replacing characters can make two
# names collide, so any rewritten name carries a short hash of the original.
upstream_name = WireNames(re.compile(r"[a-zA-Z0-9_-]{1,64}"), re.compile(r"[^a-zA-Z0-9_-]"),
                          MAX_NAME, "sha256", empty="tool")


def name_map(request: Request) -> dict[str, str]:
    """Upstream name -> the client's name, for every tool whose name had to change."""
    return renamed((tool.name for tool in request.tools), upstream_name)
