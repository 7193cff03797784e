"""One gateway for the whole server suite: a single `python -m babelgate serve` subprocess in
front of every kind of fake upstream, with a route per scenario (client model name -> target).

Starting a gateway costs about a second of a 2-core machine, so the suite shares one
(session scope, session event loop); each test starts from empty fakes (`fresh` fixture).
There is deliberately no `default` route: an unknown model name must give 404.

Tests marked `each_server` run once per server in EACH_SERVER: a gateway under each ASGI
server is started in front of the same fakes when the first test that needs it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
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


# The servers a test marked `each_server` runs under: our own, and the ASGI adapter under
# uvicorn and granian (tests/conftest.py SERVER_COMMANDS). Other tests run under our own only.
EACH_SERVER = ("own", "uvicorn", "granian")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("each_server") and (
            "stack" in metafunc.fixturenames):
        metafunc.parametrize("stack", EACH_SERVER, indirect=True)


class Stacks:
    """The session's fakes, started once, and one gateway in front of them per server, each
    started when a test first needs it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fakes: dict[str, FakeUpstream] = {}
        self.factories: dict[str, GatewayFactory] = {}
        self.stacks: dict[str, Stack] = {}

    async def start_fakes(self) -> None:
        self.fakes = {
            "oa": WatchedOpenAI(api_key=KEYS["oa"]),
            "ds": WatchedOpenAI(api_key=KEYS["ds"], preset="deepseek",
                                modes=("deepseek_thinking",)),
            "an": WatchedAnthropic(api_key=KEYS["an"]),
            "ge": FakeGemini(api_key=KEYS["ge"], modes=("gemini3",)),
            "fa": FakeOpenAI(api_key=KEYS["fa"]),
            "fb": FakeOpenAI(api_key=KEYS["fb"]),
            "rs": FakeResponses(api_key=KEYS["rs"]),
        }
        for fake in self.fakes.values():
            await fake.start()
            reset(fake)
        upstreams: dict[str, Any] = dict(self.fakes)
        # Nothing listens on this port: connection refused.
        upstreams["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                             "api_key": "sk-dead-SECRET"}
        upstreams["oa_quick"] = self.fakes["oa"].provider_config(timeout=SHORT_TIMEOUT)
        self.upstreams = upstreams

    async def get(self, server: str) -> Stack:
        if server not in self.stacks:
            factory = GatewayFactory(self.workdir / server, server)
            factory.workdir.mkdir()
            self.factories[server] = factory
            gw = await factory(self.upstreams, routes=ROUTES)
            self.stacks[server] = Stack(gw, **self.fakes)  # type: ignore[arg-type]
        return self.stacks[server]

    async def close(self) -> None:
        for factory in self.factories.values():
            await factory.close()
        for fake in self.fakes.values():
            await fake.stop()
        for stack in self.stacks.values():
            check_whole_log(stack.gw.log())


def check_whole_log(log: str) -> None:
    """Over all the traffic of the session, whichever tests ran and in whatever order: no
    request hit a bug of ours, and no provider key reached the log."""
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000):][:6000]
    for key in [*KEYS.values(), "sk-dead-SECRET"]:
        assert key not in log, f"{key} in the gateway's log"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stacks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stacks]:
    stacks = Stacks(tmp_path_factory.mktemp("gateway"))
    try:
        await stacks.start_fakes()
        yield stacks
    finally:
        await stacks.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(stacks: Stacks, request: pytest.FixtureRequest) -> Stack:
    """The session's gateway under our own server, or under the server the test is
    parametrized with (`each_server`)."""
    return await stacks.get(getattr(request, "param", "own"))


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
