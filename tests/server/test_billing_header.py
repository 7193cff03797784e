"""Claude Code's `x-anthropic-billing-header` system block reaches Anthropic upstreams only.

The recorded Claude Code request goes through a real gateway process to each kind of fake
upstream; what the fake received is searched for the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeResponses, Reply

pytestmark = pytest.mark.gateway

FIXTURE = Path(__file__).parent.parent / "fixtures" / "anthropic" / "claude_code_request.json"
LINE = b"x-anthropic-billing-header"
HEADERS = {"content-type": "application/json", "x-api-key": "k",
           "anthropic-version": "2023-06-01", "user-agent": "claude-cli/2.0.50 (external, cli)"}


def claude_code_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    assert body["system"][0]["text"].startswith("x-anthropic-billing-header:")
    # The first turn (later ones carry thinking signatures only the real Anthropic issued).
    return orjson.dumps({**body, "model": model, "stream": stream,
                         "messages": body["messages"][:1]})


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_only_an_anthropic_upstream_gets_the_billing_line(
    gateway_factory: GatewayFactory, stream: bool
) -> None:
    async with FakeOpenAI() as oa, FakeGemini() as ge, FakeResponses() as rs, \
            FakeAnthropic() as an:
        fakes = {"oa": oa, "ge": ge, "rs": rs, "an": an}
        gw = await gateway_factory(fakes, routes={n: f"{n}/up-model" for n in fakes})
        async with aiohttp.ClientSession() as session:
            for name, fake in fakes.items():
                fake.queue(Reply(text="ok"))
                async with session.post(gw.url + "/v1/messages", headers=HEADERS,
                                        data=claude_code_body(name, stream)) as resp:
                    answer = await resp.read()
                    assert resp.status == 200, answer
                    assert b"ok" in answer
        for fake in (oa, ge, rs):
            [sent] = fake.requests
            assert LINE not in sent.raw, fake.protocol
            # The rest of Claude Code's system prompt still arrives.
            assert b"You are Claude Code" in sent.raw, fake.protocol
        [sent] = an.requests
        assert LINE in sent.raw
