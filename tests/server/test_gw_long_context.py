"""A `long_context` rule over real HTTP: a request below its threshold goes on unrouted, one
above it goes where the rule says, and a translated stream's start reports the same input
estimate whether the rule made it (the tools kept by the caller's table) or decided without
it (a new tool list, bounded without reading its schemas) and the stream made it later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import Reply
from tests.fakes.core import Usage

from babelgate import tokens
from babelgate.protocols import get_codec
from babelgate.protocols.reuse import Reuse
from conftest import Stacks, reset

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

LIMIT = 3000  # input tokens (estimated) above which the rule routes to Gemini
HEADERS = {"content-type": "application/json", "x-api-key": "client-key",
           "anthropic-version": "2023-06-01"}


def tool(index: int) -> dict[str, Any]:
    properties = {f"arg{k}": {"type": "string", "description": "what the tool works on"}
                  for k in range(6)}
    return {"name": f"tool{index}", "description": "Does one thing well.",
            "input_schema": {"type": "object", "properties": properties}}


def body(words: int, mark: str) -> dict[str, Any]:
    """An Anthropic request of about `words` * 1.4 tokens, with a dozen tools; `mark` makes
    its tool list one nobody sent before."""
    return {"model": "gpt-client", "max_tokens": 1000, "stream": True,
            "system": "You help.", "tools": [{**tool(i), "description": mark} for i in range(12)],
            "messages": [{"role": "user", "content": "word " * words}]}


def estimate(request: dict[str, Any]) -> int:
    parsed = get_codec("anthropic").parse_request(request, Reuse())
    return tokens.quick_estimate(parsed, Reuse())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(stacks: Stacks, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Gateway]:
    factory = GatewayFactory(tmp_path_factory.mktemp("long_context"))
    try:
        yield await factory(stacks.upstreams, routes={"default": "oa/gpt-up"}, extra={
            "rules": [{"name": "long", "if": {"long_context": LIMIT}, "to": "ge/gemini-up"}]})
    finally:
        await factory.close()


async def stream_start(gateway: Gateway, request: dict[str, Any]) -> tuple[str, int]:
    """The route the answer names and the input tokens of its message_start."""
    async with aiohttp.ClientSession() as session, session.post(
        gateway.url + "/v1/messages", data=orjson.dumps(request), headers=HEADERS
    ) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.read()
        route = resp.headers["x-babelgate-route"]
    for line in data.split(b"\n"):
        if line.startswith(b"data: ") and b'"message_start"' in line:
            return route, orjson.loads(line[6:])["message"]["usage"]["input_tokens"]
    raise AssertionError(f"no message_start in {data[:300]!r}")


async def test_below_the_threshold_the_stream_start_reports_the_estimate(
    stacks: Stacks, gateway: Gateway
) -> None:
    fake = stacks.fakes["oa"]
    reset(fake)
    request = body(1000, "new tools")  # ~1,400 tokens and a dozen tools: well below
    expected = estimate(request)
    assert expected < LIMIT
    # An OpenAI stream counts the input only at its end: the start carries our estimate.
    # While the tool list is new to the caller's table the rule decides by the bound and the
    # stream estimates; once the table keeps it (a piece seen twice), the rule's estimate
    # goes on to the stream.
    for _ in range(4):
        fake.queue(Reply(text="Done.", usage=Usage(input_tokens=7, output_tokens=2)))
        assert await stream_start(gateway, request) == ("default", expected)


async def test_above_the_threshold_the_rule_routes(stacks: Stacks, gateway: Gateway) -> None:
    fake = stacks.fakes["ge"]
    reset(fake)
    request = body(3000, "other tools")  # ~4,200 tokens
    assert estimate(request) > LIMIT
    fake.queue(Reply(text="Done.", usage=Usage(input_tokens=4321, output_tokens=2)))
    route, _ = await stream_start(gateway, request)
    assert route == "rule:long"
    assert fake.requests and "gemini-up" in fake.requests[-1].path
