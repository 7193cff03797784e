"""`babelgate doctor` as a real process against fake upstreams that are healthy, refuse the
key, time out, and break streams: each reported with its hint and the right exit status.
`POST /v1/test-connection` runs the same checks in a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeResponses,
    FakeUpstream,
    Reply,
    ToolCall,
)
from tests.fakes.core import free_port
from tests.providers.test_proxy import pproxy


async def doctor(tmp_path: Path, providers: dict[str, Any], routes: dict[str, str],
                 *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    config = tmp_path / "babelgate.yaml"
    config.write_text(yaml.safe_dump({"providers": providers, "routes": routes}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "babelgate", "doctor", "--config", str(config), *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    doc = json.loads(text) if "--json" in args else {}
    return process.returncode or 0, doc if doc else {"text": text}, err.decode()


def checks(doc: dict[str, Any], provider: int = 0) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["providers"][provider]["checks"]}


def entry(fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {**fake.provider_config(), **extra}


async def test_a_healthy_provider_passes_every_check(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"))
        code, doc, err = await doctor(tmp_path, {"up": entry(fake)},
                                      {"default": "up/gpt-test"}, "--json")
    assert code == 0, (doc, err)
    assert doc["ok"] is True and doc["config"]["status"] == "ok"
    assert doc["config"]["detail"].endswith(": 1 provider, 1 route"), doc["config"]
    found = checks(doc)
    assert [name for name in found] == ["name resolution", "tcp", "authentication",
                                        "model list", "completion", "stream"]
    assert all(c["status"] == "ok" for c in found.values()), found
    sent = [r.body for r in fake.requests if isinstance(r.body, dict)]
    assert sent[0]["max_tokens"] == 1 and sent[1]["stream"] is True


async def test_deep_adds_a_tool_call_round_trip(tmp_path: Path) -> None:
    async with FakeAnthropic() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"),
                   Reply(tool_calls=[ToolCall("clock", {})]), Reply(text="noon"))
        code, doc, err = await doctor(tmp_path, {"claude": entry(fake)},
                                      {"default": "claude/claude-test"}, "--json", "--deep")
    assert code == 0, (doc, err)
    assert checks(doc)["tool call"]["status"] == "ok"
    last = fake.requests[-1].body
    assert last["messages"][-1]["content"][0]["type"] == "tool_result"


def _chat_result(body: dict[str, Any]) -> None:
    call = body["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "clock"
    assert body["messages"][-1] == {"role": "tool", "tool_call_id": call["id"],
                                    "content": "12:00"}


def _responses_result(body: dict[str, Any]) -> None:
    call, result = body["input"][-2:]
    assert call["type"] == "function_call" and call["name"] == "clock"
    assert result == {"type": "function_call_output", "call_id": call["call_id"],
                      "output": "12:00"}


def _gemini_result(body: dict[str, Any]) -> None:
    called = body["contents"][-2]["parts"]
    assert any(part.get("functionCall", {}).get("name") == "clock" for part in called)
    answered = body["contents"][-1]
    assert answered["role"] == "user"
    assert answered["parts"][0]["functionResponse"]["name"] == "clock"


@pytest.mark.parametrize(("fake_type", "check_result"), [
    (FakeOpenAI, _chat_result), (FakeResponses, _responses_result),
    (FakeGemini, _gemini_result)], ids=["openai-chat", "responses", "gemini"])
async def test_deep_round_trips_a_tool_call_in_each_protocol(
        tmp_path: Path, fake_type: type[FakeUpstream], check_result: Any) -> None:
    """The forced call and its result, in each upstream protocol's own shape: the strict
    fake takes the follow-up (a result that does not match its call would be a 400)."""
    async with fake_type() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"),
                   Reply(tool_calls=[ToolCall("clock", {})]), Reply(text="noon"))
        code, doc, err = await doctor(tmp_path, {"up": entry(fake)},
                                      {"default": "up/model-test"}, "--json", "--deep")
    assert code == 0, (doc, err)
    found = checks(doc)
    assert found["tool call"]["status"] == "ok", found["tool call"]
    assert found["tool call"]["detail"] == "a tool was called and its result answered"
    bodies = [r.body for r in fake.requests if isinstance(r.body, dict)]
    assert len(bodies) == 4
    check_result(bodies[-1])


async def test_deep_fails_when_the_model_answers_without_the_tool(tmp_path: Path) -> None:
    async with FakeGemini() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"), Reply(text="it is noon"))
        code, doc, _ = await doctor(tmp_path, {"up": entry(fake)},
                                    {"default": "up/model-test"}, "--json", "--deep")
    assert code == 1
    tool = checks(doc)["tool call"]
    assert tool["status"] == "failed" and "without calling the tool" in tool["detail"]
    assert "model-test does not call tools" in tool["hint"]


async def test_behind_a_proxy_the_proxy_and_its_tunnel_are_checked(tmp_path: Path) -> None:
    """With a proxy, the upstream's DNS and TCP are the proxy's job: the doctor checks the
    proxy answers and opens a tunnel to the upstream, then the requests go through it."""
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"))
        with pproxy(tmp_path) as proxy:
            code, doc, err = await doctor(
                tmp_path, {"up": entry(fake, proxy=f"http://{proxy.address}")},
                {"default": "up/gpt-test"}, "--json")
            tunnels = proxy.tunnels()
    assert code == 0, (doc, err)
    found = checks(doc)
    assert list(found) == ["proxy", "tunnel", "authentication", "model list", "completion",
                           "stream"]
    assert all(c["status"] == "ok" for c in found.values()), found
    assert "the upstream's name resolution and TCP are the proxy's job" in \
        found["proxy"]["detail"]
    upstream = fake.base_url.split("//")[1].split("/")[0]
    assert found["tunnel"]["detail"] == \
        f"http://{proxy.address} opened a tunnel to {upstream}"
    assert f"http -> {upstream}" in tunnels  # the checks and requests went through it


async def test_a_proxy_that_is_down_fails_first(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        port = free_port()  # nothing listens there
        code, doc, _ = await doctor(tmp_path, {"up": entry(fake, proxy=f"http://127.0.0.1:{port}")},
                                    {"default": "up/gpt-test"}, "--json")
    assert code == 1
    found = checks(doc)
    assert found["proxy"]["status"] == "failed"
    assert f"cannot connect to the proxy http://127.0.0.1:{port}" in found["proxy"]["detail"]
    assert "providers.up.proxy" in found["proxy"]["hint"]
    assert {found[n]["status"] for n in ("tunnel", "authentication", "stream")} == {"skipped"}
    assert fake.requests == []


async def test_a_refused_key_names_the_variable(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        code, doc, err = await doctor(
            tmp_path, {"deepseek": entry(fake, api_key="${DEEPSEEK_API_KEY}")},
            {"default": "deepseek/gpt-test"}, "--json", DEEPSEEK_API_KEY="sk-wrong-key-123")
    assert code == 1, (doc, err)
    auth = checks(doc)["authentication"]
    assert auth["status"] == "failed"
    assert auth["hint"] == "the key was refused: check DEEPSEEK_API_KEY"
    assert checks(doc)["completion"]["status"] == "skipped"
    assert "sk-wrong-key-123" not in json.dumps(doc)


async def test_a_slow_upstream_times_out(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="OK", delay=5))
        code, doc, err = await doctor(tmp_path, {"up": entry(fake)},
                                      {"default": "up/gpt-test"}, "--json", "--timeout", "1")
    assert code == 1, (doc, err)
    # The first request (authentication's one-token completion) is the one that waits.
    found = checks(doc)
    slow = found["authentication"]
    assert slow["status"] == "failed" and "no answer within 1 s" in slow["detail"]
    assert "--timeout" in slow["hint"] and found["tcp"]["status"] == "ok"
    assert found["completion"]["status"] == "skipped"


async def test_a_broken_stream_is_reported(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK then more", cut_stream_after=1))
        code, doc, err = await doctor(tmp_path, {"up": entry(fake)},
                                      {"default": "up/gpt-test"}, "--json")
    assert code == 1, (doc, err)
    found = checks(doc)
    assert found["completion"]["status"] == "ok"
    assert found["stream"]["status"] == "failed" and "proxy" in found["stream"]["hint"]


async def test_nothing_listening_and_the_table(tmp_path: Path) -> None:
    providers = {"local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                           "api_key": "x"}}
    code, doc, _ = await doctor(tmp_path, providers, {"default": "local/m"})
    assert code == 1
    text = doc["text"]
    assert "FAILED" in text and "is the server running" in text, text
    assert "some checks failed" in text


async def test_an_unknown_provider_is_a_failure(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        code, doc, _ = await doctor(tmp_path, {"up": entry(fake)}, {"default": "up/gpt-test"},
                                    "--json", "--provider", "nope")
    assert code == 1 and "up" in doc["config"]["hint"]


@pytest.mark.gateway
async def test_the_test_connection_endpoint(gateway_factory: Any) -> None:
    async with FakeOpenAI() as fake:
        fake.queue(Reply(text="OK"), Reply(text="OK"))
        gateway = await gateway_factory(fake, model="gpt-test")
        async with aiohttp.ClientSession() as session:
            async with session.post(gateway.url + "/v1/test-connection", json={}) as resp:
                assert resp.status == 200
                doc = await resp.json()
            async with session.post(gateway.url + "/v1/test-connection",
                                    data=b"{not json") as resp:
                assert resp.status == 400
    assert doc["ok"] is True, doc
    assert checks(doc)["stream"]["status"] == "ok"
    assert fake.api_key not in json.dumps(doc)
