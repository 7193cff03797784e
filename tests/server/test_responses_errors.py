"""Responses clients and errors: failures in OpenAI's error shape with the right status,
fallback, and streams that always end in one terminal event (response.completed, or
response.failed with a reason when the upstream cuts the stream or fails mid-way), with
increasing sequence numbers throughout."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError, RateLimitError
from tests.fakes import Reply

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "authorization": "Bearer client-key"}
UPSTREAMS = {"resp-client": "rs", "claude-client": "an", "gem-client": "ge",
             "gpt-client": "oa", "ds-client": "ds"}
LONG_TEXT = "".join(f"word{i} " for i in range(300))


async def post(stack: Stack, data: Any) -> tuple[int, Any, bytes]:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + "/v1/responses", data=raw, headers=HEADERS
    ) as resp:
        return resp.status, resp.headers, await resp.read()


def request(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "store": False, "input": "Hi"}


def openai_error(raw: bytes) -> dict[str, Any]:
    body = orjson.loads(raw)
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    return error


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), orjson.loads(lines["data"])))
    return out


def check_sequence(got: list[tuple[str, dict[str, Any]]]) -> None:
    for name, data in got:
        assert name == data["type"], (name, data)
    numbers = [data["sequence_number"] for _, data in got]
    assert numbers == sorted(set(numbers)), numbers
    terminal = [n for n, _ in got
                if n in ("response.completed", "response.failed", "response.incomplete")]
    assert len(terminal) == 1 and got[-1][0] == terminal[0], [n for n, _ in got][-4:]


@pytest.fixture
def client_url(fresh: Stack) -> str:
    return fresh.gw.url + "/v1"


# ---------------------------------------------------------------- the client's mistakes


async def test_bad_json(fresh: Stack) -> None:
    status, _, raw = await post(fresh, b'{"model": "resp-client", "input": [')
    assert status == 400
    assert openai_error(raw)["type"] == "invalid_request_error"


async def test_missing_model(fresh: Stack) -> None:
    status, _, raw = await post(fresh, {"input": "Hi", "store": False})
    assert status == 400
    assert openai_error(raw)["param"] == "model"


@pytest.mark.parametrize("model", ["claude-client", "gem-client"])
async def test_bad_input_names_the_field(fresh: Stack, model: str) -> None:
    status, _, raw = await post(fresh, {"model": model, "store": False, "input": [
        {"role": "user", "content": "Hi"},
        {"type": "function_call", "name": "f", "arguments": "{}"},  # no call_id
    ]})
    assert status == 400
    error = openai_error(raw)
    assert error["param"] == "input[1].call_id"
    assert getattr(fresh, UPSTREAMS[model]).requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_unknown_model(fresh: Stack, client_url: str, stream: bool) -> None:
    async with AsyncOpenAI(base_url=client_url, api_key="k", max_retries=0) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.responses.create(model="no-such-model", input="Hi", store=False,
                                          stream=stream)
    assert caught.value.status_code == 404
    assert "no-such-model" in caught.value.message


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_upstream_400_relayed(
    fresh: Stack, client_url: str, model: str, stream: bool
) -> None:
    getattr(fresh, UPSTREAMS[model]).queue(Reply(status=400, error="temperature too high"))
    async with AsyncOpenAI(base_url=client_url, api_key="k", max_retries=0) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.responses.create(model=model, input="Hi", store=False, stream=stream)
    assert "temperature too high" in caught.value.message
    body = caught.value.body
    assert isinstance(body, dict) and body.get("type") == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_429_falls_back_then_exhausts(fresh: Stack, client_url: str, stream: bool) -> None:
    fresh.fa.queue(Reply(status=429, error="a is busy"))
    fresh.fb.queue(Reply(text="From b."))
    async with AsyncOpenAI(base_url=client_url, api_key="k", max_retries=0) as client:
        if stream:
            got = [e async for e in await client.responses.create(
                model="fallback", input="Hi", store=False, stream=True)]
            response = got[-1].response
        else:
            response = await client.responses.create(model="fallback", input="Hi", store=False)
        assert response.output_text == "From b."
        fresh.fa.queue(Reply(status=500, error="a is down"))
        fresh.fb.queue(Reply(status=429, error="b is busy", headers={"retry-after": "3"}))
        with pytest.raises(RateLimitError) as caught:
            await client.responses.create(model="fallback", input="Hi", store=False,
                                          stream=stream)
    assert caught.value.response.headers["retry-after"] == "3"
    assert "b is busy" in caught.value.message


# ---------------------------------------------------------------- streams that fail midway


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_stream_cut_midway_ends_with_response_failed(fresh: Stack, model: str) -> None:
    getattr(fresh, UPSTREAMS[model]).queue(Reply(text=LONG_TEXT, cut_stream_after=8))
    status, _, raw = await post(fresh, request(model, stream=True))
    assert status == 200
    got = events(raw)
    check_sequence(got)
    name, data = got[-1]
    assert name == "response.failed", [n for n, _ in got][-4:]
    error = data["response"]["error"]
    assert error["message"] and error["code"]
    assert data["response"]["status"] == "failed"
    text = "".join(d["delta"] for n, d in got if n == "response.output_text.delta")
    assert text and LONG_TEXT.startswith(text)


async def test_upstream_failed_event_is_relayed(fresh: Stack) -> None:
    shell = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
             "model": "gpt-resp-up", "output": [], "error": None}
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant",
            "content": []}
    failed = {**shell, "status": "failed",
              "error": {"code": "server_error", "message": "The model crashed."}}
    fresh.rs.queue(Reply(raw=[
        {"type": "response.created", "sequence_number": 0, "response": shell},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
         "item": item},
        {"type": "response.failed", "sequence_number": 2, "response": failed},
    ]))
    status, _, raw = await post(fresh, request("resp-client", stream=True))
    assert status == 200
    got = events(raw)
    check_sequence(got)
    assert got[-1][1]["response"]["error"]["message"] == "The model crashed."


async def test_upstream_failed_before_output_is_an_error_status(fresh: Stack) -> None:
    """A response that fails before any output could still go to another target (a fallback
    list would try the next one): with none left, the client hears the error itself."""
    shell = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
             "model": "gpt-resp-up", "output": [], "error": None}
    failed = {**shell, "status": "failed",
              "error": {"code": "server_error", "message": "The model crashed."}}
    fresh.rs.queue(Reply(raw=[
        {"type": "response.created", "sequence_number": 0, "response": shell},
        {"type": "response.failed", "sequence_number": 1, "response": failed},
    ]))
    status, _, raw = await post(fresh, request("resp-client", stream=True))
    assert status >= 500, raw
    assert "The model crashed." in orjson.loads(raw)["error"]["message"]


@pytest.mark.parametrize("model", ["claude-client", "gem-client", "ds-client"])
async def test_translated_stream_with_in_stream_error(fresh: Stack, model: str) -> None:
    """An upstream's own error event after output began becomes response.failed."""
    fake = getattr(fresh, UPSTREAMS[model])
    if model == "claude-client":
        start = {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1}}}
        fake.queue(Reply(raw=[
            start,
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "Partial"}},
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ]))
        reason = "Overloaded"
    elif model == "gem-client":
        fake.queue(Reply(raw=[
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "Partial"}]},
                             "index": 0}], "modelVersion": "gemini-up"},
            {"error": {"code": 503, "message": "The model is overloaded.",
                       "status": "UNAVAILABLE"}},
        ]))
        reason = "The model is overloaded."
    else:
        head = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                "model": "deepseek-reasoner"}
        fake.queue(Reply(raw=[
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                        "content": "Partial"},
                                  "finish_reason": None}]},
            {"error": {"message": "Service busy", "type": "server_error"}},
            "data: [DONE]\n\n",
        ]))
        reason = "Service busy"
    status, _, raw = await post(fresh, request(model, stream=True))
    assert status == 200
    got = events(raw)
    check_sequence(got)
    assert got[-1][0] == "response.failed"
    assert reason in got[-1][1]["response"]["error"]["message"]
    assert last(fake).body is not None


async def test_context_length_code_reaches_codex_style_clients(fresh: Stack) -> None:
    """Codex compacts its history only when a failed response says
    `context_length_exceeded`: an OpenAI upstream's code must survive translation."""
    fresh.oa.queue(Reply(raw={"error": {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error", "param": "messages",
        "code": "context_length_exceeded"}}, status=400))
    async with aiohttp.ClientSession() as session, session.post(
        fresh.gw.url + "/v1/responses",
        json={"model": "gpt-client", "input": "hi", "store": False, "stream": True},
    ) as resp:
        body = await resp.read()
    if resp.status == 200:  # reported in-stream
        assert b"response.failed" in body
        assert b'"code":"context_length_exceeded"' in body
    else:
        assert orjson.loads(body)["error"]["code"] == "context_length_exceeded"
