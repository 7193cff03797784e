"""A client's Responses request body -> canonical Request.

Rules:
- `instructions`, and system/developer messages before the first other item, become
  `request.system`; later ones stay in place as `Message(role="system")`.
- One assistant turn in Responses is several items (reasoning, message, function calls);
  consecutive assistant-side items join one assistant Message, so a thinking signature stays
  with the calls it covers. Consecutive user-side items (user messages and tool outputs) join
  one user Message, tool results first as the other protocols need them.
- Call ids that carry upstream metadata (`carry.attach_to_id`) are split back here, so every
  upstream sees the original id and the call gets its `provider_metadata` back.
- Fields without canonical meaning (client_metadata, prompt_cache_key, include, truncation,
  metadata, service_tier, text.verbosity, safety_identifier, user) are accepted and dropped.
- Items with no canonical meaning (web_search_call and other built-in tool activity, item
  references) are skipped: they can only be replayed to OpenAI itself, which is served by
  same-protocol pass-through instead.
- Codex's client-run search (see tools.py): a `tool_search_call` item is a ToolCall of the
  `tool_search` function, a `tool_search_output` its ToolResult, whose text lists the tools
  found, and those tools join `request.tools` so the upstream can call them from then on
  (a Responses upstream would have read them from the history item itself). Search items
  without a `call_id` (server-executed search) are skipped like other built-in activity.
- Errors name the offending field, e.g. `input[3].call_id`.
"""

from __future__ import annotations

from typing import Any, Literal

from babelgate.canonical import (
    JSON,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    invalid,
)
from babelgate.canonical.carry import split_id
from babelgate.canonical.model import Effort
from babelgate.canonical.tool_args import client_arguments

from ..fields import boolean, integer, number, required_string
from ..reuse import Reuse
from .content import Content, parse_content
from .envelope import reasoning_from_client
from .tools import (
    SEARCH_TOOL,
    namespaced,
    parse_text_format,
    parse_tool_choice,
    parse_tools,
    tools_from_search,
)

_EFFORTS: dict[str, Effort] = {
    "none": "none",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
_ASSISTANT_ITEMS = frozenset({"reasoning", "function_call", "custom_tool_call"})
_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})
Side = Literal["system", "user", "assistant"]
def parse_request(body: JSON, reuse: Reuse) -> Request:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required", "model")
    builder = _Conversation(reuse)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        builder.system.append(Text(instructions))
    elif instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions must be a string", "instructions")
    _read_input(body.get("input"), builder)
    # Codex resends the same tool list on every turn: parsed once (protocols/reuse.py).
    tools = reuse.derive(parse_tools, body.get("tools"))
    return Request(
        model=model,
        messages=builder.messages(),
        system=tuple(builder.system),
        max_tokens=integer(body, "max_output_tokens", minimum=1),
        stream=boolean(body, "stream") is True,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        tools=_with_found(tools, builder.found_tools),
        tool_choice=parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=boolean(body, "parallel_tool_calls"),
        reasoning=_parse_reasoning(body.get("reasoning")),
        response_format=parse_text_format(body.get("text")),
        previous_response_id=_optional_str(body, "previous_response_id"),
        store=boolean(body, "store"),
    )


# ---------------------------------------------------------------- input items
#
# Each item is read on its own into an _Item (what it adds to the conversation), once per
# item an agent resends unchanged (protocols/reuse.py); _Conversation then joins the items of a
# request into messages. _Items, their parts and their lists are shared between requests, so
# the builder copies a list before it grows one and never changes a part.


class _Output:
    """A function or custom tool's output, before it is known which call it answers."""

    __slots__ = ("call_id", "content", "is_error", "kind")

    def __init__(
        self,
        call_id: str,
        content: tuple[Content, ...],
        is_error: bool,
        kind: Literal["function", "custom"],
    ) -> None:
        self.call_id = call_id
        self.content = content
        self.is_error = is_error
        self.kind = kind  # the item's own kind, used when no earlier call names it


class _Item:
    """What one input item adds: `parts` on its `side` ("results" for tool results, None for
    an item that adds nothing), the call it makes, the tools its search found, or an output
    whose ToolResult is made once the calls before it are known."""

    __slots__ = ("call", "found", "output", "parts", "side")

    def __init__(
        self,
        side: Side | Literal["results"] | None,
        parts: tuple[Part, ...] = (),
        *,
        call: tuple[str, str, Literal["function", "custom"]] | None = None,
        found: tuple[Tool, ...] = (),
        output: _Output | None = None,
    ) -> None:
        self.side = side
        self.parts = parts
        self.call = call  # (call id, name, kind)
        self.found = found
        self.output = output


_SKIPPED = _Item(None)


class _Conversation:
    """Builds messages from items, joining runs of items that belong to one turn."""

    __slots__ = ("call_names", "found_tools", "reuse", "system", "turns")

    def __init__(self, reuse: Reuse) -> None:
        self.reuse = reuse
        self.system: list[Text] = []
        # Each turn's role and parts: an item's own tuple while the turn is that one item,
        # else a list this request made (never a shared one, so it may grow).
        self.turns: list[tuple[Side, tuple[Part, ...] | list[Part]]] = []
        # call id -> (name, kind), so a result can name its tool (Gemini needs the name).
        self.call_names: dict[str, tuple[str, Literal["function", "custom"]]] = {}
        self.found_tools: list[Tool] = []  # loaded by the client's tool_search, in order

    def take(self, item: _Item) -> None:
        """Adds `item`, read from an input item."""
        if item.call is not None:
            call_id, call_name, call_kind = item.call
            self.call_names[call_id] = (call_name, call_kind)
        if item.found:
            self.found_tools.extend(item.found)
        if item.side == "results":
            output = item.output
            if output is None:
                self.add_results(item.parts)
                return
            # The result names the call it answers, which an earlier item made: one shared
            # ToolResult per name, as the same output may follow a different history.
            name, kind = self.call_names.get(output.call_id, (None, None))
            result = self.reuse.derive(_named_result, item, name, kind)
            self.add_results((result,))
        elif item.side is not None:
            self.add(item.side, item.parts)

    def add(self, side: Side, parts: tuple[Part, ...]) -> None:
        turns = self.turns
        if side == "system" and not turns:
            self.system.extend(p for p in parts if isinstance(p, Text))
            return
        if turns and turns[-1][0] == side and side != "system":
            self._open_parts().extend(parts)
        else:
            turns.append((side, parts))

    def add_results(self, results: tuple[Part, ...]) -> None:
        """Tool results join the open user message ahead of its other parts."""
        if not self.turns or self.turns[-1][0] != "user":
            self.turns.append(("user", results))
            return
        parts = self._open_parts()
        split = next(
            (i for i, p in enumerate(parts) if not isinstance(p, ToolResult)), len(parts)
        )
        parts[split:split] = results

    def _open_parts(self) -> list[Part]:
        """The last turn's parts as a list of this request's own, to grow."""
        side, parts = self.turns[-1]
        if isinstance(parts, tuple):
            parts = list(parts)
            self.turns[-1] = (side, parts)
        return parts

    def messages(self) -> tuple[Message, ...]:
        return tuple([Message(role=side, parts=tuple(parts)) for side, parts in self.turns])


def _read_input(raw: Any, builder: _Conversation) -> None:
    if isinstance(raw, str):
        builder.add("user", (Text(raw),))
        return
    if not isinstance(raw, list):
        raise invalid("input must be a string or an array of items", "input")
    for i, item in enumerate(raw):
        # An item resent unchanged from an earlier turn is read once (see protocols/reuse.py).
        builder.take(builder.reuse.derive(_read_item, item, i))


def _read_item(item: Any, i: int) -> _Item:
    where = f"input[{i}]"
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object", where)
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"  # the short form {role, content}
    if not isinstance(kind, str):  # before any lookup: a list or an object is no name
        raise invalid(f"{where}.type is required", f"{where}.type")
    if kind == "message":
        return _read_message(item, where)
    if kind in _ASSISTANT_ITEMS:
        return _assistant_item(item, kind, where)
    if kind in _OUTPUT_ITEMS:
        return _Item("results", output=_output(item, kind, where))
    if kind == "tool_search_call" and item.get("call_id"):
        return _search_call(item, where)
    if kind == "tool_search_output" and item.get("call_id"):
        return _search_result(item, where)
    return _SKIPPED  # any other type is built-in tool activity; see the module docstring


def _read_message(item: JSON, where: str) -> _Item:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise invalid(f"{where}.role must be user, assistant, system or developer", f"{where}.role")
    side: Side = "system" if role in ("system", "developer") else role
    return _Item(side, tuple(parse_content(item.get("content"), f"{where}.content")))


def _assistant_item(item: JSON, kind: str, where: str) -> _Item:
    if kind == "reasoning":
        return _Item("assistant", (_reasoning(item, where),))
    call_id, metadata = split_id(required_string(item, "call_id", where))
    namespace = item.get("namespace")
    name = namespaced(
        namespace if isinstance(namespace, str) else None, required_string(item, "name", where)
    )
    if kind == "custom_tool_call":
        raw_input = item.get("input", "")
        if not isinstance(raw_input, str):
            raise invalid(f"{where}.input must be a string", f"{where}.input")
        custom = ToolCall(
            id=call_id,
            name=name,
            arguments={"input": raw_input},
            kind="custom",
            provider_metadata=metadata,
        )
        return _Item("assistant", (custom,), call=(call_id, name, "custom"))
    return _arguments_call(item, where, call_id, name, metadata)


def _search_call(item: JSON, where: str) -> _Item:
    call_id, metadata = split_id(required_string(item, "call_id", where))
    return _arguments_call(item, where, call_id, SEARCH_TOOL, metadata)


def _arguments_call(
    item: JSON, where: str, call_id: str, name: str, metadata: JSON | None
) -> _Item:
    """A call whose input is its item's JSON `arguments` (a function or a search call)."""
    call = ToolCall(
        id=call_id,
        name=name,
        arguments=_parse_arguments(item.get("arguments"), f"{where}.arguments"),
        provider_metadata=metadata,
    )
    return _Item("assistant", (call,), call=(call_id, name, "function"))


def _search_result(item: JSON, where: str) -> _Item:
    call_id, _ = split_id(required_string(item, "call_id", where))
    found = tools_from_search(item.get("tools"), f"{where}.tools")
    result = ToolResult(call_id=call_id, content=(Text(_describe_found(found)),), name=SEARCH_TOOL)
    return _Item("results", (result,), found=found)


def _describe_found(found: tuple[Tool, ...]) -> str:
    """What the model reads as the search's result: the names it can now call (their
    schemas are in the request's tools), one a line with the first line of the description."""
    if not found:
        return "No matching tools found."
    lines = ["Tools found; they are now available to call:"]
    for tool in found:
        summary = (tool.description or "").strip().split("\n", 1)[0]
        lines.append(f"- {tool.name}: {summary}" if summary else f"- {tool.name}")
    return "\n".join(lines)


def _with_found(tools: tuple[Tool, ...], found: list[Tool]) -> tuple[Tool, ...]:
    """The request's tools plus those the client's searches loaded, each name once (a later
    search may return a tool again; the declared tools win)."""
    if not found:
        return tools
    names = {tool.name for tool in tools}
    merged = list(tools)
    for tool in found:
        if tool.name not in names:
            names.add(tool.name)
            merged.append(tool)
    return tuple(merged)


def _parse_arguments(raw: Any, where: str) -> JSON:
    # Client history holds arguments the model produced; repair rather than reject them,
    # as the upstream already accepted them once.
    if isinstance(raw, dict):
        return raw
    if raw is None or isinstance(raw, str):
        return client_arguments(raw, where)
    raise invalid(f"{where} must be a JSON string", where)


def _reasoning(item: JSON, where: str) -> Reasoning:
    summaries: list[str] = []
    raw_summary = item.get("summary") or []
    if not isinstance(raw_summary, list):
        raise invalid(f"{where}.summary must be an array", f"{where}.summary")
    for j, entry in enumerate(raw_summary):
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise invalid(f"{where}.summary[{j}].text must be a string", f"{where}.summary[{j}]")
        summaries.append(entry["text"])
    raw_text = "".join(
        c["text"]
        for c in item.get("content") or []
        if isinstance(c, dict) and isinstance(c.get("text"), str)
    )
    encrypted = item.get("encrypted_content")
    return reasoning_from_client(
        summaries, encrypted if isinstance(encrypted, str) else None, raw_text
    )


def _output(item: JSON, kind: str, where: str) -> _Output:
    call_id, _ = split_id(required_string(item, "call_id", where))
    output = item.get("output", "")
    is_error = False
    if isinstance(output, dict):  # older clients: {content, success}
        is_error = output.get("success") is False
        output = output.get("content", "")
    return _Output(
        call_id,
        tuple(parse_content(output, f"{where}.output")),
        is_error,
        "custom" if kind == "custom_tool_call_output" else "function",
    )


def _named_result(
    item: _Item, name: str | None, call_kind: Literal["function", "custom"] | None
) -> ToolResult:
    """The ToolResult of an output item, answering a call of tool `name`."""
    output = item.output
    assert output is not None
    return ToolResult(
        call_id=output.call_id,
        content=output.content,
        is_error=output.is_error,
        name=name,
        kind=call_kind or output.kind,
    )


# ---------------------------------------------------------------- scalar fields


def _parse_reasoning(raw: Any) -> ReasoningConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid("reasoning must be an object", "reasoning")
    effort_raw = raw.get("effort")
    effort = None
    if effort_raw is not None:
        effort = _EFFORTS.get(effort_raw) if isinstance(effort_raw, str) else None
        if effort is None:
            raise invalid(f"reasoning.effort {effort_raw!r} is not supported", "reasoning.effort")
    summary = raw.get("summary") or raw.get("generate_summary")
    return ReasoningConfig(
        enabled=None if effort is None else effort != "none",
        effort=effort,
        summary=summary if isinstance(summary, str) else None,
    )


def _optional_str(body: JSON, key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None
