"""An OpenAI Chat Completions client (the official `openai` SDK) through the gateway against
every upstream type: OpenAI without a preset (passed through), DeepSeek (OpenAI with a
preset: translated), Anthropic, Gemini 3 and OpenAI Responses. Each test checks what the
client gets back and what reached the upstream, in the upstream's own shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError
from tests.fakes import Reply, ToolCall, Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

# Client model name -> the fake behind it.
UPSTREAMS = {
    "gpt-client": "oa",
    "ds-client": "ds",
    "claude-client": "an",
    "gem-client": "ge",
    "resp-client": "rs",
}
ALL = list(UPSTREAMS)
TRANSLATED = [m for m in ALL if m != "gpt-client"]
REASONING = ["ds-client", "claude-client", "gem-client", "resp-client"]

TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]
THOUGHT = "The user asks about the weather; I should call the tool."
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
DATA_URL = "data:image/png;base64," + PNG
IMAGE_URL = "https://example.com/cat.png"


def fake_of(stack: Stack, model: str) -> Any:
    return getattr(stack, UPSTREAMS[model])


def sent(stack: Stack, model: str) -> dict[str, Any]:
    fake = fake_of(stack, model)
    assert fake.rejections == [], fake.rejections
    body: dict[str, Any] = last(fake).body
    return body



async def collect(stream: Any) -> dict[str, Any]:
    """Everything a client assembles from a chat stream."""
    out: dict[str, Any] = {"text": "", "reasoning": "", "finish": None, "usage": None,
                           "usage_chunks": 0, "calls": {}, "chunks": 0}
    async for chunk in stream:
        out["chunks"] += 1
        if chunk.usage is not None:
            out["usage"] = chunk.usage
            out["usage_chunks"] += 1
        for choice in chunk.choices:
            delta = choice.delta
            out["text"] += delta.content or ""
            out["reasoning"] += (delta.model_extra or {}).get("reasoning_content") or ""
            out["finish"] = choice.finish_reason or out["finish"]
            for call in delta.tool_calls or []:
                slot = out["calls"].setdefault(call.index, {"id": "", "name": "", "args": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] = call.function.name or slot["name"]
                    slot["args"] += call.function.arguments or ""
    return out


# ---------------------------------------------------------------- text and usage


@pytest.mark.parametrize("model", ALL)
async def test_completion(fresh: Stack, client: AsyncOpenAI, model: str) -> None:
    fake_of(fresh, model).queue(
        Reply(text="Hi there.", usage=Usage(input_tokens=20, output_tokens=3)))
    done = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=500
    )
    assert done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == "Hi there."
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (20, 3)
    assert done.usage.total_tokens == 23
    sent(fresh, model)


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("model", ALL)
async def test_stream_usage_chunk_only_when_asked(
    fresh: Stack, client: AsyncOpenAI, model: str, include_usage: bool
) -> None:
    text = "A streamed answer in several pieces, long enough to split."
    fake_of(fresh, model).queue(Reply(text=text, usage=Usage(input_tokens=20, output_tokens=8)))
    extra: dict[str, Any] = (
        {"stream_options": {"include_usage": True}} if include_usage else {}
    )
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=500,
        stream=True, **extra,
    )
    got = await collect(stream)
    assert got["text"] == text
    assert got["finish"] == "stop"
    if include_usage:
        assert got["usage_chunks"] == 1
        assert (got["usage"].prompt_tokens, got["usage"].completion_tokens) == (20, 8)
    else:
        assert got["usage_chunks"] == 0
    sent(fresh, model)


# ---------------------------------------------------------------- tools over two turns


def tool_result_upstream(model: str, body: dict[str, Any]) -> tuple[str, str]:
    """(call id or name the result answers, result text) as the upstream received them."""
    if model in ("gpt-client", "ds-client"):
        tool = next(m for m in body["messages"] if m["role"] == "tool")
        return tool["tool_call_id"], str(tool["content"])
    if model == "claude-client":
        block = next(b for b in body["messages"][-1]["content"] if b["type"] == "tool_result")
        content = block["content"]
        text = content if isinstance(content, str) else "".join(c["text"] for c in content)
        return block["tool_use_id"], text
    if model == "gem-client":
        part = next(p for p in body["contents"][-1]["parts"] if "functionResponse" in p)
        return part["functionResponse"]["name"], json.dumps(part["functionResponse"]["response"])
    item = next(i for i in body["input"] if i.get("type") == "function_call_output")
    return item["call_id"], str(item["output"])


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("model", ALL)
async def test_tool_call_two_turns(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake = fake_of(fresh, model)
    # deepseek-reasoner always thinks, and wants its reasoning back on a tool-call turn.
    thought = THOUGHT if model == "ds-client" else None
    fake.queue(Reply(reasoning=thought,
                     tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                 ToolCall("get_weather", {"city": "Lyon"})]),
               Reply(text="Sunny in both."))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    if stream:
        got = await collect(await client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, stream=True))
        finish = got["finish"]
        calls = [(c["id"], c["name"], c["args"]) for _, c in sorted(got["calls"].items())]
    else:
        done = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        finish = done.choices[0].finish_reason
        calls = [(c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
                 for c in done.choices[0].message.tool_calls or []]
    assert finish == "tool_calls"
    assert [(name, json.loads(args)) for _, name, args in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon"})]
    assert all(call_id for call_id, _, _ in calls)
    assert len({call_id for call_id, _, _ in calls}) == 2

    echo = {"reasoning_content": thought} if thought else {}
    messages += [
        {"role": "assistant", "content": None, **echo, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls]},
        {"role": "tool", "tool_call_id": calls[0][0], "content": "sunny, 24C"},
        {"role": "tool", "tool_call_id": calls[1][0], "content": "sunny, 26C"},
    ]
    done = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert done.choices[0].message.content == "Sunny in both."
    answered, text = tool_result_upstream(model, sent(fresh, model))
    assert "sunny, 24C" in text
    if model == "gem-client":
        assert answered == "get_weather"
    elif model in ("gpt-client", "resp-client"):
        assert answered == calls[0][0]  # the upstream's own id, round-tripped
    else:
        assert answered  # ids may be mapped to the upstream's pattern


# ---------------------------------------------------------------- reasoning


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("model", REASONING)
async def test_reasoning_content_returned(
    fresh: Stack, client: AsyncOpenAI, model: str, stream: bool
) -> None:
    fake_of(fresh, model).queue(Reply(reasoning=THOUGHT, text="It is sunny."))
    request: dict[str, Any] = {
        "model": model, "messages": [{"role": "user", "content": "Weather?"}],
        "reasoning_effort": "medium", "max_completion_tokens": 8000,
    }
    if stream:
        got = await collect(await client.chat.completions.create(**request, stream=True))
        reasoning, text = got["reasoning"], got["text"]
    else:
        done = await client.chat.completions.create(**request)
        message = done.choices[0].message
        reasoning, text = (message.model_extra or {}).get("reasoning_content"), message.content
    assert text == "It is sunny."
    assert reasoning == THOUGHT
    sent(fresh, model)


def reasoning_control(model: str, body: dict[str, Any]) -> Any:
    if model == "claude-client":
        return body.get("thinking")
    if model == "gem-client":
        return body.get("generationConfig", {}).get("thinkingConfig")
    if model == "resp-client":
        return body.get("reasoning")
    if model == "ds-client":
        return body.get("thinking") or body.get("reasoning_effort")
    return body.get("reasoning_effort")


@pytest.mark.parametrize("model", ALL)
async def test_reasoning_effort_reaches_the_upstream_control(
    fresh: Stack, client: AsyncOpenAI, model: str
) -> None:
    fake_of(fresh, model).queue(Reply(text="ok"))
    await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Think hard."}],
        reasoning_effort="high", max_completion_tokens=30000,
    )
    control = reasoning_control(model, sent(fresh, model))
    assert control, f"no reasoning control reached {model}"
    if model == "claude-client":
        assert control["type"] in ("enabled", "adaptive")
        if control["type"] == "enabled":
            assert 1024 <= control["budget_tokens"] < 30000
    elif model == "gem-client":
        assert control.get("thinkingBudget", 0) > 0 or control.get("thinkingLevel")
        assert control.get("includeThoughts") is True
    elif model == "resp-client":
        assert control["effort"] == "high"
    elif model == "gpt-client":
        assert control == "high"


# ---------------------------------------------------------------- system, images, limits


def system_texts(model: str, body: dict[str, Any]) -> tuple[list[str], str]:
    """(texts in the upstream's system slot, the whole body as text)."""
    whole = json.dumps(body)
    if model in ("gpt-client", "ds-client"):
        lead = []
        for m in body["messages"]:
            if m["role"] not in ("system", "developer"):
                break
            lead.append(m["content"] if isinstance(m["content"], str)
                        else "".join(p["text"] for p in m["content"]))
        return lead, whole
    if model == "claude-client":
        system = body.get("system") or []
        return ([system] if isinstance(system, str) else [b["text"] for b in system]), whole
    if model == "gem-client":
        parts = (body.get("systemInstruction") or {}).get("parts") or []
        return [p["text"] for p in parts], whole
    instructions = body.get("instructions")
    lead = [instructions] if instructions else []
    for item in body["input"]:
        if item.get("role") not in ("system", "developer"):
            break
        content = item["content"]
        lead.append(content if isinstance(content, str) else "".join(p["text"] for p in content))
    return lead, whole


@pytest.mark.parametrize("model", ALL)
async def test_system_and_developer_messages(
    fresh: Stack, client: AsyncOpenAI, model: str
) -> None:
    fake_of(fresh, model).queue(Reply(text="ok"))
    await client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "RULE-ONE be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "RULE-TWO use French."}]},
        {"role": "user", "content": "Bonjour"},
        {"role": "assistant", "content": "Salut."},
        {"role": "developer", "content": "RULE-THREE now use English."},
        {"role": "user", "content": "Hello again"},
    ])
    lead, whole = system_texts(model, sent(fresh, model))
    joined = "\n".join(lead)
    assert "RULE-ONE" in joined and "RULE-TWO" in joined
    assert joined.index("RULE-ONE") < joined.index("RULE-TWO")
    # The later instruction is never lost.
    assert "RULE-THREE" in whole
    if model == "ds-client":
        # A Chat upstream other than OpenAI gets it folded into the first system message:
        # most chat templates take one (Quirks.system_anywhere).
        assert joined.index("RULE-TWO") < joined.index("RULE-THREE")
    else:  # nor moved before the conversation it follows
        assert whole.index("Salut.") < whole.index("RULE-THREE") < whole.index("Hello again")


def image_upstream(model: str, body: dict[str, Any]) -> Any:
    """The image of the last user turn as the upstream received it."""
    if model in ("gpt-client", "ds-client"):
        return next(p for p in body["messages"][-1]["content"] if p["type"] == "image_url")
    if model == "claude-client":
        return next(b for b in body["messages"][-1]["content"] if b["type"] == "image")
    if model == "gem-client":
        return next(p for p in body["contents"][-1]["parts"] if "text" not in p)
    return next(p for p in body["input"][-1]["content"] if p["type"] == "input_image")


@pytest.mark.parametrize("kind", ["data", "url"])
@pytest.mark.parametrize("model", ALL)
async def test_image_url_reaches_the_upstream_in_its_form(
    fresh: Stack, client: AsyncOpenAI, model: str, kind: str
) -> None:
    url = DATA_URL if kind == "data" else IMAGE_URL
    fake_of(fresh, model).queue(Reply(text="A cat."))
    done = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
    ]}])
    assert done.choices[0].message.content == "A cat."
    body = sent(fresh, model)
    if model == "ds-client":
        # DeepSeek's API takes no images: a note replaces it, so the model knows one was sent.
        assert "image omitted" in json.dumps(body["messages"][-1])
        assert url not in json.dumps(body)
        return
    image = image_upstream(model, body)
    if model == "gpt-client":
        assert image["image_url"]["url"] == url
    elif model == "claude-client":
        source = image["source"]
        if kind == "data":
            assert source == {"type": "base64", "media_type": "image/png", "data": PNG}
        else:
            assert source == {"type": "url", "url": url}
    elif model == "gem-client":
        if kind == "data":
            inline = image.get("inlineData") or image.get("inline_data")
            assert inline["mimeType" if "mimeType" in inline else "mime_type"] == "image/png"
            assert inline["data"] == PNG
        else:
            file = image.get("fileData") or image.get("file_data")
            assert (file.get("fileUri") or file.get("file_uri")) == url
    else:
        assert image["image_url"] == url
        assert image.get("detail") == "high"


def max_tokens_upstream(model: str, body: dict[str, Any]) -> Any:
    if model == "gpt-client":
        return body.get("max_completion_tokens")
    if model == "ds-client":
        return body.get("max_tokens") or body.get("max_completion_tokens")
    if model == "claude-client":
        return body.get("max_tokens")
    if model == "gem-client":
        return body.get("generationConfig", {}).get("maxOutputTokens")
    return body.get("max_output_tokens")


@pytest.mark.parametrize("model", ALL)
async def test_max_completion_tokens(fresh: Stack, client: AsyncOpenAI, model: str) -> None:
    fake_of(fresh, model).queue(Reply(text="ok"))
    await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=777)
    assert max_tokens_upstream(model, sent(fresh, model)) == 777


@pytest.mark.parametrize("model", TRANSLATED)
async def test_n_above_one_is_refused_when_translating(
    fresh: Stack, client: AsyncOpenAI, model: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], n=2)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body.get("param") == "n" or "`n`" in body["message"] or " n " in body["message"]
    assert fake_of(fresh, model).requests == []


async def test_n_passes_through_to_openai(fresh: Stack, client: AsyncOpenAI) -> None:
    fresh.oa.queue(Reply(text="one"))
    await client.chat.completions.create(
        model="gpt-client", messages=[{"role": "user", "content": "Hi"}], n=2)
    assert sent(fresh, "gpt-client")["n"] == 2
