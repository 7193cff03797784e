"""One gateway for the whole server suite: a single `python -m babelgate serve` subprocess in
front of every kind of fake upstream, with a route per scenario (client model name -> target).

Starting a gateway costs about a second of a 2-core machine, so the suite shares one
(session scope, session event loop); each test starts from empty fakes (`fresh` fixture).
There is deliberately no `default` route: an unknown model name must give 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from openai import AsyncOpenAI
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeResponses, FakeUpstream
from tests.fakes.core import RecordedRequest, Reply, free_port

# Distinctive keys, so a test can search every response body and the log for them.
KEYS = {
    "oa": "sk-oa-SECRET-4f1a",
    "ds": "sk-ds-SECRET-77b2",
    "an": "sk-ant-SECRET-9c3d",
    "ge": "AIza-SECRET-5e6f",
    "fa": "sk-fa-SECRET-0a0a",
    "fb": "sk-fb-SECRET-0b0b",
    "rs": "sk-rs-SECRET-1c1c",
}

SHORT_TIMEOUT = 0.6  # seconds, for provider oa_quick

# Client model name -> "provider/upstream model" (or a fallback list).
ROUTES: dict[str, Any] = {
    "gpt-client": "oa/gpt-up",
    "ds-client": "ds/deepseek-reasoner",
    "claude-client": "an/claude-up",
    "gem-client": "ge/gemini-up",
    "resp-client": "rs/gpt-resp-up",
    "fallback": ["fa/model-a", "fb/model-b"],
    "fallback-refused": ["dead/model-x", "fb/model-b"],
    # Pass-through (anthropic -> anthropic) and translation in one fallback list, both ways.
    "claude-then-gpt": ["an/claude-up", "oa/gpt-up"],
    "gpt-then-claude": ["oa/gpt-up", "an/claude-up"],
    # The same OpenAI fake behind a provider with a short timeout.
    "gpt-short-timeout": ["oa_quick/gpt-up", "fb/model-b"],
}


class WatchedMixin:
    """Records how each stream the fake sent ended: "completed", or "closed" when the client
    (the gateway) dropped the connection while the fake was still writing."""

    stream_endings: list[str]

    async def send_events(
        self, request: web.Request, reply: Reply, frames: list[bytes]
    ) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await super().send_events(  # type: ignore[misc]
                request, reply, frames
            )
        except ConnectionError:
            self.stream_endings.append("closed")
            raise
        self.stream_endings.append("completed")
        return resp


class WatchedOpenAI(WatchedMixin, FakeOpenAI):
    pass


class WatchedAnthropic(WatchedMixin, FakeAnthropic):
    pass


@dataclass
class Stack:
    gw: Gateway
    oa: WatchedOpenAI
    ds: WatchedOpenAI
    an: WatchedAnthropic
    ge: FakeGemini
    fa: FakeOpenAI
    fb: FakeOpenAI
    rs: FakeResponses

    @property
    def fakes(self) -> list[FakeUpstream]:
        return [self.oa, self.ds, self.an, self.ge, self.fa, self.fb, self.rs]


def reset(fake: FakeUpstream) -> None:
    fake.requests.clear()
    fake.rejections.clear()
    fake._queue.clear()  # a failed test must not leave scripted replies for the next one
    if isinstance(fake, WatchedMixin):
        fake.stream_endings = []


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    fakes: dict[str, FakeUpstream] = {
        "oa": WatchedOpenAI(api_key=KEYS["oa"]),
        "ds": WatchedOpenAI(api_key=KEYS["ds"], preset="deepseek", modes=("deepseek_thinking",)),
        "an": WatchedAnthropic(api_key=KEYS["an"]),
        "ge": FakeGemini(api_key=KEYS["ge"], modes=("gemini3",)),
        "fa": FakeOpenAI(api_key=KEYS["fa"]),
        "fb": FakeOpenAI(api_key=KEYS["fb"]),
        "rs": FakeResponses(api_key=KEYS["rs"]),
    }
    for fake in fakes.values():
        await fake.start()
        reset(fake)
    upstreams: dict[str, Any] = dict(fakes)
    # Nothing listens on this port: connection refused.
    upstreams["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                         "api_key": "sk-dead-SECRET"}
    upstreams["oa_quick"] = fakes["oa"].provider_config(timeout=SHORT_TIMEOUT)
    factory = GatewayFactory(tmp_path_factory.mktemp("gateway"))
    try:
        gw = await factory(upstreams, routes=ROUTES)
        yield Stack(gw, **fakes)  # type: ignore[arg-type]
    finally:
        await factory.close()
        for fake in fakes.values():
            await fake.stop()


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    for fake in stack.fakes:
        reset(fake)
    return stack


def last(fake: FakeUpstream) -> RecordedRequest:
    """The last request the fake received (failing clearly when there was none)."""
    assert fake.requests, f"{type(fake).__name__} received no request"
    return fake.requests[-1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(fresh: Stack) -> AsyncIterator[AsyncOpenAI]:
    """The official `openai` SDK pointed at the session's gateway (no retries: a test sees
    the first answer)."""
    async with AsyncOpenAI(base_url=fresh.gw.url + "/v1", api_key="client-key",
                           max_retries=0) as c:
        yield c
