"""An OpenAI Responses client (the official `openai` SDK, used the way Codex uses it:
`store=False`, full history each turn) through the gateway against every upstream type:
OpenAI Responses (passed through), Anthropic, Gemini 3, OpenAI Chat (translated) and DeepSeek.
Checked: text and usage, streams that end with response.completed and number their events,
function and custom (free-form) tool calls over two turns, reasoning items whose
encrypted_content restores the upstream's signature next turn, and Codex's own fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from tests.fakes import Reply, ToolCall, Usage
from tests.fakes.core import new_id, opaque_ok, sign

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

UPSTREAMS = {"resp-client": "rs", "claude-client": "an", "gem-client": "ge",
             "gpt-client": "oa", "ds-client": "ds"}
ALL = list(UPSTREAMS)
REASONING = ["resp-client", "claude-client", "gem-client", "ds-client"]

WEATHER: dict[str, Any] = {
    "type": "function", "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True,
}
APPLY_PATCH: dict[str, Any] = {
    "type": "custom", "name": "apply_patch",
    "description": "Apply a patch to files. Input is the patch text, not JSON.",
    "format": {"type": "grammar", "syntax": "lark",
               "definition": 'start: "*** Begin Patch" LF body "*** End Patch"\n'
                             'body: /(.|\\n)*/\nLF: "\\n"\n'},
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello \"world\"\n*** End Patch"
THOUGHT = "The user wants the weather; the tool knows it."


def fake_of(stack: Stack, model: str) -> Any:
    return getattr(stack, UPSTREAMS[model])


def sent(stack: Stack, model: str) -> dict[str, Any]:
    fake = fake_of(stack, model)
    assert fake.rejections == [], fake.rejections
    body: dict[str, Any] = last(fake).body
    return body



async def create(client: AsyncOpenAI, stream: bool, **request: Any) -> Any:
    """The final response object, streamed or not; a stream is checked as it goes: numbered
    events in increasing order, response.created first, a terminal event last."""
    if not stream:
        return await client.responses.create(store=False, **request)
    events = [e async for e in await client.responses.create(store=False, stream=True,
                                                               **request)]
    check_stream(events)
    assert events[-1].type == "response.completed", [e.type for e in events[-3:]]
    return events[-1].response


def check_stream(events: list[Any]) -> None:
    assert events, "empty stream"
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)), numbers
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.failed", "response.incomplete")
    assert sum(e.type in ("response.completed", "response.failed", "response.incomplete")
               for e in events) == 1


def items(response: Any, kind: str) -> list[Any]:
    return [i for i in response.output if i.type == kind]


def echo(response: Any) -> list[dict[str, Any]]:
    """The output items as Codex sends them back on its next turn."""
    out = []
    for item in response.output:
        data = item.model_dump(exclude_none=True)
        if data["type"] == "message":
            for part in data.get("content", []):
                part.pop("logprobs", None)
        out.append(data)
    return out


# ---------------------------------------------------------------- text, usage, streams


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ALL)
async def test_text(fresh: Stack, client: AsyncOpenAI, model: str, stream: bool) -> None:
    fake_of(fresh, model).queue(
        Reply(text="Hi there, in a few pieces.", usage=Usage(input_tokens=20, output_tokens=7)))
    response = await create(client, stream, model=model, input="Hello",
                            instructions="Be brief.", max_output_tokens=300)
    assert response.status == "completed"
    assert response.output_text == "Hi there, in a few pieces."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    body = sent(fresh, model)
    assert "Be brief." in json.dumps(body)


# ---------------------------------------------------------------- function calls


def tool_result_upstream(model: str, body: dict[str, Any]) -> str:
    """The text of the tool result as the upstream received it, in its own shape."""
    if model in ("gpt-client", "ds-client"):
        return str(next(m for m in body["messages"] if m["role"] == "tool")["content"])
    if model == "claude-client":
        block = next(b for b in body["messages"][-1]["content"] if b["type"] == "tool_result")
        content = block["content"]
        return content if isinstance(content, str) else "".join(c["text"] for c in content)
    if model == "gem-client":
        part = next(p for p in body["contents"][-1]["parts"] if "functionResponse" in p)
        return json.dumps(part["functionResponse"])
    return str(next(i for i in body["input"] if i.get("type", "").endswith("_output"))["output"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ALL)
async def test_function_call_two_turns(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = fake_of(fresh, model)
    thought = THOUGHT if model == "ds-client" else None  # deepseek-reasoner always thinks
    fake.queue(Reply(reasoning=thought, tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
               Reply(text="Sunny in Paris."))
    history: list[Any] = [{"role": "user", "content": [
        {"type": "input_text", "text": "Weather in Paris?"}]}]
    request = {"model": model, "tools": [WEATHER], "include": ["reasoning.encrypted_content"]}
    first = await create(client, stream, input=history, **request)
    calls = items(first, "function_call")
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert calls[0].call_id and calls[0].id

    history += [*echo(first),
                {"type": "function_call_output", "call_id": calls[0].call_id,
                 "output": "sunny, 24C"}]
    final = await create(client, stream, input=history, **request)
    assert final.output_text == "Sunny in Paris."
    assert "sunny, 24C" in tool_result_upstream(model, sent(fresh, model))


# ---------------------------------------------------------------- custom (free-form) tools


def custom_call_reply(model: str, stream: bool) -> Reply:
    """The upstream calling apply_patch. Translated upstreams see a function tool with one
    string argument; a Responses upstream answers with a custom_tool_call item itself."""
    if model != "resp-client":
        return Reply(tool_calls=[ToolCall("apply_patch", {"input": PATCH})])
    item = {"id": new_id("ctc_"), "type": "custom_tool_call", "status": "completed",
            "call_id": new_id("call_"), "name": "apply_patch", "input": PATCH}
    response = {"id": new_id("resp_"), "object": "response", "created_at": 1,
                "status": "completed", "error": None, "incomplete_details": None,
                "model": "gpt-resp-up", "output": [item], "parallel_tool_calls": True,
                "tool_choice": "auto", "tools": [], "store": False,
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}
    if not stream:
        return Reply(raw=response)
    shell = {**response, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "response": shell},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "input": ""}},
        {"type": "response.custom_tool_call_input.delta", "output_index": 0,
         "item_id": item["id"], "delta": PATCH[:20]},
        {"type": "response.custom_tool_call_input.delta", "output_index": 0,
         "item_id": item["id"], "delta": PATCH[20:]},
        {"type": "response.custom_tool_call_input.done", "output_index": 0,
         "item_id": item["id"], "input": PATCH},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return Reply(raw=events)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ALL)
async def test_custom_tool_call_two_turns(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = fake_of(fresh, model)
    first_reply = custom_call_reply(model, stream)
    if model == "ds-client":
        first_reply.reasoning = THOUGHT
    fake.queue(first_reply, Reply(text="Patched."))
    history: list[Any] = [{"role": "user", "content": "Create hello.txt"}]
    request = {"model": model, "tools": [APPLY_PATCH, WEATHER]}
    first = await create(client, stream, input=history, **request)
    calls = items(first, "custom_tool_call")
    assert len(calls) == 1, first.output
    assert calls[0].name == "apply_patch"
    assert calls[0].input == PATCH  # the raw patch text, not JSON around it
    assert items(first, "function_call") == []
    if model != "resp-client":
        tools = json.dumps(last(fake).body.get("tools"))
        assert "apply_patch" in tools and "Begin Patch" in tools  # the grammar was told

    history += [*echo(first), {"type": "custom_tool_call_output",
                               "call_id": calls[0].call_id, "output": "Done: A hello.txt"}]
    final = await create(client, stream, input=history, **request)
    assert final.output_text == "Patched."
    body = sent(fresh, model)
    assert "Done: A hello.txt" in tool_result_upstream(model, body)
    if model == "claude-client":
        use = next(b for b in body["messages"][1]["content"] if b["type"] == "tool_use")
        assert use["name"] == "apply_patch" and use["input"] == {"input": PATCH}
    elif model == "gem-client":
        part = next(p for p in body["contents"][1]["parts"] if "functionCall" in p)
        assert part["functionCall"]["args"] == {"input": PATCH}
    elif model in ("gpt-client", "ds-client"):
        call = next(m for m in body["messages"] if m["role"] == "assistant")["tool_calls"][0]
        assert json.loads(call["function"]["arguments"]) == {"input": PATCH}
    else:
        kinds = [i.get("type") for i in body["input"]]
        assert kinds[-2:] == ["custom_tool_call", "custom_tool_call_output"]


# ---------------------------------------------------------------- reasoning round trip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", REASONING)
async def test_reasoning_item_restores_the_upstream_signature(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = fake_of(fresh, model)
    fake.queue(Reply(reasoning=THOUGHT, tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
               Reply(text="Cold in Oslo."))
    history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    request = {"model": model, "tools": [WEATHER], "max_output_tokens": 16000,
               "reasoning": {"effort": "medium", "summary": "auto"},
               "include": ["reasoning.encrypted_content"]}
    first = await create(client, stream, input=history, **request)
    reasoning = items(first, "reasoning")
    assert len(reasoning) == 1, first.output
    assert reasoning[0].encrypted_content
    shown = "".join(s.text for s in reasoning[0].summary) + "".join(
        c.text for c in reasoning[0].content or [])
    assert THOUGHT in shown
    assert [c.name for c in items(first, "function_call")] == ["get_weather"]

    call = items(first, "function_call")[0]
    history += [*echo(first), {"type": "function_call_output", "call_id": call.call_id,
                               "output": "-5C"}]
    final = await create(client, stream, input=history, **request)
    assert final.output_text == "Cold in Oslo."
    body = sent(fresh, model)  # the strict fakes accepted what came back
    if model == "claude-client":
        block = body["messages"][1]["content"][0]
        assert block == {"type": "thinking", "thinking": THOUGHT, "signature": sign(THOUGHT)}
        assert body["thinking"]["type"] in ("enabled", "adaptive")
    elif model == "gem-client":
        part = next(p for p in body["contents"][1]["parts"] if "functionCall" in p)
        assert opaque_ok(part.get("thoughtSignature"))
    elif model == "ds-client":
        turn = next(m for m in body["messages"] if m["role"] == "assistant")
        assert turn["reasoning_content"] == THOUGHT
    else:
        item = next(i for i in body["input"] if i.get("type") == "reasoning")
        assert opaque_ok(item["encrypted_content"])


# ---------------------------------------------------------------- Codex's fields


CODEX_EXTRA: dict[str, Any] = {
    "client_metadata": {"session_id": "0199-abc", "turn_id": "7"},
    "prompt_cache_key": "0199-abc",
    "text": {"verbosity": "low"},
    "parallel_tool_calls": False,
}
CODEX_TOOLS: list[Any] = [
    WEATHER,
    {"type": "web_search", "external_web_access": False},
    {"type": "tool_search", "execution": "client", "description": "Find MCP tools",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ALL)
async def test_codex_fields_never_break_a_request(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake_of(fresh, model).queue(Reply(text="ok"))
    response = await create(
        client, stream, model=model, input="Hi", tools=CODEX_TOOLS,
        include=["reasoning.encrypted_content"], reasoning={"effort": "low"},
        prompt_cache_key=CODEX_EXTRA["prompt_cache_key"], text=CODEX_EXTRA["text"],
        parallel_tool_calls=False,
        extra_body={"client_metadata": CODEX_EXTRA["client_metadata"]},
    )
    assert response.output_text == "ok"
    body = sent(fresh, model)
    if model == "resp-client":  # same protocol: passed through untouched
        assert body["client_metadata"] == CODEX_EXTRA["client_metadata"]
        assert body["prompt_cache_key"] == "0199-abc"
        assert body["text"] == {"verbosity": "low"}
        assert [t["type"] for t in body["tools"]] == ["function", "web_search", "tool_search"]
        return
    raw = json.dumps(body)
    for word in ("client_metadata", "0199-abc", "verbosity", "web_search", "execution",
                 "encrypted_content"):
        assert word not in raw, word
    assert "get_weather" in raw
    # Codex's client-run search reaches every upstream as a plain function of that name.
    assert "tool_search" in raw and "Find MCP tools" in raw


# ---------------------------------------------------------------- pass-through details


async def test_passthrough_keeps_the_body_and_the_stream_bytes(
    fresh: Stack, client: AsyncOpenAI
) -> None:
    fresh.rs.queue(Reply(text="Hello."))
    stream = await client.responses.create(
        model="resp-client", input="Hi", store=False, stream=True,
        extra_body={"client_metadata": {"a": "b"}})
    raw_events = [e async for e in stream]
    check_stream(raw_events)
    got = last(fresh.rs).body
    assert got["model"] == "gpt-resp-up" and got["store"] is False
    assert got["client_metadata"] == {"a": "b"}
    # Pass-through: the upstream's own ids and model come back.
    assert raw_events[-1].response.model == "gpt-resp-up"


async def test_reasoning_from_another_upstream_is_not_sent_to_responses(
    fresh: Stack, client: AsyncOpenAI
) -> None:
    """A turn served by Anthropic carries our envelope in encrypted_content; continuing on a
    Responses upstream must not hand it that blob (it would 404 the item)."""
    fresh.an.queue(Reply(reasoning=THOUGHT, tool_calls=[ToolCall("get_weather", {"city": "X"})]))
    request = {"tools": [WEATHER], "reasoning": {"effort": "medium"}, "max_output_tokens": 9000,
               "include": ["reasoning.encrypted_content"]}
    first = await create(client, False, model="claude-client", input="Weather?", **request)
    call = items(first, "function_call")[0]
    fresh.rs.queue(Reply(text="Done."))
    history = [{"role": "user", "content": "Weather?"}, *echo(first),
               {"type": "function_call_output", "call_id": call.call_id, "output": "hot"}]
    final = await create(client, False, model="resp-client", input=history, **request)
    assert final.output_text == "Done."
    body = sent(fresh, "resp-client")
    assert all(i.get("type") != "reasoning" or opaque_ok(i.get("encrypted_content"))
               for i in body["input"])



# ---------------------------------------------------------------- stream consistency


@pytest.mark.parametrize("model", ALL)
async def test_stream_deltas_add_up_to_the_final_output(
    fresh: Stack, client: AsyncOpenAI, model: str
) -> None:
    """What a client assembles from deltas equals the items of output_item.done and of
    response.completed: reasoning summary, text, and call arguments."""
    fake_of(fresh, model).queue(Reply(
        reasoning=THOUGHT if model in REASONING else None,
        text="Let me check the weather for you.",
        tool_calls=[ToolCall("get_weather", {"city": "Rome"})]))
    events = [e async for e in await client.responses.create(
        model=model, input="Weather in Rome?", tools=[WEATHER], store=False, stream=True,
        reasoning={"effort": "medium", "summary": "auto"}, max_output_tokens=16000,
        include=["reasoning.encrypted_content"])]
    check_stream(events)
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    args = "".join(e.delta for e in events
                   if e.type == "response.function_call_arguments.delta")
    summary = "".join(e.delta for e in events
                      if e.type == "response.reasoning_summary_text.delta")
    assert text == final.output_text == "Let me check the weather for you."
    call = items(final, "function_call")[0]
    assert json.loads(call.arguments) == {"city": "Rome"}
    assert args in ("", call.arguments)  # deltas are optional; when sent, they add up
    if model in REASONING:
        assert THOUGHT in summary or THOUGHT in "".join(
            s.text for s in items(final, "reasoning")[0].summary)
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in done] == [i.type for i in final.output]
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [i.id for i in added] == [i.id for i in done] == [i.id for i in final.output]
