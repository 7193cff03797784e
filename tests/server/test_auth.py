"""Gateway keys over real HTTP, with the official SDKs as clients: their exception types
(AuthenticationError for 401, PermissionDeniedError for 403) prove the error shapes of
Anthropic Messages, Chat Completions and Responses. Keys are made with `babelgate keys`
(a real subprocess) in the database the gateway reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, FakeResponses
from tests.keys_support import create, keys_cli, storage_config

from babelgate.storage.database import open_database
from babelgate.storage.keys import create_key
from babelgate.storage.url import StorageURL

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="module")]

ROUTES = {"claude-a": "an/claude-up", "gpt-5-chat": "oa/gpt-up", "gpt-5-resp": "rs/resp-up",
          "secret-model": "oa/secret-up"}
SCOPES = "claude-*,gpt-5*"


@dataclass
class Keyed:
    gw: Gateway
    config: Path  # the `storage:` the gateway and `babelgate keys` share
    db: Path
    alice: str  # scoped to SCOPES
    ops: str  # admin, every model


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Keyed]:
    workdir = tmp_path_factory.mktemp("auth")
    db = workdir / "bg.db"
    config = storage_config(workdir, {"path": str(db)})
    alice = create(config, "alice", "--models", SCOPES)
    ops = create(config, "ops", "--admin")
    async with FakeAnthropic() as an, FakeOpenAI() as oa, FakeResponses() as rs:
        factory = GatewayFactory(workdir)
        try:
            gw = await factory({"an": an, "oa": oa, "rs": rs}, routes=ROUTES,
                               extra={"storage": {"path": str(db)}})
            yield Keyed(gw, config, db, alice, ops)
        finally:
            await factory.close()
    log = gw.log()
    assert "Traceback" not in log
    assert alice not in log and ops not in log  # no key in any log line


def claude(gw: Gateway, key: str, *, bearer: bool = False) -> anthropic.AsyncAnthropic:
    if bearer:  # ANTHROPIC_AUTH_TOKEN: Authorization: Bearer
        return anthropic.AsyncAnthropic(base_url=gw.url, auth_token=key, max_retries=0)
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)


def gpt(gw: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


async def ask_claude(client: anthropic.AsyncAnthropic, model: str = "claude-a") -> str:
    async with client:
        message = await client.messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    return message.model


async def ask_chat(client: openai.AsyncOpenAI, model: str = "gpt-5-chat") -> str:
    async with client:
        answer = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}])
    return answer.model


async def ask_responses(client: openai.AsyncOpenAI, model: str = "gpt-5-resp") -> str:
    async with client:
        answer = await client.responses.create(model=model, input="Hi", store=False)
    return answer.model


async def status_of(url: str, method: str = "GET", headers: dict[str, str] | None = None,
                    body: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers=headers, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


# ---------------------------------------------------------------- the three protocols


async def test_anthropic_messages(keyed: Keyed) -> None:
    gw = keyed.gw
    assert await ask_claude(claude(gw, keyed.alice)) == "claude-up"  # x-api-key
    assert await ask_claude(claude(gw, keyed.alice, bearer=True)) == "claude-up"
    # No key at all (the SDK refuses to send that, so plain HTTP does).
    status, body = await status_of(gw.url + "/v1/messages", "POST", body={"model": "claude-a"})
    assert status == 401
    assert body == {"type": "error", "error": {
        "type": "authentication_error", "message": body["error"]["message"]}}
    assert "needs an API key" in body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as wrong:
        await ask_claude(claude(gw, "bg-not-a-key"))
    assert "invalid API key" in str(wrong.value)
    with pytest.raises(anthropic.PermissionDeniedError) as outside:
        await ask_claude(claude(gw, keyed.alice), "secret-model")
    assert outside.value.status_code == 403
    assert outside.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "may not use model 'secret-model'" in str(outside.value)
    assert await ask_claude(claude(gw, keyed.ops), "secret-model") == "secret-model"


async def test_chat_completions(keyed: Keyed) -> None:
    gw = keyed.gw
    assert await ask_chat(gpt(gw, keyed.alice)) == "gpt-up"  # passed through
    with pytest.raises(openai.AuthenticationError) as wrong:
        await ask_chat(gpt(gw, "bg-not-a-key"))
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as outside:
        await ask_chat(gpt(gw, keyed.alice), "secret-model")
    assert outside.value.status_code == 403
    status, body = await status_of(gw.url + "/v1/chat/completions", "POST",
                                   body={"model": "gpt-5-chat", "messages": []})
    assert status == 401 and body["error"]["type"] == "authentication_error"


async def test_responses(keyed: Keyed) -> None:
    gw = keyed.gw
    assert await ask_responses(gpt(gw, keyed.alice)) == "resp-up"
    with pytest.raises(openai.AuthenticationError) as wrong:
        await ask_responses(gpt(gw, "bg-not-a-key"))
    assert wrong.value.status_code == 401
    with pytest.raises(openai.PermissionDeniedError):
        await ask_responses(gpt(gw, keyed.alice), "secret-model")


async def test_models_and_count_tokens_need_a_key_health_does_not(keyed: Keyed) -> None:
    gw = keyed.gw
    assert (await status_of(gw.url + "/health"))[0] == 200
    assert (await status_of(gw.url + "/"))[0] == 200
    status, body = await status_of(gw.url + "/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, _ = await status_of(gw.url + "/v1/models", headers={"x-api-key": keyed.alice})
    assert status == 200
    count = {"model": "secret-model", "messages": [{"role": "user", "content": "Hi"}]}
    status, body = await status_of(gw.url + "/v1/messages/count_tokens", "POST",
                                   headers={"x-api-key": keyed.alice}, body=count)
    assert status == 403 and body["error"]["type"] == "permission_error"


async def test_gemini_clients_keys(keyed: Keyed) -> None:
    """`x-goog-api-key` and `?key=`: accepted (the path then decides), or refused in
    Gemini's error shape."""
    path = keyed.gw.url + "/v1beta/models/claude-a:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    status, error = await status_of(path, "POST", body=body)
    assert status == 401 and error["error"]["status"] == "UNAUTHENTICATED"
    status, _ = await status_of(path, "POST", {"x-goog-api-key": keyed.alice}, body)
    assert status == 200
    status, _ = await status_of(f"{path}?key={keyed.alice}", "POST", body=body)
    assert status == 200
    status, _ = await status_of(f"{path}?key=bg-wrong", "POST", body=body)
    assert status == 401


# ---------------------------------------------------------------- admin paths


async def test_admin_paths_need_an_admin_key(keyed: Keyed) -> None:
    gw = keyed.gw
    for method, path in (("GET", "/admin/keys"), ("POST", "/v1/quota/reset"),
                         ("POST", "/v1/test-connection")):
        status, body = await status_of(gw.url + path, method,
                                       headers={"authorization": f"Bearer {keyed.alice}"})
        assert status == 403, path
        assert body["error"]["type"] == "permission_error" and "admin key" in str(body)
        status, _ = await status_of(gw.url + path, method,
                                    headers={"authorization": f"Bearer {keyed.ops}"})
        assert status not in (401, 403), path  # past the check (what the path does is its own)
        status, _ = await status_of(gw.url + path, method)
        assert status == 401


# ---------------------------------------------------------------- expiry and revocation


async def test_an_expired_key_is_refused(keyed: Keyed) -> None:
    db = open_database(StorageURL.sqlite(keyed.db))
    _, soon = await create_key(db, "brief", now=time.time(), expires_at=time.time() + 1.5)
    _, gone = await create_key(db, "old", now=time.time() - 100, expires_at=time.time() - 1)
    await db.close()
    await until_status(keyed.gw.url, soon, 200)  # the gateway saw the new keys
    with pytest.raises(anthropic.AuthenticationError, match="'old' has expired"):
        await ask_claude(claude(keyed.gw, gone))
    await asyncio.sleep(1.6)
    with pytest.raises(openai.AuthenticationError, match="'brief' has expired"):
        await ask_chat(gpt(keyed.gw, soon))


async def test_a_revoked_key_is_refused_within_a_second(keyed: Keyed) -> None:
    carol = create(keyed.config, "carol")
    await until_status(keyed.gw.url, carol, 200)
    revoked = keys_cli(keyed.config, "revoke", "carol")
    assert revoked.returncode == 0
    took = await until_status(keyed.gw.url, carol, 401)
    assert took < 1.0
    with pytest.raises(anthropic.AuthenticationError, match="'carol' was revoked"):
        await ask_claude(claude(keyed.gw, carol))


async def until_status(url: str, key: str, want: int, limit: float = 5.0) -> float:
    """Seconds until GET /v1/models with `key` answers `want`."""
    start = time.monotonic()
    while True:
        status, _ = await status_of(url + "/v1/models", headers={"x-api-key": key})
        if status == want:
            return time.monotonic() - start
        assert time.monotonic() - start < limit, f"still {status}, not {want}"
        await asyncio.sleep(0.02)


async def test_each_key_sees_only_its_own_stored_responses(keyed: Keyed) -> None:
    async with gpt(keyed.gw, keyed.alice) as alice, gpt(keyed.gw, keyed.ops) as ops:
        first = await alice.responses.create(model="gpt-5-resp", input="Remember 7.")
        assert (await alice.responses.retrieve(first.id)).id == first.id
        with pytest.raises(openai.NotFoundError):  # another key's: as if it never existed
            await ops.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            await ops.responses.create(model="gpt-5-resp", input="And?",
                                       previous_response_id=first.id)
        second = await alice.responses.create(model="gpt-5-resp", input="And?",
                                              previous_response_id=first.id)
        assert second.id != first.id


async def test_each_key_finds_only_its_own_request_pieces(keyed: Keyed) -> None:
    """The reuse table is partitioned by key (server.reuse_shared: false): a piece another
    key sent is not found again, so its being answered sooner cannot be timed. Read off the
    table's counts in /health."""
    body = {"model": "claude-a", "max_tokens": 50, "system": "You are careful. " * 300,
            "messages": [{"role": "user", "content": "Read the notes. " * 200}]}

    async def send(key: str) -> int:
        """The hits the request added."""
        before = (await status_of(keyed.gw.url + "/health"))[1]["reuse"]["hits"]
        status, answer = await status_of(keyed.gw.url + "/v1/messages", "POST", {
            "x-api-key": key, "anthropic-version": "2023-06-01"}, body)
        assert status == 200, answer
        health = (await status_of(keyed.gw.url + "/health"))[1]["reuse"]
        return int(health["hits"]) - int(before)

    assert await send(keyed.alice) == 0  # seen once
    assert await send(keyed.alice) == 0  # kept the second time
    assert await send(keyed.alice) > 0  # found the third
    assert await send(keyed.ops) == 0  # the same body under another key: nothing found
    assert (await status_of(keyed.gw.url + "/health"))[1]["reuse"]["partitions"] >= 2
