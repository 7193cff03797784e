"""Codex's client-executed tool_search in the Responses codec: the request side (tool,
history items, the tools a search found) and the way back (tool_search_call items)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from babelgate.canonical import Response, Text, ToolCall, ToolResult, Usage
from babelgate.canonical.stream import (
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
)
from babelgate.protocols import get_codec
from babelgate.protocols.base import Quirks

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses"
codec = get_codec("openai-responses")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_search_history_becomes_a_call_a_result_and_callable_tools() -> None:
    request = codec.parse_request(load("codex_request_tool_search.json"))
    names = [t.name for t in request.tools]
    # Declared tools first (a deferred one sent as a normal tool), then the ones found.
    assert names == ["exec_command", "list_mcp_resources", "tool_search",
                     "multi_agent_v1__spawn_agent", "multi_agent_v1__wait"]
    spawn = request.tools[3]
    assert spawn.parameters["required"] == ["message"]
    assert spawn.config == {"namespace": "multi_agent_v1"}

    assistant, user = request.messages[1], request.messages[2]
    assert assistant.role == "assistant"
    assert list(assistant.parts) == [ToolCall(id="call_search_1", name="tool_search",
                                        arguments={"query": "spawn agent", "limit": 8})]
    assert user.role == "user" and len(user.parts) == 1
    result = user.parts[0]
    assert isinstance(result, ToolResult) and result.call_id == "call_search_1"
    assert result.name == "tool_search"
    assert list(result.content) == [Text(
        "Tools found; they are now available to call:\n"
        "- multi_agent_v1__spawn_agent: Spawn a sub-agent for a well-scoped task.\n"
        "- multi_agent_v1__wait: Wait for agents to finish."
    )]


def test_a_search_that_found_nothing_says_so_and_adds_no_tool() -> None:
    body = load("codex_request_tool_search.json")
    body["input"][3]["tools"] = []
    request = codec.parse_request(body)
    assert [t.name for t in request.tools][-1] == "tool_search"
    assert list(request.messages[2].parts[0].content) == [Text("No matching tools found.")]


def test_responses_upstream_gets_the_native_tool_and_deferred_flag_back() -> None:
    request = codec.parse_request(load("codex_request_tool_search.json"))
    body = codec.render_request(request, Quirks())
    by_name = {t.get("name", t["type"]): t for t in body["tools"]}
    assert by_name["tool_search"] == load("codex_request_tool_search.json")["tools"][2]
    assert by_name["list_mcp_resources"]["defer_loading"] is True
    assert "defer_loading" not in by_name["exec_command"]


def _search_call() -> ToolCall:
    return ToolCall(id="toolu_01", name="tool_search", arguments={"query": "agents"})


def test_a_search_call_goes_back_as_a_tool_search_call_item() -> None:
    request = codec.parse_request(load("codex_request_tool_search.json"))
    response = Response(id="msg_1", model="m", parts=(_search_call(),), stop_reason="tool_use")
    [item] = codec.render_response(response, request)["output"]
    assert item["type"] == "tool_search_call" and item["id"].startswith("tsc_")
    del item["id"]
    assert item == {"type": "tool_search_call", "status": "completed", "call_id": "toolu_01",
                    "execution": "client", "arguments": {"query": "agents"}}


def test_a_function_named_tool_search_is_not_mistaken_for_the_client_search() -> None:
    body = load("codex_request_tool_search.json")
    body["tools"] = [{"type": "function", "name": "tool_search", "parameters": {}}]
    body["input"] = body["input"][:2]
    request = codec.parse_request(body)
    response = Response(id="msg_1", model="m", parts=(_search_call(),), stop_reason="tool_use")
    [item] = codec.render_response(response, request)["output"]
    assert item["type"] == "function_call"


def test_a_streamed_search_call_is_added_then_done_without_argument_deltas() -> None:
    request = codec.parse_request(load("codex_request_tool_search.json"))
    encoder = codec.stream_encoder(request)
    call = _search_call()
    raw = b"".join(encoder.encode(e) for e in (
        MessageStart(id="msg_1", model="m"), PartStart(0, call), PartStop(0, call),
        MessageDelta("tool_use", Usage()), MessageStop(),
    ))
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    added = next(e for e in events if e["type"] == "response.output_item.added")
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert added["item"]["type"] == "tool_search_call"
    assert added["item"]["status"] == "in_progress"
    assert done["item"]["arguments"] == {"query": "agents"}
    assert done["item"]["call_id"] == "toolu_01"
    assert events[-1]["response"]["output"] == [done["item"]]
