"""Tools, tool_choice and `text.format`, in both directions.

Responses tools are flat: `{type:"function", name, description, parameters, strict}`,
`{type:"custom", name, description, format}` (free-form input, e.g. Codex's apply_patch with
a Lark grammar), and built-in tools named by their `type` alone (`web_search`,
`tool_search`, `file_search`, `mcp`, ...). Built-ins become hosted Tools whose `config` is
the rest of the object, so they pass unchanged to a Responses upstream and are dropped by
codecs that have no equivalent.

Codex groups some tools in a `namespace` (`{type:"namespace", name, tools:[...]}`, e.g. its
`collaboration` sub-agent tools); the model's calls then carry `namespace` next to `name`.
Other upstreams have no namespaces, so each member becomes a flat tool named
`<namespace>__<name>`, with `config={"namespace": ...}` recording the split so calls can be
given back to the client in its own terms.

Codex's `{type:"tool_search", execution:"client", description, parameters}` is a tool the
CLIENT runs: the model emits a `tool_search_call` (arguments an object), Codex answers with a
`tool_search_output` whose `tools` (MCP tools, sub-agent namespaces) become callable. Other
upstreams have no such tool, so it becomes a plain function `tool_search` with Codex's own
description and schema, and `config={"client_tool_search": <the object minus type>}` marks
it: a call of it goes back to the client as a `tool_search_call` item, and a Responses
upstream gets the original object back. `tools_from_search` turns a `tool_search_output`'s
tools into Tools the upstream can call (see request_in.py).
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec.structs import replace

from babelgate.canonical import JSON, GatewayError, Tool, ToolChoice, invalid, schema_copy

from ..fields import boolean, mapping, required_string, string, typed_object
from .names import upstream_name

# Built-in tool types an OpenAI Responses upstream understands. A hosted tool from another
# protocol (say Anthropic's `web_search_20250305`) is not one of them and is dropped.
BUILTIN_TYPES = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "local_shell",
        "shell",
        "apply_patch",
        "mcp",
        "tool_search",
        "namespace",
        "computer",
        "computer_use_preview",
    }
)
NAMESPACE_SEPARATOR = "__"
CLIENT_SEARCH = "client_tool_search"  # Tool.config key marking Codex's client-run search
SEARCH_TOOL = "tool_search"  # the function name that search is offered under
_EMPTY_PARAMETERS: JSON = {"type": "object", "properties": {}}
# Used only when Codex's tool_search object lacks them; its own take precedence.
_SEARCH_DESCRIPTION = "Search the tools not loaded yet by keyword; the tools found become callable."
_SEARCH_PARAMETERS: JSON = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
}
_CHOICE_MODES: dict[str, Literal["auto", "none", "required"]] = {
    "auto": "auto",
    "none": "none",
    "required": "required",
}


# ---------------------------------------------------------------- client -> canonical


def parse_tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("tools must be an array", "tools")
    tools: list[Tool] = []
    for i, tool in enumerate(raw):
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            tools.extend(_namespace_members(tool, f"tools[{i}]"))
        else:
            tools.append(_parse_tool(tool, f"tools[{i}]"))
    return tuple(tools)


def _namespace_members(tool: JSON, where: str) -> list[Tool]:
    namespace = required_string(tool, "name", where)
    members = tool.get("tools")
    if not isinstance(members, list):
        raise invalid(f"{where}.tools must be an array", f"{where}.tools")
    flat: list[Tool] = []
    for j, member in enumerate(members):
        parsed = _parse_tool(member, f"{where}.tools[{j}]")
        if parsed.kind == "hosted":
            continue  # namespaces hold function and custom tools only
        name = namespaced(namespace, parsed.name)
        flat.append(replace(parsed, name=name, config={"namespace": namespace}))
    return flat


def tools_from_search(raw: Any, where: str) -> tuple[Tool, ...]:
    """A `tool_search_output`'s `tools` (functions and namespaces of functions, each member
    `defer_loading: true`) as Tools; anything unreadable is skipped, as it came from the
    client's own search and the turn should not fail over it."""
    if not isinstance(raw, list):
        return ()
    found: list[Tool] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            continue
        try:
            if tool["type"] == "namespace":
                found.extend(_namespace_members(tool, f"{where}[{i}]"))
            elif tool["type"] in ("function", "custom"):
                found.append(_parse_tool(tool, f"{where}[{i}]"))
        except GatewayError:
            continue
    return tuple(found)


def search_tool_names(tools: tuple[Tool, ...]) -> frozenset[str]:
    """Names of the tools that stand for Codex's client-executed `tool_search`."""
    return frozenset(t.name for t in tools if t.config and CLIENT_SEARCH in t.config)


def namespaced(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def namespace_map(tools: tuple[Tool, ...]) -> dict[str, tuple[str, str]]:
    """Flat tool name -> (namespace, the member's own name), for namespaced tools."""
    split: dict[str, tuple[str, str]] = {}
    for tool in tools:
        namespace = tool.config.get("namespace") if tool.config and tool.kind != "hosted" else None
        if isinstance(namespace, str):
            split[tool.name] = (namespace, tool.name[len(namespace) + len(NAMESPACE_SEPARATOR) :])
    return split


def _parse_tool(tool: Any, where: str) -> Tool:
    tool, kind = typed_object(tool, where)
    if kind == "function":
        # `defer_loading: true` asks a Responses upstream to hide the tool until a search
        # loads it. Other upstreams cannot hide a tool, so it is sent as a normal one: Codex
        # registers a handler for every deferred tool from the start, so a direct call works,
        # whereas leaving it out would make it unreachable whenever the search misses it.
        # The flag is kept in `config` for a Responses upstream.
        return Tool(
            name=required_string(tool, "name", where),
            description=string(tool, "description", where),
            parameters=mapping(tool, "parameters", where) or dict(_EMPTY_PARAMETERS),
            strict=boolean(tool, "strict", where),
            config={"defer_loading": True} if tool.get("defer_loading") is True else None,
        )
    if kind == "custom":
        return Tool(
            name=required_string(tool, "name", where),
            description=string(tool, "description", where),
            kind="custom",
            format=mapping(tool, "format", where),
        )
    config = {key: value for key, value in tool.items() if key != "type"}
    if kind == "tool_search" and tool.get("execution") == "client":
        return _client_search(tool, config)
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        name = kind
    return Tool(name=name, kind="hosted", hosted_type=kind, config=config)


def _client_search(tool: JSON, config: JSON) -> Tool:
    parameters = tool.get("parameters")
    description = tool.get("description")
    return Tool(
        name=SEARCH_TOOL,
        description=description if isinstance(description, str) else _SEARCH_DESCRIPTION,
        parameters=parameters if isinstance(parameters, dict) else dict(_SEARCH_PARAMETERS),
        config={CLIENT_SEARCH: config},
    )


def parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        mode = _CHOICE_MODES.get(raw)
        if mode is None:
            raise invalid(
                f"tool_choice must be one of auto, none, required; got {raw!r}", "tool_choice"
            )
        return ToolChoice(mode=mode)
    if not isinstance(raw, dict):
        raise invalid("tool_choice must be a string or an object", "tool_choice")
    kind = raw.get("type")
    if kind in ("function", "custom"):
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice.name is required", "tool_choice.name")
        return ToolChoice(mode="tool", name=name)
    if kind == "allowed_tools":
        # The allow-list has no canonical form; keep whether a call is forced.
        return ToolChoice(mode="required" if raw.get("mode") == "required" else "auto")
    if isinstance(kind, str):
        return ToolChoice(mode="tool", name=kind)  # a built-in tool, named by its type
    raise invalid("tool_choice.type is required", "tool_choice.type")


def parse_text_format(text: Any) -> JSON | None:
    """`text.format` -> the canonical (Chat Completions style) response_format."""
    if not isinstance(text, dict):
        return None
    fmt = text.get("format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        # read by every upstream's renderer
        mapping(fmt, "schema", "text.format")
        string(fmt, "name", "text.format")
        schema = {
            key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt
        }
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


# ---------------------------------------------------------------- canonical -> wire


def render_tools(tools: tuple[Tool, ...], *, upstream: bool) -> list[JSON]:
    """Tools as Responses objects. `upstream` sanitizes names and drops hosted tools
    OpenAI does not know; for a client echo, names stay the client's own."""
    rendered: list[JSON] = []
    for tool in tools:
        item = _render_tool(tool, upstream=upstream)
        if item is not None:
            rendered.append(item)
    return rendered


def _render_tool(tool: Tool, *, upstream: bool) -> JSON | None:
    name = upstream_name(tool.name) if upstream else tool.name
    if tool.config and CLIENT_SEARCH in tool.config:
        return {"type": "tool_search", **tool.config[CLIENT_SEARCH]}
    if tool.kind == "hosted":
        if tool.hosted_type is None or (upstream and tool.hosted_type not in BUILTIN_TYPES):
            return None
        return {"type": tool.hosted_type, **(tool.config or {})}
    item: JSON = {"type": tool.kind, "name": name}
    if tool.description is not None:
        item["description"] = tool.description
    if tool.kind == "custom":
        if tool.format is not None:
            item["format"] = tool.format
        return item
    item["parameters"] = schema_copy(tool)
    # The Responses API treats a missing `strict` as true, which rejects most schemas
    # written for other APIs; say false unless the client asked.
    item["strict"] = bool(tool.strict)
    if tool.config and tool.config.get("defer_loading") is True:
        item["defer_loading"] = True
    return item


def render_tool_choice(
    choice: ToolChoice | None, tools: tuple[Tool, ...], *, upstream: bool
) -> Any:
    if choice is None:
        return "auto"
    if choice.mode != "tool":
        return choice.mode
    name = choice.name or ""
    tool = next((t for t in tools if t.name == name), None)
    if tool is not None and tool.kind == "hosted":
        return {"type": tool.hosted_type}
    kind = "custom" if tool is not None and tool.kind == "custom" else "function"
    return {"type": kind, "name": upstream_name(name) if upstream else name}


def render_text_format(response_format: JSON | None) -> JSON | None:
    """The canonical response_format -> Responses `text.format`."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = response_format.get("json_schema") or {}
        fmt: JSON = {"type": "json_schema", "name": schema.get("name", "response")}
        for key in ("schema", "strict", "description"):
            if key in schema:
                fmt[key] = schema[key]
        return fmt
    if kind == "json_object":
        return {"type": "json_object"}
    return None
