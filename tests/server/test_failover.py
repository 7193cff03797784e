"""Failover over real HTTP against fault-injecting fakes: a subscription whose quota runs out
hands its requests to a pay-as-you-go fallback, `/v1/quota` says so, the subscription comes
back when its window resets and the state outlives a restart; retries hit the same target,
then the next; a 400 is never retried."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import Gateway, GatewayFactory, stop_process
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply

pytestmark = [pytest.mark.gateway]

ANTHROPIC = {"content-type": "application/json", "x-api-key": "client-key",
             "anthropic-version": "2023-06-01"}
ROUTES: dict[str, Any] = {"claude-*": ["sub/claude-up", "payg/gpt-up"]}
TWO: dict[str, Any] = {"m": ["a/model-a", "b/model-b"]}


def message(stream: bool = False, text: str = "Hi") -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": text}]}


async def call(gw: Gateway, method: str, path: str, data: Any = None,
               raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    body = raw if raw is not None else (orjson.dumps(data) if data is not None else None)
    async with aiohttp.ClientSession() as session, session.request(
        method, gw.url + path, data=body, headers=ANTHROPIC
    ) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def quota(gw: Gateway) -> dict[str, dict[str, Any]]:
    status, _, raw = await call(gw, "GET", "/v1/quota")
    assert status == 200, raw
    return {p["name"]: p for p in orjson.loads(raw)["providers"]}


def text_of(raw: bytes) -> str:
    data = orjson.loads(raw)
    return "".join(block.get("text", "") for block in data["content"])


async def start(factory: GatewayFactory, sub: FakeAnthropic, payg: FakeOpenAI, db: Path,
                window: str, **extra: Any) -> Gateway:
    upstreams = {"sub": sub.provider_config(quota={"window": window}),
                 "payg": payg.provider_config()}
    return await factory(upstreams, routes=ROUTES,
                         extra={"storage": {"path": str(db)}, **extra})


async def test_used_up_subscription_fails_over_and_comes_back(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    gw = await start(gateway_factory, fake_anthropic, fake_openai, tmp_path / "state.db", "2s")
    fake_anthropic.queue(Reply(status=402, error="Your credit balance is too low."))
    fake_openai.queue(Reply(text="From pay-as-you-go."), Reply(text="Again from it."))

    status, headers, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 200, raw
    assert text_of(raw) == "From pay-as-you-go."
    assert headers["x-babelgate-target"] == "payg/gpt-up"
    refused_at = time.time()

    state = await quota(gw)
    assert state["sub"]["state"] == "exhausted"
    assert "credit balance is too low" in state["sub"]["reason"]
    assert state["payg"] == {"name": "payg", "state": "ok", "since": None, "resets_at": None,
                             "reason": None}
    resets = orjson.loads(orjson.dumps(state["sub"]["resets_at"]))
    assert abs(_unix(resets) - (refused_at + 2)) < 1.5

    # While used up, the subscription is not asked at all.
    status, headers, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 200 and text_of(raw) == "Again from it."
    assert len(fake_anthropic.requests) == 1

    # (the time shown is rounded to the second)
    await asyncio.sleep(max(0.0, _unix(resets) - time.time()) + 0.7)
    fake_anthropic.queue(Reply(text="Back on the subscription."))
    status, headers, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 200 and text_of(raw) == "Back on the subscription."
    assert headers["x-babelgate-target"] == "sub/claude-up"
    assert (await quota(gw))["sub"]["state"] == "ok"
    for key in (fake_anthropic.api_key, fake_openai.api_key):
        assert key not in gw.log()


async def test_quota_state_survives_a_restart_and_resets_by_hand(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    gw = await start(gateway_factory, fake_anthropic, fake_openai, db, "weekly")
    fake_anthropic.queue(Reply(status=429, error="Claude AI usage limit reached",
                               headers={"anthropic-ratelimit-unified-status": "rejected",
                                        "anthropic-ratelimit-unified-reset": "1900000000"}))
    status, _, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 200, raw
    before = (await quota(gw))["sub"]
    assert before["state"] == "exhausted"
    assert before["resets_at"] == "2030-03-17T17:46:40Z"  # the upstream's own reset wins
    await stop_process(gw.process)

    again = await start(gateway_factory, fake_anthropic, fake_openai, db, "weekly")
    assert (await quota(again))["sub"] == before
    status, headers, raw = await call(again, "POST", "/v1/messages", message())
    assert status == 200 and headers["x-babelgate-target"] == "payg/gpt-up"
    assert len(fake_anthropic.requests) == 1

    # Bad input to the reset endpoint, in OpenAI's error format.
    status, _, raw = await call(again, "POST", "/v1/quota/reset", {"provider": "nope"})
    assert status == 404
    error = orjson.loads(raw)["error"]
    assert "nope" in error["message"] and error["type"] == "not_found_error"
    status, _, raw = await call(again, "POST", "/v1/quota/reset", raw=b"{not json")
    assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = await call(again, "POST", "/v1/quota/reset", {"provider": 3})
    assert status == 400

    status, _, raw = await call(again, "POST", "/v1/quota/reset", {"provider": "sub"})
    assert status == 200, raw
    answer = orjson.loads(raw)
    assert answer["reset"] == ["sub"]
    assert {p["name"]: p["state"] for p in answer["providers"]} == {"sub": "ok", "payg": "ok"}
    status, headers, raw = await call(again, "POST", "/v1/messages", message())
    assert status == 200 and headers["x-babelgate-target"] == "sub/claude-up"
    await stop_process(again.process)

    # Reset by hand is kept too.
    third = await start(gateway_factory, fake_anthropic, fake_openai, db, "weekly")
    assert (await quota(third))["sub"]["state"] == "ok"


async def test_only_target_used_up_answers_with_a_quota_error(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, tmp_path: Path,
) -> None:
    upstreams = {"sub": fake_anthropic.provider_config(quota={"window": "daily"})}
    gw = await gateway_factory(upstreams, routes={"claude-*": "sub/claude-up"},
                               extra={"storage": {"path": str(tmp_path / "s.db")}})
    fake_anthropic.queue(Reply(status=402, error="Your credit balance is too low."))
    status, headers, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 429
    body = orjson.loads(raw)
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "quota used up" in body["error"]["message"] and "sub until" in body["error"]["message"]
    assert int(headers["retry-after"]) > 0
    # Which route failed is said on the error too, for streams and whole answers alike.
    assert headers["x-babelgate-route"] == "route:claude-*"
    assert "x-babelgate-target" not in headers  # no target served it
    status, headers, raw = await call(gw, "POST", "/v1/messages", message(stream=True))
    assert status == 429 and b"quota used up" in raw
    assert headers["x-babelgate-route"] == "route:claude-*"
    assert len(fake_anthropic.requests) == 1  # not asked again


@pytest.mark.parametrize("stated", ["1e12", "inf"])
async def test_an_absurd_retry_after_on_a_used_up_quota_falls_back_to_the_window(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI,
    tmp_path: Path, stated: str,
) -> None:
    gw = await start(gateway_factory, fake_anthropic, fake_openai, tmp_path / "state.db", "1h")
    fake_anthropic.queue(Reply(status=402, error="Your credit balance is too low.",
                               headers={"retry-after": stated}))
    fake_openai.queue(Reply(text="From pay-as-you-go."))
    status, headers, raw = await call(gw, "POST", "/v1/messages", message())
    assert status == 200, raw
    assert headers["x-babelgate-target"] == "payg/gpt-up"
    state = (await quota(gw))["sub"]
    assert state["state"] == "exhausted"
    assert abs(_unix(state["resets_at"]) - (time.time() + 3600)) < 5


async def test_retries_hit_the_same_target_then_the_next(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    async with FakeOpenAI(api_key="sk-a") as first, FakeOpenAI(api_key="sk-b") as second:
        gw = await gateway_factory(
            {"a": first, "b": second}, routes=TWO,
            extra={"retry": {"attempts": 3, "backoff": 0.05, "max_backoff": 1}})
        # Twice overloaded, then an answer: the same target serves it.
        first.queue(Reply(status=503, error="busy"), Reply(status=429, error="slow",
                    headers={"retry-after": "0.1"}), Reply(text="Third time."))
        status, _, raw = await call(gw, "POST", "/v1/messages", {**message(), "model": "m"})
        assert status == 200 and text_of(raw) == "Third time."
        assert len(first.requests) == 3 and second.requests == []

        # Three failures use up the attempts: the next target answers.
        first.requests.clear()
        first.queue(*[Reply(status=500, error="boom")] * 3)
        second.queue(Reply(text="From b."))
        status, headers, raw = await call(gw, "POST", "/v1/messages",
                                          {**message(stream=True), "model": "m"})
        assert status == 200 and b"From b." in raw
        assert headers["x-babelgate-target"] == "b/model-b"
        assert len(first.requests) == 3 and len(second.requests) == 1

        # A 400 is the client's: never retried, never passed on.
        first.requests.clear()
        second.requests.clear()
        first.queue(Reply(status=400, error="bad tool schema"))
        status, headers, raw = await call(gw, "POST", "/v1/messages", {**message(), "model": "m"})
        assert status == 400 and b"bad tool schema" in raw
        assert len(first.requests) == 1 and second.requests == []
        assert headers["x-babelgate-route"] == "route:m"


async def test_a_failing_target_cools_down_and_shows_as_cooling(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    async with FakeOpenAI(api_key="sk-a") as first, FakeOpenAI(api_key="sk-b") as second:
        gw = await gateway_factory(
            {"a": first, "b": second}, routes=TWO,
            extra={"cooldown": {"failures": 2, "seconds": 60}})
        first.queue(Reply(status=503, error="busy"), Reply(status=503, error="busy"))
        for _ in range(2):
            status, _, _ = await call(gw, "POST", "/v1/messages", {**message(), "model": "m"})
            assert status == 200
        state = await quota(gw)
        assert state["a"]["state"] == "cooling" and state["a"]["resets_at"] is not None
        status, headers, _ = await call(gw, "POST", "/v1/messages", {**message(), "model": "m"})
        assert status == 200 and headers["x-babelgate-target"] == "b/model-b"
        assert len(first.requests) == 2  # resting: not asked
        status, _, _ = await call(gw, "POST", "/v1/quota/reset", raw=b"")
        assert status == 200
        assert (await quota(gw))["a"]["state"] == "ok"
        status, headers, _ = await call(gw, "POST", "/v1/messages", {**message(), "model": "m"})
        assert headers["x-babelgate-target"] == "a/model-a"


def _unix(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        name, data = "", None
        for line in frame.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
        if data is not None:
            events.append((name, data))
    return events


def streamed_text(raw: bytes) -> str:
    return "".join(d["delta"].get("text", "") for n, d in sse(raw)
                   if n == "content_block_delta")


@pytest.mark.parametrize("kind", ["translated", "passed-through"])
async def test_a_stream_that_dies_before_content_is_served_whole_by_the_next_target(
    gateway_factory: GatewayFactory, kind: str,
) -> None:
    fake = FakeOpenAI if kind == "translated" else FakeAnthropic
    async with fake(api_key="sk-first") as first, fake(api_key="sk-second") as second:
        gw = await gateway_factory({"a": first, "b": second}, routes=TWO)
        # The opening only (OpenAI: the role chunk; Anthropic: message_start and ping),
        # then the connection drops.
        first.queue(Reply(text="Never seen.", cut_stream_after=1 if kind == "translated" else 2))
        second.queue(Reply(text="Whole from the second target."))
        status, headers, raw = await call(gw, "POST", "/v1/messages",
                                          {**message(stream=True), "model": "m"})
        assert status == 200, raw
        assert headers["x-babelgate-target"] == "b/model-b"
        events = sse(raw)
        names = [name for name, _ in events]
        assert names.count("message_start") == 1 and "error" not in names
        assert names[-1] == "message_stop"
        assert streamed_text(raw) == "Whole from the second target."
        assert len(first.requests) == 1 and len(second.requests) == 1

        # An error event before the content: the same.
        first.queue(Reply(raw=[
            {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 0}}},
            {"type": "ping"},
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ] if kind == "passed-through" else [
            {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "model-a",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                          "finish_reason": None}]},
            {"error": {"message": "overloaded", "type": "server_error"}},
        ]))
        second.queue(Reply(text="Second again."))
        status, headers, raw = await call(gw, "POST", "/v1/messages",
                                          {**message(stream=True), "model": "m"})
        assert status == 200 and streamed_text(raw) == "Second again."
        assert "error" not in [name for name, _ in sse(raw)]


async def test_a_stream_that_dies_after_content_ends_with_an_error_event(
    gateway_factory: GatewayFactory,
) -> None:
    async with FakeOpenAI(api_key="sk-first") as first, FakeOpenAI(api_key="sk-2") as second:
        gw = await gateway_factory({"a": first, "b": second}, routes=TWO)
        first.queue(Reply(text="Some words already on their way to the client.",
                          cut_stream_after=3))
        status, _, raw = await call(gw, "POST", "/v1/messages",
                                    {**message(stream=True), "model": "m"})
        assert status == 200
        names = [name for name, _ in sse(raw)]
        assert streamed_text(raw) and names[-1] == "error"
        assert second.requests == []


async def test_weighted_routes_spread_conversations_and_keep_each_on_its_target(
    gateway_factory: GatewayFactory,
) -> None:
    async with FakeOpenAI(api_key="sk-first") as first, FakeOpenAI(api_key="sk-2") as second:
        gw = await gateway_factory(
            {"a": first.provider_config(weight=1), "b": second.provider_config(weight=1)},
            routes=TWO)
        served: dict[str, set[str]] = {}
        for turn in range(3):
            for session in range(16):
                headers = {**ANTHROPIC, "x-claude-code-session-id": f"session-{session}"}
                body = {**message(text=f"turn {turn}"), "model": "m"}
                async with aiohttp.ClientSession() as http, http.post(
                        gw.url + "/v1/messages", data=orjson.dumps(body),
                        headers=headers) as resp:
                    assert resp.status == 200
                    served.setdefault(f"session-{session}", set()).add(
                        resp.headers["x-babelgate-target"])
        assert all(len(targets) == 1 for targets in served.values()), served
        assert {t for targets in served.values() for t in targets} == {"a/model-a", "b/model-b"}

        # Without a session: the first user message names the conversation.
        targets = set()
        for turn in range(4):
            history = [{"role": "user", "content": "The same opening question"},
                       {"role": "assistant", "content": "An answer."}] * turn
            body = {"model": "m", "max_tokens": 50, "messages": [
                *history, {"role": "user", "content": "The same opening question"}]}
            _, headers, _ = await call(gw, "POST", "/v1/messages", body)
            targets.add(headers["x-babelgate-target"])
        assert len(targets) == 1


async def test_quota_and_cooldown_state_survive_a_reload(
    gateway_factory: GatewayFactory, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    gw = await start(gateway_factory, fake_anthropic, fake_openai, tmp_path / "s.db", "weekly")
    fake_anthropic.queue(Reply(status=402, error="Your credit balance is too low."))
    status, _, _ = await call(gw, "POST", "/v1/messages", message())
    assert status == 200
    before = (await quota(gw))["sub"]
    assert before["state"] == "exhausted"
    status, _, raw = await call(gw, "POST", "/admin/reload")
    assert status == 200, raw
    assert (await quota(gw))["sub"] == before
    status, headers, _ = await call(gw, "POST", "/v1/messages", message())
    assert status == 200 and headers["x-babelgate-target"] == "payg/gpt-up"
    assert len(fake_anthropic.requests) == 1
