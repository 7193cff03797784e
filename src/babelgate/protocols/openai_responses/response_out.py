"""Canonical Response -> the Responses response object a client (Codex, the openai SDK)
reads; also the item and response builders the stream encoder shares.

Each Text part is one `message` item, each Reasoning part one `reasoning` item (reasoning
from other upstreams rides in `encrypted_content`, see envelope.py), each ToolCall one
`function_call` or `custom_tool_call` item, or a `tool_search_call` for the function that
stands for Codex's client-run search (tools.py). A call's provider metadata (a Gemini thought
signature) rides in its `call_id` (`carry.attach_to_id`): Codex stores call ids as opaque
strings of any length and sends them back on the call and on its output.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from babelgate.canonical import (
    JSON,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    StopReason,
    Text,
    Tool,
    ToolCall,
    Usage,
)
from babelgate.canonical.carry import attach_to_id
from babelgate.canonical.ids import new_id
from babelgate.canonical.tool_args import dump_arguments

from ..reuse import Reuse
from .envelope import encrypted_content, summary_texts
from .tools import namespace_map, render_tool_choice, render_tools, search_tool_names

# Stop reasons that end a Responses response as `incomplete`, with the reason it gives.
_INCOMPLETE: dict[StopReason, str] = {
    "max_tokens": "max_output_tokens",
    "context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


def response_id(upstream_id: str | None) -> str:
    if upstream_id and upstream_id.startswith("resp_"):
        return upstream_id
    return new_id("resp_")


def render_response(response: Response, request: Request, reuse: Reuse) -> JSON:
    status, incomplete = status_for(response.stop_reason)
    namespaces = namespace_map(request.tools)
    searches = search_tool_names(request.tools)
    output = [_item_for(part, status, namespaces, searches) for part in response.parts]
    return response_object(
        rid=response_id(response.id),
        created_at=response.created or int(time.time()),
        model=response.model or request.model,
        echo=request_echo(request, echoed_tools(request, reuse)),
        output=[item for item in output if item is not None],
        status=status,
        usage=render_usage(response.usage),
        incomplete_reason=incomplete,
    )


def status_for(stop_reason: StopReason | None) -> tuple[str, str | None]:
    reason = _INCOMPLETE.get(stop_reason) if stop_reason else None
    return ("incomplete", reason) if reason else ("completed", None)


def _item_for(
    part: Any,
    status: str,
    namespaces: dict[str, tuple[str, str]],
    searches: frozenset[str] = frozenset(),
) -> JSON | None:
    if isinstance(part, Text):
        return message_item(new_id("msg_"), part.text, status)
    if isinstance(part, Reasoning):
        return reasoning_item(new_id("rs_"), part)
    if isinstance(part, ToolCall):
        return call_item(call_item_id(part, searches), part, namespaces, searches)
    return None


# ---------------------------------------------------------------- items


def message_item(item_id: str, text: str | None, status: str) -> JSON:
    content = [] if text is None else [output_text(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, part: Reasoning | None) -> JSON:
    """A reasoning item; `part=None` gives the empty item a stream opens with."""
    item: JSON = {"id": item_id, "type": "reasoning", "summary": []}
    if part is None:
        return item
    item["summary"] = [{"type": "summary_text", "text": t} for t in summary_texts(part)]
    encrypted = encrypted_content(part)
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def call_item_id(call: ToolCall, searches: frozenset[str]) -> str:
    if call.name in searches:
        return new_id("tsc_")
    return new_id("ctc_" if call.kind == "custom" else "fc_")


def call_item(
    item_id: str,
    call: ToolCall,
    namespaces: dict[str, tuple[str, str]] | None = None,
    searches: frozenset[str] = frozenset(),
) -> JSON:
    """A function_call or custom_tool_call item; a namespaced tool's call names its
    namespace and the member's own name, as the client declared them. A call of the client's
    search is a `tool_search_call`, arguments an object, for Codex to run."""
    if call.name in searches:
        return {
            "id": item_id,
            "type": "tool_search_call",
            "status": "completed",
            "call_id": attach_to_id(call.id, call.provider_metadata),
            "execution": "client",
            "arguments": call.arguments,
        }
    item: JSON = {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": attach_to_id(call.id, call.provider_metadata),
        "name": call.name,
    }
    split = namespaces.get(call.name) if namespaces else None
    if split is not None:
        item["namespace"], item["name"] = split
    if call.kind == "custom":
        raw = call.arguments.get("input", "")
        item["type"] = "custom_tool_call"
        item["input"] = raw if isinstance(raw, str) else dump_arguments(call.arguments)
    else:
        item["arguments"] = dump_arguments(call.arguments)
    return item


def render_usage(usage: Usage) -> JSON:
    # Responses counts cached tokens inside input_tokens; canonical keeps them apart.
    # (usage.prompt_tokens, without the call of a property: this runs for every answer)
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": prompt + usage.output_tokens,
    }


# ---------------------------------------------------------------- the response object


def echoed_tools(request: Request, reuse: Reuse) -> list[JSON] | orjson.Fragment:
    """The client's tools as a response echoes them. Codex resends the same ten tools
    (~8 KB) every turn: a shared tool list (protocols/reuse.py) is rendered and serialised
    once."""
    return reuse.serialised(reuse.derive(_client_tools, request.tools))




def _client_tools(tools: tuple[Tool, ...]) -> list[JSON]:
    return render_tools(tools, upstream=False)


def request_echo(request: Request, tools: list[JSON] | orjson.Fragment) -> JSON:
    """The request settings a response object echoes (the SDK's Response type requires tools,
    tool_choice and parallel_tool_calls; clients commonly read the rest). Built once per
    response: a stream repeats them in three events."""
    return _echo(request.tools, echo_settings(request), tools)


def echo_settings(request: Request) -> tuple[Any, ...]:
    """All of the request but its tools that request_echo reads: hashable (a derive key, see
    stream_out.py). The numbers' types are in it too: 1 and 1.0 are equal keys but are
    written differently."""
    temperature, top_p = request.temperature, request.top_p
    return (request.max_tokens, request.parallel_tool_calls, request.previous_response_id,
            request.reasoning, request.store, temperature, type(temperature),
            request.tool_choice, top_p, type(top_p), type(request.max_tokens))


def _echo(
    declared: tuple[Tool, ...], settings: tuple[Any, ...], tools: list[JSON] | orjson.Fragment
) -> JSON:
    """request_echo from the request's tools and echo_settings."""
    (max_tokens, parallel, previous, reasoning, store, temperature, _, tool_choice, top_p,
     _, _) = settings
    return {
        "instructions": None,
        "max_output_tokens": max_tokens,
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": previous,
        "reasoning": _echo_reasoning(reasoning),
        "store": store is not False,  # the API's default is true
        "temperature": temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": render_tool_choice(tool_choice, declared, upstream=False),
        "tools": tools,
        "top_p": top_p,
        "truncation": "disabled",
        "metadata": {},
    }


def echo_tail(declared: tuple[Tool, ...], settings: tuple[Any, ...]) -> bytes:
    """The echo as it ends each response object of a stream: `,` and its members, then the
    object's closing brace (what follows the response's own fields)."""
    tools = orjson.Fragment(orjson.dumps(_client_tools(declared)))
    return b"," + orjson.dumps(_echo(declared, settings, tools))[1:]


def response_object(
    *,
    rid: str,
    created_at: int,
    model: str,
    echo: JSON,
    output: list[JSON],
    status: str,
    usage: JSON | None,
    incomplete_reason: str | None = None,
    error: JSON | None = None,
) -> JSON:
    """The full response object: its own fields plus `echo` (request_echo)."""
    return {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model,
        "output": output,
        "usage": usage,
        **echo,
    }


def _echo_reasoning(config: ReasoningConfig | None) -> JSON:
    if config is None:
        return {"effort": None, "summary": None}
    return {"effort": config.effort, "summary": config.summary}
