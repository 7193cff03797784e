"""A Gemini client (the Gemini API inbound) through the gateway, over real HTTP, to each
upstream family: Gemini itself (passed through), Anthropic, OpenAI Chat and OpenAI Responses
(translated). Plain and streamed (SSE with `alt=sse`, and the JSON array without), tool calls
over two turns with thought signatures, errors in Gemini's shape, and the client's key never
reaching an upstream or the log."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply, ToolCall, Usage

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

# Client model name -> the fake behind it (tests/server/conftest.py ROUTES).
UPSTREAMS = {"gem-client": "ge", "claude-client": "an", "gpt-client": "oa",
             "resp-client": "rs"}
CLIENT_KEY = "AIza-CLIENT-KEY-a1b2"  # must never reach an upstream or the log
HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
TOOLS = [{"functionDeclarations": [{
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                   "required": ["city"]},
}]}]
THINKING = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048},
            "maxOutputTokens": 8192}


def url(stack: Stack, model: str, action: str, query: str = "") -> str:
    return f"{stack.gw.url}/v1beta/models/{model}:{action}{query}"


async def post(target: str, body: Any, **headers: str) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session, session.post(
        target, data=data,
        headers={"content-type": "application/json", "x-goog-api-key": CLIENT_KEY, **headers},
    ) as resp:
        raw = await resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
        return resp.status, orjson.loads(raw) if raw else None, headers


async def post_sse(target: str, body: Any) -> list[Any]:
    """The `data:` chunks of an SSE answer."""
    async with aiohttp.ClientSession() as session, session.post(
        target, data=orjson.dumps(body),
        headers={"content-type": "application/json", "x-goog-api-key": CLIENT_KEY},
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    return [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


def parts_of(chunks: list[Any]) -> list[Any]:
    return [p for c in chunks for cand in c.get("candidates", [])
            for p in cand.get("content", {}).get("parts", [])]


def text_of(chunks: list[Any]) -> str:
    return "".join(p.get("text", "") for p in parts_of(chunks) if not p.get("thought"))


def upstream_model(fake_name: str) -> str:
    return {"ge": "gemini-up", "an": "claude-up", "oa": "gpt-up", "rs": "gpt-resp-up"}[fake_name]


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_generate_content(fresh: Stack, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text="Hi there.", usage=Usage(input_tokens=20, output_tokens=3)))
    status, body, headers = await post(url(fresh, model, "generateContent"), {
        **HELLO, "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100},
    })
    assert status == 200, body
    candidate = body["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert text_of([body]) == "Hi there."
    assert candidate["finishReason"] == "STOP"
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == 20 and usage["candidatesTokenCount"] == 3
    assert usage["totalTokenCount"] == 23
    assert headers["x-babelgate-target"] == f"{UPSTREAMS[model]}/{upstream_model(UPSTREAMS[model])}"
    sent = last(fake)
    assert "Be brief." in orjson.dumps(sent.body).decode()
    if model == "gem-client":  # passed through: the body as the client sent it, model in URL
        assert sent.path == "/v1beta/models/gemini-up:generateContent"
        assert sent.body["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 100}
        assert "model" not in sent.body
    else:
        assert sent.body["model"] == upstream_model(UPSTREAMS[model])


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_stream_sse(fresh: Stack, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    text = "A streamed answer in several pieces."
    fake.queue(Reply(text=text, usage=Usage(input_tokens=20, output_tokens=8)))
    chunks = await post_sse(url(fresh, model, "streamGenerateContent", "?alt=sse"), HELLO)
    assert text_of(chunks) == text
    finals = [c for c in chunks if c["candidates"][0].get("finishReason")]
    assert finals and finals[-1]["candidates"][0]["finishReason"] == "STOP"
    usage = chunks[-1]["usageMetadata"]
    assert usage["promptTokenCount"] == 20 and usage["candidatesTokenCount"] == 8
    if model == "gem-client":
        assert last(fake).path == "/v1beta/models/gemini-up:streamGenerateContent"
        assert last(fake).query == {"alt": "sse"}


@pytest.mark.parametrize("model", ["gem-client", "claude-client"])
async def test_stream_json_array(fresh: Stack, model: str) -> None:
    """Without `alt=sse` the stream is one JSON array of the same chunks."""
    fake = getattr(fresh, UPSTREAMS[model])
    text = "An answer framed as a JSON array."
    fake.queue(Reply(text=text, usage=Usage(input_tokens=7, output_tokens=9)))
    async with aiohttp.ClientSession() as session, session.post(
        url(fresh, model, "streamGenerateContent"), data=orjson.dumps(HELLO),
        headers={"content-type": "application/json", "x-goog-api-key": CLIENT_KEY},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "application/json"
        raw = await resp.read()
    chunks = orjson.loads(raw)
    assert isinstance(chunks, list) and len(chunks) >= 2
    assert raw.startswith(b"[{") and b"\n,\r\n{" not in raw[:2]
    assert text_of(chunks) == text
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 9


async def tool_turns(stack: Stack, model: str, stream: bool) -> tuple[list[Any], Any]:
    """Turn 1: the model thinks and calls get_weather; turn 2: the client sends the model's
    parts back as it got them, with the function's response. Returns the model parts of
    turn 1 and the fake's second request."""
    fake = getattr(stack, UPSTREAMS[model])
    fake.queue(Reply(reasoning="The user wants weather; call the tool.",
                     tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
               Reply(text="Sunny in Paris."))
    first: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "tools": TOOLS, "generationConfig": THINKING,
    }
    if stream:
        chunks = await post_sse(url(stack, model, "streamGenerateContent", "?alt=sse"), first)
        parts = parts_of(chunks)
        finish = [c["candidates"][0].get("finishReason") for c in chunks]
        assert "STOP" in finish
    else:
        status, body, _ = await post(url(stack, model, "generateContent"), first)
        assert status == 200, body
        parts = body["candidates"][0]["content"]["parts"]
        assert body["candidates"][0]["finishReason"] == "STOP"
    calls = [p for p in parts if "functionCall" in p]
    assert len(calls) == 1, parts
    call = calls[0]["functionCall"]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    second = {**first, "contents": [
        *first["contents"],
        {"role": "model", "parts": parts},
        {"role": "user", "parts": [{"functionResponse": {
            "id": call.get("id"), "name": "get_weather",
            "response": {"output": "sunny, 24C"}}}]},
    ]}
    status, body, _ = await post(url(stack, model, "generateContent"), second)
    assert status == 200, body
    assert text_of([body]) == "Sunny in Paris."
    assert fake.rejections == []
    return parts, last(fake)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_tool_call_two_turns(fresh: Stack, model: str, stream: bool) -> None:
    parts, sent = await tool_turns(fresh, model, stream)
    assert "sunny, 24C" in orjson.dumps(sent.body).decode()
    thoughts = [p for p in parts if p.get("thought")]
    if model in ("gem-client", "claude-client", "resp-client"):
        # The upstream's reasoning reached the client as a thought part...
        assert "call the tool" in "".join(p.get("text", "") for p in thoughts), parts
    signed = [p for p in parts if p.get("thoughtSignature")]
    if model == "gem-client":
        # ...and Gemini 3's signature on the call came back to it (the fake checks it).
        call_part = next(p for p in parts if "functionCall" in p)
        assert call_part.get("thoughtSignature")
        sent_calls = [p for c in sent.body["contents"] for p in c["parts"] if "functionCall" in p]
        assert sent_calls[0]["thoughtSignature"] == call_part["thoughtSignature"]
    elif model == "claude-client":
        # Anthropic's thinking signature rode in thoughtSignature and went back as it was
        # (the fake verifies it against the thinking text).
        assert signed, parts
        blocks = [b for m in sent.body["messages"] if m["role"] == "assistant"
                  for b in m["content"] if isinstance(b, dict)]
        assert [b["type"] for b in blocks][:1] == ["thinking"], blocks
        assert blocks[0]["signature"]


async def test_parallel_calls_answered_in_order(fresh: Stack) -> None:
    """Two calls in one turn, answered by responses without ids: matched by name and order."""
    fresh.an.queue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                     ToolCall("get_weather", {"city": "Rome"})]),
                   Reply(text="Both sunny."))
    first = {"contents": [{"role": "user", "parts": [{"text": "Paris and Rome?"}]}],
             "tools": TOOLS}
    status, body, _ = await post(url(fresh, "claude-client", "generateContent"), first)
    assert status == 200, body
    parts = body["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["args"]["city"] for p in parts if "functionCall" in p] == [
        "Paris", "Rome"]
    answers = [{"functionResponse": {"name": "get_weather", "response": {"output": city}}}
               for city in ("sunny in Paris", "sunny in Rome")]
    second = {**first, "contents": [*first["contents"], {"role": "model", "parts": parts},
                                    {"role": "user", "parts": answers}]}
    status, body, _ = await post(url(fresh, "claude-client", "generateContent"), second)
    assert status == 200, body
    messages = last(fresh.an).body["messages"]
    uses = [b["id"] for b in messages[1]["content"] if b["type"] == "tool_use"]
    results = [(b["tool_use_id"], str(b["content"])) for b in messages[2]["content"]
               if b["type"] == "tool_result"]
    assert [r[0] for r in results] == uses
    assert "Paris" in results[0][1] and "Rome" in results[1][1]


async def test_inline_image_reaches_upstream(fresh: Stack) -> None:
    fresh.oa.queue(Reply(text="A red dot."))
    body = {"contents": [{"role": "user", "parts": [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}]}
    status, answer, _ = await post(url(fresh, "gpt-client", "generateContent"), body)
    assert status == 200, answer
    content = last(fresh.oa).body["messages"][-1]["content"]
    assert any(p.get("type") == "image_url"
               and p["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
               for p in content), content


async def test_thinking_budget_reaches_anthropic(fresh: Stack) -> None:
    fresh.an.queue(Reply(text="ok"))
    status, body, _ = await post(url(fresh, "claude-client", "generateContent"),
                                 {**HELLO, "generationConfig": THINKING})
    assert status == 200, body
    sent = last(fresh.an).body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 8192


async def test_client_key_stays_behind(fresh: Stack) -> None:
    """`x-goog-api-key` and `?key=` are the client's; upstreams get their own key only."""
    for model, fake_name in UPSTREAMS.items():
        fake = getattr(fresh, fake_name)
        fake.queue(Reply(text="ok"))
        status, body, _ = await post(
            url(fresh, model, "generateContent", f"?key={CLIENT_KEY}"), HELLO)
        assert status == 200, body
        sent = last(fake)
        assert CLIENT_KEY not in orjson.dumps(
            [sent.path, sent.query, sent.headers, sent.body]).decode()
    assert CLIENT_KEY not in fresh.gw.log()


async def test_errors_in_gemini_shape(fresh: Stack) -> None:
    status, body, _ = await post(url(fresh, "no-such-model", "generateContent"), HELLO)
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    assert body["error"]["code"] == 404 and "no-such-model" in body["error"]["message"]
    status, body, _ = await post(url(fresh, "claude-client", "generateContent"),
                                 {"contents": "hello"})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents" in body["error"]["message"]
    status, body, _ = await post(url(fresh, "claude-client", "generateContent"), b"{not json")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    status, body, _ = await post(url(fresh, "claude-client", "embedContent"), HELLO)
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    fresh.an.queue(Reply(status=429, error="slow down", headers={"retry-after": "3"}))
    status, body, headers = await post(url(fresh, "claude-client", "generateContent"), HELLO)
    assert status == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "slow down" in body["error"]["message"] and headers.get("retry-after") == "3", headers
    fresh.ge.queue(Reply(status=400, error="Invalid JSON payload received."))
    status, body, _ = await post(url(fresh, "gem-client", "generateContent"), HELLO)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "Invalid JSON payload" in body["error"]["message"]


async def test_stream_error_before_start(fresh: Stack) -> None:
    fresh.oa.queue(Reply(status=400, error="bad thing"))
    status, body, _ = await post(
        url(fresh, "gpt-client", "streamGenerateContent", "?alt=sse"), HELLO)
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "bad thing" in body["error"]["message"]


async def test_count_tokens(fresh: Stack) -> None:
    for model in ("gem-client", "claude-client", "gpt-client"):
        status, body, headers = await post(url(fresh, model, "countTokens"), HELLO)
        assert status == 200, body
        assert body["totalTokens"] > 0
        expected = "estimate" if model == "gpt-client" else "upstream"
        assert headers["x-babelgate-token-count"] == expected
    wrapped = {"generateContentRequest": {"model": "models/gem-client", **HELLO}}
    status, body, _ = await post(url(fresh, "claude-client", "countTokens"), wrapped)
    assert status == 200 and body["totalTokens"] > 0


async def test_models(fresh: Stack) -> None:
    async with aiohttp.ClientSession(headers={"x-goog-api-key": CLIENT_KEY}) as session:
        async with session.get(fresh.gw.url + "/v1beta/models") as resp:
            assert resp.status == 200
            listed = await resp.json()
        async with session.get(fresh.gw.url + "/v1beta/models/gem-client") as resp:
            assert resp.status == 200
            one = await resp.json()
        async with session.get(fresh.gw.url + "/v1beta/models/nope") as resp:
            assert resp.status == 404
            missing = await resp.json()
        async with session.get(fresh.gw.url + "/v1/models") as resp:  # SDK on api_version v1
            assert resp.status == 200
            v1 = await resp.json()
    names = [m["name"] for m in listed["models"]]
    assert "models/gem-client" in names and "models/claude-client" in names
    assert one["name"] == "models/gem-client"
    assert "generateContent" in one["supportedGenerationMethods"]
    assert missing["error"]["status"] == "NOT_FOUND"
    assert [m["name"] for m in v1["models"]] == names


async def test_v1_path_and_models_prefix(fresh: Stack) -> None:
    """`/v1/` works like `/v1beta/`, and a doubled `models/` prefix names the same model."""
    fresh.an.queue(Reply(text="one"), Reply(text="two"))
    status, body, _ = await post(
        f"{fresh.gw.url}/v1/models/claude-client:generateContent", HELLO)
    assert status == 200 and text_of([body]) == "one"
    status, body, _ = await post(
        f"{fresh.gw.url}/v1beta/models/models%2Fclaude-client:generateContent", HELLO)
    assert status == 200 and text_of([body]) == "two"
