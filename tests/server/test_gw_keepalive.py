"""Streams kept alive while an upstream is slow to begin: the client gets its stream's head
and the protocol's keep-alive within `server.stream_keepalive` seconds, again every interval,
then the real answer; an error after that ends the open stream as an error event; a fallback
still works; answers and errors that come in time are not changed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
import uvicorn
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import free_port

from babelgate.config import load_settings
from babelgate.server.app import create_app
from babelgate.server.asgi import AsgiApp

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

INTERVAL = 0.3  # the gateway's server.stream_keepalive here
SLOW = 1.3  # seconds the upstream waits before answering: four intervals
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
COMMENT = b": keep-alive\n\n"
HEADERS = {
    "/v1/messages": {"content-type": "application/json", "x-api-key": "client-key",
                     "anthropic-version": "2023-06-01"},
    "/v1/chat/completions": {"content-type": "application/json",
                             "authorization": "Bearer client-key"},
    "/v1/responses": {"content-type": "application/json", "authorization": "Bearer client-key"},
}
# client path, model -> what keeps that client's stream alive
CASES = {
    "anthropic-translated": ("/v1/messages", "gpt", PING),
    "anthropic-pass-through": ("/v1/messages", "claude", PING),
    "openai-pass-through": ("/v1/chat/completions", "gpt", COMMENT),
    "openai-translated": ("/v1/chat/completions", "claude", COMMENT),
    "responses-translated": ("/v1/responses", "gpt", COMMENT),
}


@dataclass
class Slow:
    gw: Gateway
    oa: FakeOpenAI
    ob: FakeOpenAI
    an: FakeAnthropic

    def fake(self, model: str) -> FakeOpenAI | FakeAnthropic:
        return self.oa if model == "gpt" else self.an


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Slow]:
    fakes = [FakeOpenAI(), FakeOpenAI(), FakeAnthropic()]
    for fake in fakes:
        await fake.start()
    oa, ob, an = fakes
    factory = GatewayFactory(Path(tmp_path_factory.mktemp("keepalive")))
    try:
        gw = await factory({"oa": oa, "ob": ob, "an": an}, routes={
            "gpt": "oa/gpt-up", "claude": "an/claude-up", "fall": ["oa/gpt-up", "ob/gpt-b"],
        }, extra={"server": {"stream_keepalive": INTERVAL}})
        yield Slow(gw, oa, ob, an)
    finally:
        await factory.close()
        for fake in fakes:
            await fake.stop()


@pytest.fixture
def fresh(slow: Slow) -> Slow:
    for fake in (slow.oa, slow.ob, slow.an):
        fake.requests.clear()
        fake._queue.clear()
    return slow


def body(path: str, model: str) -> dict[str, Any]:
    if path == "/v1/responses":
        return {"model": model, "input": "Hi", "stream": True, "store": False}
    return {"model": model, "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}


@dataclass
class Seen:
    status: int
    headers: dict[str, str]
    head_after: float  # seconds from the request to the response's head
    pieces: list[tuple[float, bytes]]  # (seconds from the request, bytes) as they arrived

    @property
    def raw(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)


async def watch(url: str, path: str, model: str) -> Seen:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.post(
        url + path, data=orjson.dumps(body(path, model)), headers=HEADERS[path]
    ) as resp:
        head_after = time.monotonic() - started
        pieces = [(time.monotonic() - started, piece)
                  async for piece in resp.content.iter_any()]
        return Seen(resp.status, {k.lower(): v for k, v in resp.headers.items()}, head_after,
                    pieces)


def beats(seen: Seen, beat: bytes) -> list[float]:
    """When each keep-alive arrived (a piece may hold several, or a keep-alive and more)."""
    return [at for at, piece in seen.pieces for _ in range(piece.count(beat))]


@pytest.mark.parametrize("case", list(CASES))
async def test_a_slow_upstream_gets_keepalives_then_the_answer(fresh: Slow, case: str) -> None:
    path, model, beat = CASES[case]
    fresh.fake(model).queue(Reply(text="Slow but sure.", delay=SLOW))
    seen = await watch(fresh.gw.url, path, model)
    assert seen.status == 200
    assert seen.head_after < INTERVAL + 0.5, seen.head_after  # not SLOW
    times = beats(seen, beat)
    assert len(times) >= 3, seen.raw[:300]  # about SLOW / INTERVAL of them
    assert times[0] < INTERVAL + 0.5
    assert all(b - a < INTERVAL + 0.5 for a, b in itertools.pairwise(times))
    answer = seen.raw[seen.raw.rfind(beat) + len(beat):]
    assert b"Slow but" in answer  # (streamed in pieces of 12 characters)
    assert seen.raw.startswith(beat)  # nothing before the first keep-alive
    assert "x-babelgate-target" not in seen.headers  # not known when the head went out


async def test_the_sdks_read_a_kept_alive_stream(fresh: Slow) -> None:
    fresh.oa.queue(Reply(text="Slow but sure.", delay=SLOW))
    async with (
        AsyncAnthropic(base_url=fresh.gw.url, api_key="k", max_retries=0) as claude,
        claude.messages.stream(model="gpt", max_tokens=100,
                               messages=[{"role": "user", "content": "Hi"}]) as stream,
    ):
        final = await stream.get_final_message()
    assert [b.text for b in final.content if b.type == "text"] == ["Slow but sure."]
    assert final.usage.input_tokens > 0
    fresh.oa.queue(Reply(text="Slow but sure.", delay=SLOW))
    async with AsyncOpenAI(base_url=fresh.gw.url + "/v1", api_key="k", max_retries=0) as oai:
        chunks = await oai.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "Hi"}], stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text == "Slow but sure."


@pytest.mark.parametrize("case", ["anthropic-translated", "anthropic-pass-through",
                                  "openai-pass-through", "responses-translated"])
async def test_an_error_after_the_stream_opened_is_the_protocols_error_event(
    fresh: Slow, case: str
) -> None:
    path, model, beat = CASES[case]
    fresh.fake(model).queue(Reply(status=400, error="The prompt is not allowed.", delay=SLOW))
    seen = await watch(fresh.gw.url, path, model)
    assert seen.status == 200  # the stream was open before the error came
    assert len(beats(seen, beat)) >= 3
    tail = seen.raw[seen.raw.rfind(beat) + len(beat):]
    assert b"The prompt is not allowed." in tail
    if path == "/v1/messages":
        assert tail.startswith(b"event: error\n"), tail
    elif path == "/v1/responses":
        assert b"response.failed" in tail, tail
    else:
        assert orjson.loads(tail.split(b"\n\n")[0][len(b"data: "):])["error"], tail


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
async def test_a_target_failing_after_keepalives_began_falls_back(
    fresh: Slow, path: str
) -> None:
    fresh.oa.queue(Reply(status=503, error="Overloaded.", delay=SLOW))
    fresh.ob.queue(Reply(text="From the second target."))
    seen = await watch(fresh.gw.url, path, "fall")
    assert seen.status == 200
    beat = PING if path == "/v1/messages" else COMMENT
    assert len(beats(seen, beat)) >= 3
    assert b"From the sec" in seen.raw
    assert b"Overloaded." not in seen.raw
    assert len(fresh.oa.requests) == 1 and len(fresh.ob.requests) == 1


@pytest.mark.parametrize("case", ["anthropic-translated", "openai-pass-through"])
async def test_answers_and_errors_in_time_are_unchanged(fresh: Slow, case: str) -> None:
    path, model, beat = CASES[case]
    fresh.fake(model).queue(Reply(status=400, error="Bad request."))
    seen = await watch(fresh.gw.url, path, model)
    assert seen.status == 400 and b"Bad request." in seen.raw
    fresh.fake(model).queue(Reply(text="Quick.", delay=INTERVAL / 3))
    seen = await watch(fresh.gw.url, path, model)
    assert seen.status == 200 and beat not in seen.raw
    assert seen.headers["x-babelgate-target"] == "oa/gpt-up"


async def test_kept_alive_under_an_asgi_server(tmp_path: Path) -> None:
    # The ASGI adapter's `start` only queues the head: the keep-alive's write delivers it.
    async with FakeOpenAI() as fake:
        config = tmp_path / "babelgate.yaml"
        config.write_bytes(orjson.dumps({
            "server": {"stream_keepalive": INTERVAL},
            "providers": {"oa": fake.provider_config()},
            "routes": {"gpt": "oa/gpt-up"},
            "storage": {"path": str(tmp_path / "state.db")},
        }))
        app = create_app(load_settings(config))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            AsgiApp(app), host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            fake.queue(Reply(text="Slow but sure.", delay=SLOW))
            seen = await watch(f"http://127.0.0.1:{port}", "/v1/messages", "gpt")
        finally:
            server.should_exit = True
            await task
            await app.stop()
    assert seen.status == 200
    assert seen.head_after < INTERVAL + 0.5, seen.head_after
    assert len(beats(seen, PING)) >= 3
    assert b"Slow but" in seen.raw
