"""GET /v1/providers and GET /v1/models/capabilities over real HTTP, for every provider type
and for presets: what a client's model picker or an operator's script reads."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeResponses
from tests.fakes.core import Reply
from tests.keys_support import create

pytestmark = [pytest.mark.gateway]

ROUTES: dict[str, Any] = {
    "claude-sonnet-4-5": "an/claude-sonnet-4-5",
    "fast": ["local/gemma-3", "an/claude-haiku-4-5"],
    "gemini-2.5-pro": "ge/gemini-2.5-pro",
    "codex": "rs/gpt-5-codex",
    "cheap": "ds/deepseek-chat",
    "gpt-4o": "oai/gpt-4o",
    "claude-*": "an",  # a pattern: no concrete model, listed by neither endpoint
}


async def get(gw: Gateway, path: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            gw.url + path, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


@pytest.fixture
async def every_type(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    fake_gemini: FakeGemini, fake_responses: FakeResponses,
) -> Gateway:
    upstreams = {
        # `type: openai` at an address that is not OpenAI's, no preset: a local server.
        "local": fake_openai.provider_config(),
        "ds": fake_openai.provider_config(preset="deepseek"),
        # A relay that serves exactly OpenAI's API.
        "oai": fake_openai.provider_config(preset="openai", max_tokens=4096),
        "an": fake_anthropic.provider_config(quota={"window": "daily", "reset": "09:00"}),
        "ge": fake_gemini.provider_config(),
        "rs": fake_responses.provider_config(),
    }
    return await gateway_factory(upstreams, routes=ROUTES)


async def test_providers_lists_each_type_and_preset(every_type: Gateway) -> None:
    status, body = await get(every_type, "/v1/providers")
    assert status == 200, body
    assert body["object"] == "list"
    by_name = {p["name"]: p for p in body["data"]}
    assert list(by_name) == ["local", "ds", "oai", "an", "ge", "rs"]
    assert {n: (p["type"], p["preset"]) for n, p in by_name.items()} == {
        "local": ("openai", None), "ds": ("openai", "deepseek"), "oai": ("openai", "openai"),
        "an": ("anthropic", None), "ge": ("gemini", None), "rs": ("openai-responses", None)}
    assert by_name["an"]["models"] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert by_name["local"]["models"] == ["gemma-3"]
    assert by_name["an"]["quota"] == {"window": "daily", "reset": "09:00"}
    assert by_name["ge"]["quota"] is None
    for provider in by_name.values():
        assert provider["health"] == {"state": "ok", "since": None, "resets_at": None,
                                      "reason": None}
        assert provider["credentials"] == "api_key"
    # Never a key, whatever the provider.
    assert b"test-key" not in orjson.dumps(body)


async def test_capabilities_per_model(every_type: Gateway) -> None:
    status, body = await get(every_type, "/v1/models/capabilities")
    assert status == 200, body
    models = {m["id"]: m for m in body["data"]}
    # Exactly the ids /v1/models lists, in its order.
    _, listed = await get(every_type, "/v1/models")
    assert list(models) == [m["id"] for m in listed["data"]]
    assert not any("*" in name for name in models)

    sonnet = models["claude-sonnet-4-5"]
    assert (sonnet["type"], sonnet["target"]) == ("anthropic", "an/claude-sonnet-4-5")
    assert (sonnet["tools"], sonnet["images"], sonnet["thinking"]) == (True, True, True)
    assert sonnet["context_window"] == 200_000

    # A local OpenAI-compatible server: tools and images, no reasoning control declared,
    # and a model whose window the gateway cannot know. Its fallback is described too.
    fast = models["fast"]
    assert (fast["target"], fast["tools"], fast["thinking"]) == ("local/gemma-3", True, False)
    assert fast["context_window"] is None
    assert [f["target"] for f in fast["fallbacks"]] == ["an/claude-haiku-4-5"]
    assert fast["fallbacks"][0]["thinking"] is True

    gemini = models["gemini-2.5-pro"]
    assert (gemini["type"], gemini["thinking"], gemini["context_window"]) == (
        "gemini", True, 1_048_576)
    codex = models["codex"]
    assert (codex["type"], codex["tools"], codex["context_window"]) == (
        "openai-responses", True, 400_000)

    # DeepSeek's preset: no images, thinking through its switch, its 8K output clamp.
    cheap = models["cheap"]
    assert (cheap["preset"], cheap["images"], cheap["thinking"]) == ("deepseek", False, True)
    assert (cheap["max_output_tokens"], cheap["context_window"]) == (8192, 128_000)
    # The configuration's clamp wins over the preset's none.
    assert models["gpt-4o"]["max_output_tokens"] == 4096
    assert models["gpt-4o"]["thinking"] is True
    # Direct `provider/model` ids are there too.
    assert models["an/claude-sonnet-4-5"]["type"] == "anthropic"


async def test_a_failing_provider_shows_as_cooling(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
) -> None:
    gw = await gateway_factory(
        {"oa": fake_openai.provider_config(), "an": fake_anthropic.provider_config()},
        routes={"m": ["oa/x", "an/claude-haiku-4-5"]},
        extra={"cooldown": {"failures": 1, "seconds": 60}})
    fake_openai.queue(Reply(status=500, error="upstream broke"))
    fake_anthropic.queue(Reply(text="fine"))
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 200, await resp.text()
    _, body = await get(gw, "/v1/providers")
    health = {p["name"]: p["health"] for p in body["data"]}
    assert health["oa"]["state"] == "cooling"
    assert "oa/x" in health["oa"]["reason"]
    assert health["oa"]["resets_at"] is not None
    assert health["an"]["state"] == "ok"


async def test_with_keys_both_need_a_key(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, tmp_path: Any,
) -> None:
    gw = await gateway_factory(fake_openai, extra={"storage": {"path": str(tmp_path / "k.db")}})
    key = create(gw.config_path, "someone")
    for path in ("/v1/providers", "/v1/models/capabilities"):
        for _ in range(40):  # the gateway reads new keys within its refresh interval
            status, body = await get(gw, path)
            if status == 401:
                break
            await asyncio.sleep(0.1)
        assert status == 401, body
        assert body["error"]["type"] == "authentication_error"
        status, body = await get(gw, path, authorization=f"Bearer {key}")
        assert status == 200, body
