"""A Claude subscription's OAuth access token (`sk-ant-oat...`, what `claude setup-token` prints
and Claude Code's login keeps) as an `anthropic` provider's key, over real HTTP against a fake
Anthropic as strict as the real one about it (tests/fakes/anthropic.py: such a token only as
`Authorization: Bearer` with the `oauth-2025-04-20` beta, never as x-api-key).

Whatever the source (api_key, api_keys, api_key_file, api_key_command), every path the
gateway has to Anthropic sends it that way: a translated request, the same protocol passed
through (streamed or not), and count_tokens; the beta joins those the client sent instead of
replacing them; the token is in no log line, answer or /health."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic
from tests.fakes.anthropic import betas_of, oauth_error
from tests.fakes.core import RecordedRequest

pytestmark = [pytest.mark.gateway]

TOKEN = "sk-ant-oat01-SUBSCRIPTION-TOKEN-0123456789abcdef"
OTHER = "sk-ant-oat01-SUBSCRIPTION-TOKEN-9876543210fedcba"  # a second plan's, for api_keys
CLIENT_BETA = "interleaved-thinking-2025-05-14"
ANTHROPIC_CLIENT = {"content-type": "application/json", "anthropic-version": "2023-06-01",
                    "x-api-key": "the-clients-own-key", "anthropic-beta": CLIENT_BETA}


class TwoPlans(FakeAnthropic):
    """Anthropic as two subscriptions' tokens reach it: either, each only the OAuth way."""

    def auth_error(self, request: web.Request) -> str | None:
        problems = [oauth_error(token, request.headers.get("x-api-key"),
                                request.headers.get("Authorization", ""), betas_of(request))
                    for token in (TOKEN, OTHER)]
        return None if None in problems else problems[0]


def source(kind: str, tmp_path: Path) -> dict[str, Any]:
    if kind == "api_key_file":  # as OAuth token files are: JSON with an access_token
        path = tmp_path / "claude-token.json"
        path.write_text(orjson.dumps({"access_token": TOKEN, "expires_at": 0}).decode())
        return {"api_key_file": str(path)}
    if kind == "api_key_command":
        path = tmp_path / "token.sh"
        path.write_text(f"#!/bin/sh\necho {TOKEN}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return {"api_key_command": str(path)}
    if kind == "api_keys":
        return {"api_keys": [TOKEN, OTHER]}
    return {"api_key": TOKEN}


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=orjson.dumps(body), headers=headers
    ) as resp:
        return resp.status, await resp.read()


def as_oauth(request: RecordedRequest, *betas: str) -> None:
    headers = request.headers
    assert headers["authorization"] in (f"Bearer {TOKEN}", f"Bearer {OTHER}")
    assert "x-api-key" not in headers
    assert headers["anthropic-beta"].split(",") == [*betas, "oauth-2025-04-20"]


async def no_token_shown(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/health") as resp:
        health = await resp.text()
    for token in (TOKEN, OTHER):
        assert token not in health and token not in gw.log()
    assert "Traceback" not in gw.log()


@pytest.mark.parametrize("kind", ["api_key", "api_keys", "api_key_file", "api_key_command"])
async def test_an_oauth_token_goes_as_bearer_with_the_oauth_beta_on_every_path(
    gateway_factory: GatewayFactory, tmp_path: Path, kind: str,
) -> None:
    async with TwoPlans(api_key=TOKEN) as claude:
        config = {"type": "anthropic", "base_url": claude.base_url, **source(kind, tmp_path)}
        gw = await gateway_factory({"claude-max": config}, model="claude-up")

        # An OpenAI client, translated: no beta of its own, the OAuth one alone.
        status, raw = await post(gw.url + "/v1/chat/completions",
                                 {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
                                 {"content-type": "application/json"})
        assert status == 200, raw
        as_oauth(claude.requests[-1])

        # An Anthropic client, passed through, streamed and not: its betas kept, ours added.
        for stream in (False, True):
            status, raw = await post(gw.url + "/v1/messages", {
                "model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
                "messages": [{"role": "user", "content": "Hi"}]}, ANTHROPIC_CLIENT)
            assert status == 200, raw
            assert (b"message_stop" in raw) == stream
            as_oauth(claude.requests[-1], CLIENT_BETA)

        # count_tokens asks the upstream with the token the same way.
        status, raw = await post(gw.url + "/v1/messages/count_tokens", {
            "model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]},
            ANTHROPIC_CLIENT)
        assert status == 200, raw
        assert claude.requests[-1].path == "/v1/messages/count_tokens"
        as_oauth(claude.requests[-1], CLIENT_BETA)
        assert claude.rejections == []
        await no_token_shown(gw)


async def test_a_client_that_sends_the_oauth_beta_itself_gets_it_once(
    gateway_factory: GatewayFactory,
) -> None:
    async with FakeAnthropic(api_key=TOKEN) as claude:
        gw = await gateway_factory({"claude-max": {"type": "anthropic", "api_key": TOKEN,
                                                   "base_url": claude.base_url}},
                                   model="claude-up")
        headers = {**ANTHROPIC_CLIENT, "anthropic-beta": f"oauth-2025-04-20,{CLIENT_BETA}"}
        status, raw = await post(gw.url + "/v1/messages", {
            "model": "claude-sonnet-4-5", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}]}, headers)
        assert status == 200, raw
        assert claude.requests[-1].headers["anthropic-beta"] == headers["anthropic-beta"]


async def test_an_api_key_still_goes_as_x_api_key_and_the_strict_fake_refuses_a_token_there(
    gateway_factory: GatewayFactory,
) -> None:
    """The fake is as strict as promised: a token as x-api-key is what Anthropic refuses,
    and an ordinary API key is sent as one, without the OAuth beta."""
    async with FakeAnthropic(api_key=TOKEN) as claude:
        status, raw = await post(claude.url + "/v1/messages", {
            "model": "claude-up", "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}]},
            {**ANTHROPIC_CLIENT, "x-api-key": TOKEN})
        assert status == 401 and b"invalid x-api-key" in raw
        status, raw = await post(claude.url + "/v1/messages", {
            "model": "claude-up", "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}]},
            {"content-type": "application/json", "anthropic-version": "2023-06-01",
             "authorization": f"Bearer {TOKEN}"})
        assert status == 401 and b"OAuth authentication is currently not supported" in raw
    async with FakeAnthropic(api_key="sk-ant-api03-plain-key") as claude:
        gw = await gateway_factory(claude, model="claude-up")
        status, raw = await post(gw.url + "/v1/messages", {
            "model": "claude-sonnet-4-5", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}]}, ANTHROPIC_CLIENT)
        assert status == 200, raw
        sent = claude.requests[-1].headers
        assert sent["x-api-key"] == "sk-ant-api03-plain-key"
        assert "authorization" not in sent and sent["anthropic-beta"] == CLIENT_BETA
