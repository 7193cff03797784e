"""Chat Completions clients and errors: every failure in OpenAI's shape
`{"error":{"message","type","param","code"}}` with the right status, fallback on 429/5xx, and a
stream that fails midway ends with an error chunk, never silently. Also `GET /v1/models`."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI, RateLimitError
from tests.fakes import Reply

from conftest import Stack

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "authorization": "Bearer client-key"}
UPSTREAMS = {"gpt-client": "oa", "ds-client": "ds", "claude-client": "an", "gem-client": "ge",
             "resp-client": "rs"}
LONG_TEXT = "".join(f"word{i} " for i in range(300))


async def post(stack: Stack, data: Any) -> tuple[int, Any, bytes]:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + "/v1/chat/completions", data=raw, headers=HEADERS
    ) as resp:
        return resp.status, resp.headers, await resp.read()


def request(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}


def openai_error(raw: bytes) -> dict[str, Any]:
    """The error object, checked to have exactly OpenAI's keys."""
    body = orjson.loads(raw)
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    return error


def chunks(raw: bytes) -> list[Any]:
    """The data of each SSE frame ("[DONE]" kept as a string)."""
    out: list[Any] = []
    for frame in raw.decode().split("\n\n"):
        for line in frame.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def text_of(raw: bytes, stream: bool) -> str:
    if not stream:
        return str(orjson.loads(raw)["choices"][0]["message"]["content"])
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks(raw)
                   if isinstance(c, dict) and c.get("choices"))


# ---------------------------------------------------------------- the client's mistakes


async def test_bad_json(fresh: Stack) -> None:
    status, headers, raw = await post(fresh, b'{"model": "gpt-client", "messages": [')
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert openai_error(raw)["type"] == "invalid_request_error"


async def test_body_not_an_object(fresh: Stack) -> None:
    status, _, raw = await post(fresh, b"[1, 2]")
    assert status == 400
    assert openai_error(raw)["type"] == "invalid_request_error"


@pytest.mark.parametrize("messages", [None, [], "Hi"], ids=["missing", "empty", "string"])
async def test_missing_or_bad_messages(fresh: Stack, messages: Any) -> None:
    data: dict[str, Any] = {"model": "claude-client"}
    if messages is not None:
        data["messages"] = messages
    status, _, raw = await post(fresh, data)
    assert status == 400
    error = openai_error(raw)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert fresh.an.requests == []


async def test_missing_model(fresh: Stack) -> None:
    status, _, raw = await post(fresh, {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400
    assert openai_error(raw)["param"] == "model"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_unknown_model_is_404(fresh: Stack, stream: bool) -> None:
    status, _, raw = await post(fresh, request("no-such-model", stream))
    assert status == 404
    error = openai_error(raw)
    assert error["type"] == "not_found_error"
    assert "no-such-model" in error["message"]


async def test_unknown_path_is_404_in_openai_shape(fresh: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        fresh.gw.url + "/v1/chat/complete", data=b"{}", headers=HEADERS
    ) as resp:
        status, raw = resp.status, await resp.read()
    assert status == 404
    assert "/v1/chat/completions" in openai_error(raw)["message"]


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_upstream_400_relayed(fresh: Stack, model: str, stream: bool) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(status=400, error="temperature: must be at most 1.0"))
    status, _, raw = await post(fresh, request(model, stream))
    assert status == 400
    error = openai_error(raw)
    assert error["type"] == "invalid_request_error"
    assert "temperature: must be at most 1.0" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("failure", [429, 500])
@pytest.mark.parametrize("route", ["fallback", "gpt-then-claude"])
async def test_retryable_error_falls_back(
    fresh: Stack, route: str, failure: int, stream: bool
) -> None:
    first, second = (fresh.fa, fresh.fb) if route == "fallback" else (fresh.oa, fresh.an)
    first.queue(Reply(status=failure, error="try later"))
    second.queue(Reply(text="Answer from the second."))
    status, headers, raw = await post(fresh, request(route, stream))
    assert status == 200, raw
    assert text_of(raw, stream) == "Answer from the second."
    assert len(first.requests) == 1 and len(second.requests) == 1
    assert headers["x-babelgate-target"].startswith("fb/" if route == "fallback" else "an/")


async def test_exhausted_fallback_gives_the_last_error(fresh: Stack) -> None:
    fresh.fa.queue(Reply(status=500, error="a is down"))
    fresh.fb.queue(Reply(status=429, error="b is busy", headers={"retry-after": "7"}))
    async with AsyncOpenAI(base_url=fresh.gw.url + "/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.chat.completions.create(
                model="fallback", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert "b is busy" in caught.value.message


# ---------------------------------------------------------------- streams that fail midway


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_stream_cut_midway_ends_with_an_error_chunk(fresh: Stack, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text=LONG_TEXT, cut_stream_after=8))
    status, _, raw = await post(fresh, request(model, stream=True))
    assert status == 200
    got = chunks(raw)
    assert got, raw
    errors = [c for c in got if isinstance(c, dict) and "error" in c]
    assert len(errors) == 1, got[-3:]
    error = errors[0]["error"]
    assert error["message"] and error["type"]
    # Nothing after the error but [DONE]; no finish_reason "stop" pretending all went well.
    assert got.index(errors[0]) >= len(got) - 2
    finishes = [c["choices"][0].get("finish_reason") for c in got
                if isinstance(c, dict) and c.get("choices")]
    assert "stop" not in finishes
    # The text before the cut did reach the client.
    assert LONG_TEXT.startswith(text_of(raw, True)) and text_of(raw, True)


async def test_openai_error_chunk_midstream_is_relayed(fresh: Stack) -> None:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "ds"}
    fresh.ds.queue(Reply(raw=[
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                              "finish_reason": None}]},
        {"error": {"message": "upstream overloaded mid-way", "type": "server_error",
                   "param": None, "code": None}},
        "data: [DONE]\n\n",
    ]))
    status, _, raw = await post(fresh, request("ds-client", stream=True))
    assert status == 200
    got = chunks(raw)
    errors = [c for c in got if isinstance(c, dict) and "error" in c]
    assert len(errors) == 1
    assert "upstream overloaded mid-way" in errors[0]["error"]["message"]


# ---------------------------------------------------------------- models


async def test_models_in_openai_shape(fresh: Stack) -> None:
    async with AsyncOpenAI(base_url=fresh.gw.url + "/v1", api_key="k", max_retries=0) as client:
        page = await client.models.list()
    ids = [m.id for m in page.data]
    assert {"gpt-client", "claude-client", "gem-client", "resp-client", "fallback"} <= set(ids)
    assert all(m.object == "model" and m.owned_by for m in page.data)
    async with aiohttp.ClientSession() as session, session.get(
        fresh.gw.url + "/v1/models", headers={"authorization": "Bearer k"}
    ) as resp:
        body = await resp.json()
    assert body["object"] == "list"
    assert "has_more" not in body
