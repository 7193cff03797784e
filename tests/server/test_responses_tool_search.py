"""Codex's client-executed `tool_search` through the gateway to upstreams without it
(Anthropic, Gemini, OpenAI Chat). Turn 1: the model calls the `tool_search` function and the
client gets a `tool_search_call` item to run. Turn 2: the client sends the call and its
`tool_search_output` back; the upstream sees a tool call, a result naming the tools found,
and those tools declared, so it can call one; the client gets that call in its namespace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from tests.fakes import Reply, ToolCall

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

UPSTREAMS = {"claude-client": "an", "gem-client": "ge", "gpt-client": "oa"}
SEARCH: dict[str, Any] = {
    "type": "tool_search", "execution": "client",
    "description": "Search the available MCP tools by keyword.",
    "parameters": {"type": "object",
                   "properties": {"query": {"type": "string"}, "limit": {"type": "number"}},
                   "required": ["query"], "additionalProperties": False},
}
EXEC: dict[str, Any] = {
    "type": "function", "name": "exec_command", "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                   "required": ["cmd"]},
    "strict": False,
}
# What Codex's search handler returns: an MCP server's tools as a namespace of deferred
# functions.
FOUND: list[Any] = [{
    "type": "namespace", "name": "mcp__calendar",
    "description": "Tools in the mcp__calendar namespace.",
    "tools": [{
        "type": "function", "name": "create_event", "description": "Create a calendar event",
        "strict": False, "defer_loading": True,
        "parameters": {"type": "object", "properties": {"title": {"type": "string"}},
                       "required": ["title"], "additionalProperties": False},
    }],
}]
PROMPT = [{"type": "message", "role": "user",
           "content": [{"type": "input_text", "text": "Book lunch on my calendar"}]}]


def tool_names(body: dict[str, Any]) -> list[str]:
    """Declared tool names in an Anthropic, Gemini or Chat request body."""
    names: list[str] = []
    for tool in body.get("tools", []):
        if "functionDeclarations" in tool:
            names += [d["name"] for d in tool["functionDeclarations"]]
        elif "function" in tool:
            names.append(tool["function"]["name"])
        elif "name" in tool:
            names.append(tool["name"])
    return names


async def output_of(client: AsyncOpenAI, model: str, stream: bool,
                    input: list[Any]) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"model": model, "input": input, "tools": [EXEC, SEARCH],
                              "store": False}
    if not stream:
        response = await client.responses.create(**kwargs)
        return [item.model_dump() for item in response.output]
    events = [e async for e in await client.responses.create(stream=True, **kwargs)]
    assert events[-1].type == "response.completed", [e.type for e in events[-3:]]
    done = [e.item.model_dump() for e in events if e.type == "response.output_item.done"]
    assert done == [item.model_dump() for item in events[-1].response.output]
    return done


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_search_then_call_a_found_tool(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(tool_calls=[ToolCall("tool_search", {"query": "calendar", "limit": 2})]))
    first = await output_of(client, model, stream, PROMPT)
    body = last(fake).body
    assert "tool_search" in tool_names(body) and "exec_command" in tool_names(body)
    assert "Search the available MCP tools by keyword." in json.dumps(body)

    # The client gets the search to run, in the shape Codex parses: no function_call.
    assert [item["type"] for item in first] == ["tool_search_call"]
    call = first[0]
    assert call["execution"] == "client" and call["status"] == "completed"
    assert call["arguments"] == {"query": "calendar", "limit": 2}
    assert call["call_id"]

    # Turn 2, as Codex sends it: the call as received, then the search's output.
    fake.queue(Reply(tool_calls=[ToolCall("mcp__calendar__create_event", {"title": "Lunch"})]))
    history = [
        *PROMPT,
        {k: v for k, v in call.items() if v is not None},
        {"type": "tool_search_output", "call_id": call["call_id"], "status": "completed",
         "execution": "client", "tools": FOUND},
    ]
    second = await output_of(client, model, stream, history)
    assert fake.rejections == [], fake.rejections
    body = last(fake).body
    assert tool_names(body).count("mcp__calendar__create_event") == 1
    raw = json.dumps(body)
    # The search's result, as the model reads it: the names it can now call.
    assert "- mcp__calendar__create_event: Create a calendar event" in raw
    assert "defer_loading" not in raw and "tool_search_output" not in raw

    calls = [item for item in second if item["type"] == "function_call"]
    assert len(calls) == 1
    assert (calls[0]["namespace"], calls[0]["name"]) == ("mcp__calendar", "create_event")
    assert json.loads(calls[0]["arguments"]) == {"title": "Lunch"}


async def test_responses_upstream_keeps_the_native_tool(
    fresh: Stack, client: AsyncOpenAI
) -> None:
    """Codex's body (store false) passes through to a Responses upstream untouched."""
    fresh.rs.queue(Reply(text="ok"))
    await output_of(client, "resp-client", False, PROMPT)
    body = last(fresh.rs).body
    assert body["tools"][1] == SEARCH
