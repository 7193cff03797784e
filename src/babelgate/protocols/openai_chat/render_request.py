"""Canonical Request -> Chat Completions request body for an upstream.

Only fields the upstream defines are sent: `quirks` decides the token-limit field, the
reasoning control, whether stream usage is requested and whether non-standard fields such
as `top_k` may go out. Cache markers, metadata and hosted tools never leak.
"""

from __future__ import annotations

from orjson import Fragment

from babelgate.canonical import JSON, ReasoningConfig, Request, Tool, ToolChoice, schema_copy

from ..base import Quirks
from ..reuse import Reuse
from .names import wire_name, wire_user
from .render_messages import render_messages

# OpenAI rejects more than four stop sequences.
_MAX_STOP = 4
# Budget (tokens) -> effort, for upstreams that only take an effort level. The bounds follow
# the budgets Claude Code sends for "think" (~4k), "think hard" (~10k) and "ultrathink" (~32k).
_LOW_BUDGET = 4096
_MEDIUM_BUDGET = 16384
_EFFORT_LEVEL = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


def render_request(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    body: JSON = {
        "model": request.model,
        "messages": render_messages(request.system, request.messages, quirks, reuse),
    }
    _add_tools(body, request, reuse)
    _add_sampling(body, request, quirks, reuse)
    if request.reasoning is not None:
        body.update(_reasoning_fields(request.reasoning, quirks))
    if request.stream:
        body["stream"] = True
        if quirks.stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def _add_tools(body: JSON, request: Request, reuse: Reuse) -> None:
    # Rendered once per distinct tool list (protocols/reuse.py): agents resend theirs every
    # turn.
    tools = reuse.derive(_render_tools, request.tools, reuse)
    if not tools:
        return  # tool_choice and parallel_tool_calls are rejected without tools
    body["tools"] = reuse.serialised(tools)  # built once per tool list: serialised once, too
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls


def _render_tools(tools: tuple[Tool, ...], reuse: Reuse) -> list[JSON]:
    # The wire names remembered by the caller's table, a whole list's at once: a new
    # conversation of the same agent (a tool list not shared yet) has the same names.
    names = reuse.memo(_wire_names, tuple([tool.name for tool in tools]))
    rendered: list[JSON] = []
    for tool, name in zip(tools, names, strict=True):
        description, parameters = tool.description, tool.parameters
        if tool.kind == "function" and description and tool.strict is None:
            # The usual tool, in one expression: a function call per tool is a tenth of
            # rendering a Claude Code body nothing of which was seen before.
            rendered.append({"type": "function", "function": {
                "name": name, "description": description,
                "parameters": parameters if isinstance(parameters, dict)
                else Fragment(parameters.text)}})  # the client's bytes: schema_copy
        elif tool.kind != "hosted":
            rendered.append(_tool(tool, name))
    return rendered


def _wire_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple([wire_name(name) for name in names])


def _tool(tool: Tool, name: str) -> JSON:
    function: JSON = {"name": name}
    if tool.description:
        function["description"] = tool.description
    if tool.kind == "custom":
        function["parameters"] = _custom_parameters(tool)
    else:
        function["parameters"] = schema_copy(tool)  # the client's bytes, when it sent them
        if tool.strict is not None:
            function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _custom_parameters(tool: Tool) -> JSON:
    """A free-form tool becomes a function with one string argument, `input`; its grammar,
    when it has one, is described there so the model still writes the right syntax."""
    description = "The raw input for this tool."
    fmt: JSON = tool.format or {}
    nested = fmt.get("grammar")  # Chat nests the grammar; Responses keeps it flat
    grammar: JSON = nested if isinstance(nested, dict) else fmt
    if grammar.get("definition"):
        syntax = grammar.get("syntax") or "grammar"
        description += f" It must follow this {syntax} grammar:\n{grammar['definition']}"
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": description}},
        "required": ["input"],
        "additionalProperties": False,
    }


def _tool_choice(choice: ToolChoice) -> str | JSON:
    if choice.mode == "tool" and choice.name:
        return {"type": "function", "function": {"name": wire_name(choice.name)}}
    if choice.mode == "tool":
        return "required"
    return choice.mode


def _add_sampling(body: JSON, request: Request, quirks: Quirks, reuse: Reuse) -> None:
    if request.max_tokens is not None:
        limit = request.max_tokens
        if quirks.max_tokens is not None:
            limit = min(limit, quirks.max_tokens)
        body[quirks.max_tokens_field] = limit
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None and not quirks.strict_fields:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop"] = list(request.stop[:_MAX_STOP] if quirks.strict_fields else request.stop)
    if request.user:
        body["user"] = wire_user(request.user, reuse)
    if request.response_format is not None:
        body["response_format"] = request.response_format


# ------------------------------------------------------------------ reasoning control


def _reasoning_fields(config: ReasoningConfig, quirks: Quirks) -> JSON:
    """The upstream's own reasoning switch for what the client asked. Nothing is sent when
    the client said nothing, so the upstream's default applies."""
    enabled = _enabled(config)
    control = quirks.reasoning_control
    if control == "reasoning_effort":
        effort = _effort(config)
        return {"reasoning_effort": effort} if effort and enabled is not False else {}
    if enabled is None:
        return {}
    if control == "thinking":
        return {"thinking": {"type": "enabled" if enabled else "disabled"}}
    if control == "enable_thinking":
        fields: JSON = {"enable_thinking": enabled}
        if enabled and config.budget_tokens:
            fields["thinking_budget"] = config.budget_tokens
        return fields
    if control == "reasoning":
        return {"reasoning": _openrouter_reasoning(config, enabled)}
    if control == "chat_template_kwargs":
        return {"chat_template_kwargs": {"enable_thinking": enabled}}
    return {}


def _enabled(config: ReasoningConfig) -> bool | None:
    if config.enabled is not None:
        return config.enabled
    if config.effort is not None:
        return config.effort != "none"
    if config.budget_tokens or config.adaptive:
        return True
    return None


def _effort(config: ReasoningConfig) -> str | None:
    if config.effort is not None:
        return _EFFORT_LEVEL.get(config.effort)
    if config.budget_tokens:
        if config.budget_tokens <= _LOW_BUDGET:
            return "low"
        return "medium" if config.budget_tokens <= _MEDIUM_BUDGET else "high"
    return None


def _openrouter_reasoning(config: ReasoningConfig, enabled: bool) -> JSON:
    if not enabled:
        return {"enabled": False}
    if config.effort is not None and config.effort in _EFFORT_LEVEL:
        return {"effort": _EFFORT_LEVEL[config.effort]}
    if config.budget_tokens:
        return {"max_tokens": config.budget_tokens}
    return {"enabled": True}
