"""Tool names an Anthropic upstream accepts, and the way back to the client's own names.

Anthropic requires `^[a-zA-Z0-9_-]{1,128}$`. Other clients send names Anthropic rejects (dots,
colons, MCP-style long names), so `upstream_name` rewrites an invalid name deterministically
(the same name always gives the same result, so history and tool list agree) and
`name_map` lets a decoder turn the upstream's names back into the client's.
"""

from __future__ import annotations

import re

from babelgate.canonical import Tool

from ..wire_names import WireNames, renamed

MAX_NAME = 128
# `name` if Anthropic accepts it, else a cleaned name with a short hash of the original (the
# hash keeps two names that clean to the same text apart).
upstream_name = WireNames(re.compile(r"[a-zA-Z0-9_-]{1,128}"), re.compile(r"[^a-zA-Z0-9_-]"),
                          MAX_NAME, "sha1")


def name_map(tools: tuple[Tool, ...]) -> dict[str, str]:
    """Upstream name -> the request's own name, for the names that had to change."""
    return renamed((tool.name for tool in tools), upstream_name)


def custom_tool_names(tools: tuple[Tool, ...]) -> frozenset[str]:
    """Upstream names of the request's free-form (`custom`) tools, whose calls come back as
    `{"input": "..."}` and must be marked `kind="custom"` again."""
    return frozenset(upstream_name(t.name) for t in tools if t.kind == "custom")
