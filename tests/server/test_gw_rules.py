"""Rules over real HTTP: a gateway with a `rules:` list in front of the session's fake
upstreams. A rule routes (an image to Gemini, background calls to another provider), its
edits reach the upstream's body whether the request is translated or passes through
(Anthropic, OpenAI Chat and Responses bodies alike), survive a fallback, and the answer's
x-babelgate-route header and the access log name the rule and the route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeUpstream, Reply
from tests.fakes.core import RecordedRequest

from conftest import Stacks, reset

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

ROUTES = {
    "claude-client": "an/claude-up",
    "gpt-client": "oa/gpt-up",
    "resp-client": "rs/gpt-resp-up",
    "default": "oa/gpt-up",
}
EDITS = {"system_prepend": "PREPENDED", "system_append": "APPENDED",
         "set": {"temperature": 0.3}, "remove": ["metadata"], "max_tokens": 100}
RULES = [
    {"name": "pictures", "if": {"image": True}, "to": "ge/gemini-up"},
    {"name": "bg", "if": {"background": True}, "to": ["fb/model-b"]},
    {"name": "edits", "if": {"header": {"x-rule": "edits"}}, **EDITS},
    {"name": "moved", "if": {"header": {"x-rule": "moved"}}, "to": "oa/gpt-up", **EDITS},
    # An edit pass-through has no form for (Anthropic reasoning): translated instead.
    {"name": "think", "if": {"header": {"x-rule": "think"}},
     "set": {"reasoning": {"enabled": True, "budget_tokens": 2048}}},
    {"name": "fallback", "if": {"header": {"x-rule": "fallback"}},
     "to": ["dead/model-x", "fb/model-b"], "system_prepend": "PREPENDED"},
    {"if": {"user_agent": "CherryStudio*"}, "to": "fa/model-a", "set": {"top_p": 0.5}},
]
ANTHROPIC = {"content-type": "application/json", "x-api-key": "client-key",
             "anthropic-version": "2023-06-01"}
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
         "RU5ErkJggg==")
KEEPALIVE = 0.3  # seconds before a slow stream opens with keep-alives
TOOL = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


class Rig:
    def __init__(self, gw: Gateway, fakes: dict[str, FakeUpstream]) -> None:
        self.gw = gw
        self.fakes = fakes

    def fresh(self) -> Rig:
        for fake in self.fakes.values():
            reset(fake)
        return self

    def last(self, name: str) -> RecordedRequest:
        fake = self.fakes[name]
        assert fake.requests, f"{name} received no request"
        return fake.requests[-1]

    def untouched(self, *names: str) -> None:
        for name in names:
            assert not self.fakes[name].requests, f"{name} was called"

    async def messages(self, body: dict[str, Any], headers: dict[str, str] | None = None
                       ) -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession() as session, session.post(
            self.gw.url + "/v1/messages", data=orjson.dumps(body),
            headers={**ANTHROPIC, **(headers or {})},
        ) as resp:
            return resp.status, dict(resp.headers), await resp.read()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def started(stacks: Stacks, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Rig]:
    factory = GatewayFactory(tmp_path_factory.mktemp("rules"))
    try:
        gw = await factory(stacks.upstreams, routes=ROUTES, extra={
            "rules": RULES, "server": {"stream_keepalive": KEEPALIVE}})
        yield Rig(gw, stacks.fakes)
    finally:
        await factory.close()


@pytest.fixture
def rig(started: Rig) -> Rig:
    return started.fresh()


def claude(**body: Any) -> dict[str, Any]:
    return {"model": "claude-client", "max_tokens": 1000,
            "messages": [{"role": "user", "content": "Hi"}], **body}


def text_blocks(system: Any) -> list[str]:
    return [block["text"] for block in system]


# ---------------------------------------------------------------- routing


@pytest.mark.parametrize("stream", [False, True])
async def test_image_goes_where_the_rule_says(rig: Rig, stream: bool) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PIXEL}}
    body = claude(stream=stream, messages=[
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    status, headers, answer = await rig.messages(body)
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "rule:pictures"
    assert headers["x-babelgate-target"] == "ge/gemini-up"
    assert "gemini-up" in rig.last("ge").path
    rig.untouched("an")


async def test_background_call_goes_to_the_small_provider(rig: Rig) -> None:
    title = {"model": "claude-haiku-4-5-20251001", "max_tokens": 512, "stream": True,
             "system": [{"type": "text", "text": "Summarize this coding conversation in under "
                         "50 characters."}],
             "messages": [{"role": "user", "content": "Please write a 5-10 word title."}]}
    status, headers, _ = await rig.messages(title)
    assert (status, headers["x-babelgate-route"]) == (200, "rule:bg")
    assert rig.last("fb").body["model"] == "model-b"
    # Claude Code's main turn (tools, its big model) does not match: the routes decide.
    status, headers, _ = await rig.messages(claude(tools=[TOOL]))
    assert (status, headers["x-babelgate-route"]) == (200, "route:claude-client")
    rig.untouched("ge")


async def test_route_header_without_rules_matching(rig: Rig) -> None:
    for model, expected in [("claude-client", "route:claude-client"), ("elsewhere", "default"),
                            ("fa/some-model", "direct")]:
        status, headers, body = await rig.messages(claude(model=model, tools=[TOOL]))
        assert status == 200, body
        assert headers["x-babelgate-route"] == expected


async def test_user_agent_rule_for_an_openai_client(rig: Rig) -> None:
    async with AsyncOpenAI(base_url=rig.gw.url + "/v1", api_key="client-key", max_retries=0,
                           default_headers={"user-agent": "CherryStudio/1.6"}) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-client", messages=[{"role": "user", "content": "Hi"}])
    assert raw.headers["x-babelgate-route"] == "rule:6"  # unnamed: its place in the list
    assert rig.last("fa").body["top_p"] == 0.5
    rig.untouched("oa")


async def count(rig: Rig, path: str, body: dict[str, Any], headers: dict[str, str]
                ) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.post(
            rig.gw.url + path, data=orjson.dumps(body), headers=headers) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def test_token_counts_name_the_rule_and_route_that_counted(rig: Rig) -> None:
    anthropic = "/v1/messages/count_tokens"
    body = {"model": "claude-client", "messages": [{"role": "user", "content": "Hi there"}]}
    status, headers, answer = await count(rig, anthropic, body, ANTHROPIC)
    assert status == 200 and answer["input_tokens"] > 0, answer
    assert headers["x-babelgate-route"] == "route:claude-client"
    status, headers, answer = await count(rig, anthropic, body, {**ANTHROPIC, "x-rule": "edits"})
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "rule:edits, route:claude-client"
    # The rule's first target refuses the connection: counted here, and still named.
    status, headers, answer = await count(rig, anthropic, body,
                                          {**ANTHROPIC, "x-rule": "fallback"})
    assert (status, headers["x-babelgate-token-count"]) == (200, "estimate"), answer
    assert headers["x-babelgate-route"] == "rule:fallback"
    # Gemini's :countTokens, routed by the model in its path.
    gemini = {"contents": [{"role": "user", "parts": [{"text": "Hi there"}]}]}
    status, headers, answer = await count(
        rig, "/v1beta/models/gpt-client:countTokens", gemini,
        {"content-type": "application/json", "x-goog-api-key": "client-key"})
    assert status == 200 and answer["totalTokens"] > 0, answer
    assert headers["x-babelgate-route"] == "route:gpt-client"
    # Refused before any route was chosen: no route to name.
    status, headers, answer = await count(rig, anthropic, {**body, "model": "nowhere/x"},
                                          ANTHROPIC)
    assert status == 404 and answer["type"] == "error", answer
    assert "x-babelgate-route" not in headers


# ---------------------------------------------------------------- edits


@pytest.mark.parametrize("stream", [False, True])
async def test_edits_reach_an_anthropic_upstream_passed_through(rig: Rig, stream: bool) -> None:
    body = claude(stream=stream, temperature=1.0, metadata={"user_id": "someone"},
                  system=[{"type": "text", "text": "Be brief.",
                           "cache_control": {"type": "ephemeral"}}],
                  # A field babelgate does not model: only pass-through keeps it.
                  context_management={"edits": [{"type": "clear_thinking_20251015",
                                                 "keep": "all"}]})
    status, headers, answer = await rig.messages(body, {"x-rule": "edits"})
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "rule:edits, route:claude-client"
    sent = rig.last("an").body
    assert text_blocks(sent["system"]) == ["PREPENDED", "Be brief.", "APPENDED"]
    assert sent["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert (sent["temperature"], sent["max_tokens"]) == (0.3, 100)
    assert "metadata" not in sent
    assert sent["context_management"] == body["context_management"]


@pytest.mark.parametrize("stream", [False, True])
async def test_edits_reach_a_translated_upstream(rig: Rig, stream: bool) -> None:
    body = claude(stream=stream, temperature=1.0, metadata={"user_id": "someone"},
                  system="Be brief.")
    status, headers, answer = await rig.messages(body, {"x-rule": "moved"})
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "rule:moved"
    sent = rig.last("oa").body
    system = [m["content"] for m in sent["messages"] if m["role"] in ("system", "developer")]
    assert "PREPENDED" in str(system) and "APPENDED" in str(system)
    assert str(system).index("PREPENDED") < str(system).index("Be brief.") < str(system).index(
        "APPENDED")
    assert sent["temperature"] == 0.3
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 100
    assert "user" not in sent
    rig.untouched("an")


@pytest.mark.parametrize("stream", [False, True])
async def test_edits_reach_an_openai_upstream_passed_through(rig: Rig, stream: bool) -> None:
    async with AsyncOpenAI(base_url=rig.gw.url + "/v1", api_key="client-key", max_retries=0,
                           default_headers={"x-rule": "edits"}) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-client", stream=stream, temperature=1.0, user="someone",
            max_completion_tokens=1000,
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi"}])
        if stream:
            async for _ in raw.parse():
                pass
    assert raw.headers["x-babelgate-route"] == "rule:edits, route:gpt-client"
    sent = rig.last("oa").body
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "PREPENDED"), ("system", "Be brief."), ("system", "APPENDED"),
        ("user", "Hi")]
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 100)
    assert "user" not in sent


async def test_edits_reach_a_responses_upstream_passed_through(rig: Rig) -> None:
    async with AsyncOpenAI(base_url=rig.gw.url + "/v1", api_key="client-key", max_retries=0,
                           default_headers={"x-rule": "edits"}) as client:
        raw = await client.responses.with_raw_response.create(
            model="resp-client", store=False, instructions="Be brief.", input="Hi",
            temperature=1.0, max_output_tokens=1000, metadata={"who": "someone"})
    assert raw.headers["x-babelgate-route"] == "rule:edits, route:resp-client"
    sent = rig.last("rs").body
    assert sent["instructions"] == "PREPENDED\n\nBe brief.\n\nAPPENDED"
    assert (sent["temperature"], sent["max_output_tokens"]) == (0.3, 100)
    assert "metadata" not in sent


async def test_an_edit_without_a_pass_through_form_is_translated(rig: Rig) -> None:
    body = claude(max_tokens=8000, context_management={"edits": []})
    status, headers, answer = await rig.messages(body, {"x-rule": "think"})
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "rule:think, route:claude-client"
    sent = rig.last("an").body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "context_management" not in sent  # rendered from the canonical request


async def test_edits_survive_a_fallback(rig: Rig) -> None:
    """The first target refuses the connection; the second gets the edited request (the
    gateway lets go of a parsed body while it waits, and must not rebuild it unedited)."""
    body = {"model": "claude-client", "max_tokens": 1000, "stream": True, "system": "Mine.",
            "messages": [{"role": "user", "content": "Hi"}]}
    status, headers, answer = await rig.messages(body, {"x-rule": "fallback"})
    assert status == 200, answer
    assert headers["x-babelgate-target"] == "fb/model-b"
    sent = rig.last("fb").body
    assert sent["messages"][0] == {"role": "system", "content": "PREPENDED\n\nMine."}


async def test_keepalive_head_carries_the_route(rig: Rig) -> None:
    """A stream whose upstream is slow opens early with keep-alives: its head names the
    route too."""
    rig.fakes["an"].queue(Reply(text="late", delay=3 * KEEPALIVE))
    status, headers, answer = await rig.messages(claude(stream=True))
    assert status == 200, answer
    assert headers["x-babelgate-route"] == "route:claude-client"


async def test_access_log_names_rule_and_route(rig: Rig) -> None:
    offset = rig.gw.log_path.stat().st_size
    await rig.messages(claude(model="claude-haiku-4-5", max_tokens=100))
    await rig.messages(claude(tools=[TOOL]), {"x-rule": "edits"})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with rig.gw.log_path.open("rb") as log:
            log.seek(offset)
            new = log.read().decode()
        if new.count("target=") >= 2:
            break
        await asyncio.sleep(0.05)
    assert "target=fb/model-b rule=bg route=- in=" in new
    assert "target=an/claude-up rule=edits route=claude-client in=" in new


async def test_count_tokens_follows_the_rules(rig: Rig) -> None:
    """The rule's edits are counted by the upstream's own counter (a system prompt added,
    and no field the counting endpoint refuses, such as the temperature the rule sets)."""
    body = {"model": "claude-client", "system": "Mine.",
            "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
        rig.gw.url + "/v1/messages/count_tokens", data=orjson.dumps(body),
        headers={**ANTHROPIC, "x-rule": "edits"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-babelgate-token-count"] == "upstream"
    sent = rig.last("an")
    assert sent.path.endswith("/count_tokens")
    assert "PREPENDED" in str(sent.body["system"]) and "temperature" not in sent.body
    # A rule's own target counts: an image goes to Gemini, whose countTokens answers.
    body["messages"] = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PIXEL}}]}]
    async with aiohttp.ClientSession() as session, session.post(
        rig.gw.url + "/v1/messages/count_tokens", data=orjson.dumps(body), headers=ANTHROPIC,
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["input_tokens"] > 0
    assert rig.last("ge").path.endswith(":countTokens")
