"""A gateway with keys, prices and two fake upstreams, and a scripted set of requests through
it with the OpenAI and Anthropic SDKs: the admin API tests and the dashboard's Chromium tests
read the same traffic back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.core import Reply, Usage
from tests.keys_support import create

PRICES = {"oa/gpt-test": {"input": 1.0, "output": 2.0},
          "an/claude-sonnet-4-5": {"input": 3.0, "output": 15.0}}
# What the script sends: (protocol, client model, replies' input and output tokens), each once.
SCRIPT = (
    ("openai", "gpt-test", 100, 20),
    ("openai", "gpt-test", 120, 30),
    ("openai", "gpt-test", 80, 10),
    ("anthropic", "claude-sonnet-4-5", 200, 50),
    ("anthropic", "claude-sonnet-4-5", 300, 60),
)
REFUSED_MODEL = "nope-model"  # no route: a refused request, recorded without a provider


async def keyed_gateway(factory: GatewayFactory, oa: FakeOpenAI, an: FakeAnthropic,
                        db: Path) -> tuple[Gateway, str, str]:
    gw = await factory(
        {"oa": oa.provider_config(), "an": an.provider_config(quota={"window": "daily"})},
        routes={"gpt-test": "oa/gpt-test", "claude-sonnet-4-5": "an/claude-sonnet-4-5"},
        extra={"storage": {"path": str(db), "usage_flush_interval_s": 0.1},
               "prices": PRICES})
    admin = create(gw.config_path, "ops", "--admin")
    user = create(gw.config_path, "alice")
    await wait_for_key(gw, user)
    return gw, admin, user


async def scripted_traffic(factory: GatewayFactory, oa: FakeOpenAI, an: FakeAnthropic,
                           db: Path) -> tuple[Gateway, str, str]:
    """A gateway with keys (keyed_gateway) after the script's requests (run_script)."""
    gw, admin, user = await keyed_gateway(factory, oa, an, db)
    await run_script(gw, user, oa, an)
    return gw, admin, user


async def wait_for_key(gw: Gateway, key: str, status: int = 200) -> None:
    """Until the gateway answers /v1/models for `key` with `status` (keys are read within
    its refresh interval). A 200 counts only once a made-up key is refused: until its first
    read of the keys the gateway is open and answers 200 to anyone, and a test that went on
    then would make its first requests as no key at all."""
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            if await _models_status(session, gw, key) == status and (
                    status != 200 or await _models_status(session, gw, "no-such-key") == 401):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway never answered {status} for the key")


async def _models_status(session: aiohttp.ClientSession, gw: Gateway, key: str) -> int:
    async with session.get(gw.url + "/v1/models",
                           headers={"authorization": f"Bearer {key}"}) as resp:
        return resp.status


async def run_script(gw: Gateway, key: str, oa: FakeOpenAI, an: FakeAnthropic) -> None:
    chat = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    messages = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)
    for protocol, model, tokens_in, tokens_out in SCRIPT:
        reply = Reply(text="ok", usage=Usage(input_tokens=tokens_in, output_tokens=tokens_out))
        if protocol == "openai":
            oa.queue(reply)
            await chat.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}])
        else:
            an.queue(reply)
            await messages.messages.create(
                model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    try:
        await chat.chat.completions.create(
            model=REFUSED_MODEL, messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError:
        pass
    else:
        raise AssertionError("a model without a route was served")
    await chat.close()
    await messages.close()


def expected_totals() -> dict[str, Any]:
    tokens_in = sum(row[2] for row in SCRIPT)
    tokens_out = sum(row[3] for row in SCRIPT)
    cost = sum(t_in * PRICES[_priced(model)]["input"] / 1e6
               + t_out * PRICES[_priced(model)]["output"] / 1e6
               for _, model, t_in, t_out in SCRIPT)
    return {"requests": len(SCRIPT) + 1, "input_tokens": tokens_in,
            "output_tokens": tokens_out, "cost": cost}


def _priced(model: str) -> str:
    return "oa/gpt-test" if model == "gpt-test" else "an/claude-sonnet-4-5"


async def admin_get(gw: Gateway, path: str, key: str | None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.get(
            gw.url + path, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def wait_for_rows(gw: Gateway, key: str, requests: int) -> dict[str, Any]:
    """The usage summary once the writer has stored `requests` requests."""
    for _ in range(100):
        status, body = await admin_get(gw, "/admin/api/usage?by=model", key)
        assert status == 200, body
        if body["total"]["requests"] >= requests:
            return dict(body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"usage rows never reached {requests} requests: {body}")
