"""Upstream failures as an Anthropic client sees them: error shapes, fallback, streams cut
short, clients that leave, and credentials that must never leak."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import SHORT_TIMEOUT, Stack

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}
UPSTREAMS = {"gpt-client": "oa", "ds-client": "ds", "claude-client": "an", "gem-client": "ge"}
LONG_TEXT = "".join(f"word{i} " for i in range(300))  # ~150 stream events of 12 characters


def request(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1000, "stream": stream,
            "messages": [{"role": "user", "content": "Hi"}]}


async def post(stack: Stack, data: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gw.url + "/v1/messages", data=orjson.dumps(data), headers=HEADERS
    ) as resp:
        return resp.status, await resp.read()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), orjson.loads(lines["data"])))
    return out


def text_of(raw: bytes, stream: bool) -> str:
    if not stream:
        return "".join(b["text"] for b in orjson.loads(raw)["content"] if b["type"] == "text")
    return "".join(d["delta"]["text"] for e, d in sse_events(raw)
                   if e == "content_block_delta" and d["delta"]["type"] == "text_delta")


# ---------------------------------------------------------------- upstream error statuses


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_upstream_400_keeps_status_shape_and_message(
    fresh: Stack, model: str, stream: bool
) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(status=400, error="temperature: must be at most 1.0"))
    status, raw = await post(fresh, request(model, stream))
    assert status == 400
    body = orjson.loads(raw)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "temperature: must be at most 1.0" in body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("failure", [429, 500, 503])
async def test_retryable_error_falls_back_to_the_next_target(
    fresh: Stack, failure: int, stream: bool
) -> None:
    fresh.fa.queue(Reply(status=failure, error="try later"))
    fresh.fb.queue(Reply(text="Answer from b."))
    status, raw = await post(fresh, request("fallback", stream))
    assert status == 200, raw
    assert text_of(raw, stream) == "Answer from b."
    assert len(fresh.fa.requests) == 1
    assert len(fresh.fb.requests) == 1
    assert fresh.fb.requests[0].body["model"] == "model-b"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_connection_refused_falls_back(fresh: Stack, stream: bool) -> None:
    fresh.fb.queue(Reply(text="Answer from b."))
    status, raw = await post(fresh, request("fallback-refused", stream))
    assert status == 200, raw
    assert text_of(raw, stream) == "Answer from b."
    assert len(fresh.fb.requests) == 1


async def test_client_error_does_not_fall_back(fresh: Stack) -> None:
    fresh.fa.queue(Reply(status=400, error="bad tool schema"))
    status, raw = await post(fresh, request("fallback"))
    assert status == 400
    assert "bad tool schema" in orjson.loads(raw)["error"]["message"]
    assert fresh.fb.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_fallback_exhausted_gives_the_last_error(fresh: Stack, stream: bool) -> None:
    fresh.fa.queue(Reply(status=429, error="a is rate limited"))
    fresh.fb.queue(Reply(status=503, error="b is overloaded"))
    status, raw = await post(fresh, request("fallback", stream))
    assert status == 503
    body = orjson.loads(raw)
    assert body["type"] == "error"
    assert "b is overloaded" in body["error"]["message"]
    assert len(fresh.fa.requests) == 1 and len(fresh.fb.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_fallback_from_pass_through_to_translation(fresh: Stack, stream: bool) -> None:
    fresh.an.queue(Reply(status=529, error="Overloaded"))
    fresh.oa.queue(Reply(text="From OpenAI."))
    status, raw = await post(fresh, request("claude-then-gpt", stream))
    assert status == 200, raw
    assert text_of(raw, stream) == "From OpenAI."
    assert len(fresh.an.requests) == 1 and len(fresh.oa.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_fallback_from_translation_to_pass_through(fresh: Stack, stream: bool) -> None:
    fresh.oa.queue(Reply(status=500, error="boom"))
    fresh.an.queue(Reply(text="From Claude."))
    status, raw = await post(fresh, request("gpt-then-claude", stream))
    assert status == 200, raw
    assert text_of(raw, stream) == "From Claude."
    assert len(fresh.oa.requests) == 1 and len(fresh.an.requests) == 1
    assert fresh.an.requests[0].body == {**request("gpt-then-claude", stream),
                                         "model": "claude-up"}


async def test_error_event_opening_a_pass_through_stream_falls_back(fresh: Stack) -> None:
    # Anthropic can answer 200 and then send `event: error` (overloaded) before anything
    # else: nothing has reached the client yet, so the next target should serve it.
    fresh.an.queue(Reply(raw=[
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]))
    fresh.oa.queue(Reply(text="From OpenAI."))
    status, raw = await post(fresh, request("claude-then-gpt", stream=True))
    assert status == 200, raw
    assert text_of(raw, True) == "From OpenAI."
    assert len(fresh.oa.requests) == 1


@pytest.mark.parametrize("route", ["claude-then-gpt", "gpt-then-claude"])
async def test_empty_stream_falls_back(fresh: Stack, route: str) -> None:
    first, second = (fresh.an, fresh.oa) if route == "claude-then-gpt" else (fresh.oa, fresh.an)
    first.queue(Reply(raw=[]))  # 200, event-stream, and not one event
    second.queue(Reply(text="From the second."))
    status, raw = await post(fresh, request(route, stream=True))
    assert status == 200, raw
    assert text_of(raw, True) == "From the second."
    assert len(first.requests) == 1 and len(second.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_rate_limit_keeps_the_upstreams_retry_after(fresh: Stack, stream: bool) -> None:
    # The SDKs (and so Claude Code, Codex) wait as long as `retry-after` says.
    fresh.oa.queue(Reply(status=429, error="Rate limit reached", headers={"retry-after": "7"}))
    async with aiohttp.ClientSession() as session, session.post(
        fresh.gw.url + "/v1/messages", data=orjson.dumps(request("gpt-client", stream)),
        headers=HEADERS,
    ) as resp:
        assert resp.status == 429
        assert resp.headers.get("retry-after") == "7"
        body = await resp.json()
    assert body["error"]["type"] == "rate_limit_error"
    assert "Rate limit reached" in body["error"]["message"]


# ---------------------------------------------------------------- streams that end badly


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_stream_cut_midway_ends_with_an_error_event(fresh: Stack, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text=LONG_TEXT, cut_stream_after=6))
    status, raw = await post(fresh, request(model, stream=True))
    assert status == 200  # the stream had started
    events = sse_events(raw)
    names = [e for e, _ in events]
    assert "content_block_delta" in names  # some content made it
    assert names[-1] == "error", names[-5:]
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["message"]
    assert "message_stop" not in names  # never a silent, complete-looking end


@pytest.mark.parametrize("model", ["gpt-client", "claude-client"])
async def test_client_disconnect_closes_the_upstream(fresh: Stack, model: str) -> None:
    fake = getattr(fresh, UPSTREAMS[model])
    fake.queue(Reply(text=LONG_TEXT, chunk_delay=0.02))  # ~3 s if read to the end
    async with aiohttp.ClientSession() as session:
        resp = await session.post(fresh.gw.url + "/v1/messages",
                                  data=orjson.dumps(request(model, stream=True)), headers=HEADERS)
        assert resp.status == 200
        first = await resp.content.readany()
        assert b"message_start" in first
        resp.close()  # the client goes away mid-stream
    deadline = time.monotonic() + 2.5
    while not fake.stream_endings and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert fake.stream_endings == ["closed"]
    # The gateway is still healthy and serves the next request.
    fake.queue(Reply(text="Still here."))
    status, raw = await post(fresh, request(model))
    assert status == 200 and text_of(raw, False) == "Still here."


# ---------------------------------------------------------------- timeouts


async def test_silent_upstream_times_out_and_falls_back(fresh: Stack) -> None:
    fresh.oa.queue(Reply(text="Too late.", delay=SHORT_TIMEOUT * 2))
    fresh.fb.queue(Reply(text="In time."))
    status, raw = await post(fresh, request("gpt-short-timeout"))
    assert status == 200, raw
    assert text_of(raw, False) == "In time."


async def test_a_long_but_lively_stream_is_not_cut_by_the_timeout(fresh: Stack) -> None:
    # The provider timeout bounds silence, not the length of a stream: agents stream for
    # many minutes. ~10 events, 0.25 s apart: 2.5 s in all, never 0.6 s of silence.
    text = "x" * 12 * 10
    fresh.oa.queue(Reply(text=text, chunk_delay=SHORT_TIMEOUT / 2.4))
    status, raw = await post(fresh, request("gpt-short-timeout", stream=True))
    assert status == 200
    assert [e for e, _ in sse_events(raw)][-1] == "message_stop", raw[-300:]
    assert text_of(raw, True) == text
    assert fresh.fb.requests == []


async def test_client_leaving_a_slow_non_streamed_request(fresh: Stack) -> None:
    fresh.oa.queue(Reply(text="Too late for anyone.", delay=1.0))
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(fresh.gw.url + "/v1/messages",
                                    data=orjson.dumps(request("gpt-client")), headers=HEADERS):
                pass
    fresh.oa.queue(Reply(text="Next."))
    status, raw = await post(fresh, request("gpt-client"))
    assert status == 200 and text_of(raw, False) == "Next."
    assert "Traceback" not in fresh.gw.log()
