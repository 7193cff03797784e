"""Credential sources over real HTTP: a gateway subprocess in front of a fake OpenAI upstream
that accepts only the keys a test gives it (providers/credentials.py).

Every test ends by searching the gateway's log and /health for each key it used: a key must
never show there.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI
from tests.fakes.core import Reply

from babelgate.config import ConfigError, load_settings

pytestmark = pytest.mark.gateway

CHECK_EVERY = 1.0  # seconds between two looks at a key file (credentials.CHECK_EVERY)


class KeyedOpenAI(FakeOpenAI):
    """A fake OpenAI that accepts any key of `keys` (a set a test changes as it goes)."""

    def __init__(self, *keys: str) -> None:
        super().__init__(api_key=keys[0])
        self.keys = set(keys)

    def auth_error(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return None if header.removeprefix("Bearer ") in self.keys else "Incorrect API key."

    def keys_seen(self) -> list[str]:
        return [r.headers["authorization"].removeprefix("Bearer ") for r in self.requests]


async def ask(gw: Gateway, model: str, text: str = "hi") -> tuple[int, dict[str, Any]]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/chat/completions", data=orjson.dumps(body),
        headers={"content-type": "application/json", "authorization": "Bearer client"},
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


async def assert_no_key_shown(gw: Gateway, *keys: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/health") as resp:
        health = await resp.text()
    log = gw.log()
    for key in keys:
        assert key not in health, "a key in /health"
        assert key not in log, f"a key in the log:\n{log}"


def provider(fake: FakeOpenAI, **source: Any) -> dict[str, Any]:
    return {"type": "openai", "base_url": fake.base_url, **source}


def write(path: Path, text: str) -> None:
    path.write_text(text)


def script(path: Path, text: str) -> str:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# ---------------------------------------------------------------------------- api_key_file


async def test_a_key_file_rewritten_between_two_requests_serves_its_new_key(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    old, new, newest = "sk-file-ONE-SECRET-1111", "sk-file-TWO-SECRET-2222", "sk-file-3-SECRET"
    key_file = tmp_path / "token"
    write(key_file, old + "\n")
    async with KeyedOpenAI(old) as fake:
        gw = await gateway_factory({"up": provider(fake, api_key_file=str(key_file))},
                                   model="gpt-up")
        assert (await ask(gw, "gpt-x"))[0] == 200
        write(key_file, new)
        fake.keys = {new}  # the old key is revoked upstream
        await asyncio.sleep(CHECK_EVERY + 0.2)  # the file is looked at again by now
        status, answer = await ask(gw, "gpt-x")
        assert status == 200, answer
        assert fake.keys_seen() == [old, new]
        assert fake.rejections == []  # the new key went out first time: no 401 needed

        # Rewritten and used at once (within the second): the upstream's 401 makes the
        # gateway read the file anew and send the request once more.
        write(key_file, newest)
        fake.keys = {newest}
        status, answer = await ask(gw, "gpt-x")
        assert status == 200, answer
        assert fake.keys_seen()[-1] == newest
        await assert_no_key_shown(gw, old, new, newest)


async def test_a_json_key_file_gives_its_access_token_or_api_key(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    token, key = "oauth-ACCESS-TOKEN-SECRET", "sk-json-API-KEY-SECRET"
    with_token, with_key = tmp_path / "oauth.json", tmp_path / "key.json"
    write(with_token, orjson.dumps({"access_token": token, "expires_in": 3600,
                                    "refresh_token": "never-sent"}).decode())
    write(with_key, orjson.dumps({"api_key": key}).decode())
    async with KeyedOpenAI(token, key) as fake:
        gw = await gateway_factory(
            {"tok": provider(fake, api_key_file=str(with_token)),
             "key": provider(fake, api_key_file=str(with_key))},
            routes={"by-token": "tok/gpt-up", "by-key": "key/gpt-up"})
        assert (await ask(gw, "by-token"))[0] == 200
        assert (await ask(gw, "by-key"))[0] == 200
        assert fake.keys_seen() == [token, key]
        await assert_no_key_shown(gw, token, key)


async def test_a_missing_key_file_is_an_authentication_error_naming_the_file(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "not-yet-written"
    async with KeyedOpenAI("sk-unused-SECRET") as fake:
        gw = await gateway_factory({"up": provider(fake, api_key_file=str(missing))},
                                   model="gpt-up")
        status, answer = await ask(gw, "gpt-x")
        assert status == 401, answer
        assert str(missing) in answer["error"]["message"]
        assert fake.requests == []
        write(missing, "sk-late-SECRET-abcd")  # written later by another tool
        fake.keys = {"sk-late-SECRET-abcd"}
        await asyncio.sleep(CHECK_EVERY + 0.2)
        assert (await ask(gw, "gpt-x"))[0] == 200
        await assert_no_key_shown(gw, "sk-late-SECRET-abcd")


# ---------------------------------------------------------------------------- api_key_command


async def test_a_key_command_is_run_once_and_its_key_kept(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    key = "sk-cmd-SECRET-3333"
    runs = tmp_path / "runs"
    command = script(tmp_path / "vault", f"echo run >> {runs}\necho '  {key}  '\n")
    async with KeyedOpenAI(key) as fake:
        gw = await gateway_factory({"up": provider(fake, api_key_command=command)},
                                   model="gpt-up")
        for _ in range(3):
            status, answer = await ask(gw, "gpt-x")
            assert status == 200, answer
        assert fake.keys_seen() == [key] * 3  # stdout stripped
        assert runs.read_text().count("run") == 1  # cached for api_key_ttl (300 s)
        await assert_no_key_shown(gw, key)


async def test_a_key_command_is_run_again_before_its_ttl_ends(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    key = "sk-cmd-SECRET-4444"
    runs = tmp_path / "runs"
    command = script(tmp_path / "vault", f"echo run >> {runs}\necho {key}\n")
    async with KeyedOpenAI(key) as fake:
        gw = await gateway_factory(
            {"up": provider(fake, api_key_command=command, api_key_ttl=1)}, model="gpt-up")
        assert (await ask(gw, "gpt-x"))[0] == 200
        await asyncio.sleep(2.0)  # no request meanwhile: the refresh runs in the background
        assert runs.read_text().count("run") >= 2
        assert (await ask(gw, "gpt-x"))[0] == 200
        await assert_no_key_shown(gw, key)


async def test_a_failing_key_command_keeps_the_last_good_key_and_says_why(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    key = "sk-cmd-SECRET-5555"
    sealed = tmp_path / "sealed"
    command = script(tmp_path / "vault",
                     f"if [ -e {sealed} ]; then echo 'vault is sealed' >&2; exit 3; fi\n"
                     f"echo {key}\n")
    async with KeyedOpenAI(key) as fake:
        gw = await gateway_factory(
            {"up": provider(fake, api_key_command=command, api_key_ttl=1)}, model="gpt-up")
        assert (await ask(gw, "gpt-x"))[0] == 200
        sealed.touch()
        await asyncio.sleep(2.5)  # a background run has failed by now (one every 0.8 s)
        status, answer = await ask(gw, "gpt-x")
        assert status == 200, answer
        assert fake.keys_seen() == [key, key]
        log = gw.log()
        assert "api_key_command failed (exit status 3): vault is sealed" in log, log
        assert "the last good key stays in use" in log
        await assert_no_key_shown(gw, key)


async def test_a_401_runs_the_command_again_and_the_request_is_sent_once_more(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    old, new = "sk-cmd-OLD-SECRET-6666", "sk-cmd-NEW-SECRET-7777"
    runs, current = tmp_path / "runs", tmp_path / "current"
    write(current, old)
    command = script(tmp_path / "vault", f"echo run >> {runs}\ncat {current}\n")
    async with KeyedOpenAI(old) as fake:
        gw = await gateway_factory({"up": provider(fake, api_key_command=command,
                                                   api_key_ttl=3600)}, model="gpt-up")
        assert (await ask(gw, "gpt-x"))[0] == 200
        write(current, new)  # rotated elsewhere; the cached key is now refused
        fake.keys = {new}
        status, answer = await ask(gw, "gpt-x")
        assert status == 200, answer
        assert fake.keys_seen() == [old, old, new]
        assert [status for status, _ in fake.rejections] == [401]
        assert runs.read_text().count("run") == 2

        # Refused again with a key the command still gives: one run anew, then the 401.
        fake.keys = set()
        status, answer = await ask(gw, "gpt-x")
        assert status == 401, answer
        assert runs.read_text().count("run") == 3
        assert len(fake.requests) == 4  # not sent again: the command gave the same key
        await assert_no_key_shown(gw, old, new)


# ---------------------------------------------------------------------------- api_keys


async def test_api_keys_take_turns_and_a_rate_limited_key_rests(
    gateway_factory: GatewayFactory,
) -> None:
    one, two = "sk-ring-ONE-SECRET-8888", "sk-ring-TWO-SECRET-9999"
    async with KeyedOpenAI(one, two) as fake:
        gw = await gateway_factory({"up": provider(fake, api_keys=[one, two])}, model="gpt-up")
        # New conversations (told apart by their first message) take the keys in turn...
        for n in range(4):
            assert (await ask(gw, "gpt-x", f"conversation {n}"))[0] == 200
        assert fake.keys_seen() == [one, two, one, two]
        # ... and each stays on the key it started on (the provider's prompt cache is there).
        for n in (1, 1, 2, 3):
            assert (await ask(gw, "gpt-x", f"conversation {n}"))[0] == 200
        assert fake.keys_seen()[4:] == [two, two, one, two]

        # The next new conversation is key one's: rate limited, the same request goes out on
        # key two.
        fake.queue(Reply(status=429, error="Rate limit reached for requests",
                         headers={"retry-after": "30"}))
        status, answer = await ask(gw, "gpt-x", "conversation 4")
        assert status == 200, answer
        assert fake.keys_seen()[8:] == [one, two]
        # Key one rests (30 s, its Retry-After): key two serves every request meanwhile, the
        # conversations that started on key one included.
        for n in (0, 2, 5):
            assert (await ask(gw, "gpt-x", f"conversation {n}"))[0] == 200
        assert fake.keys_seen()[10:] == [two, two, two]
        assert "key #0 of api_keys refused (HTTP 429); it rests 30 s" in gw.log()
        await assert_no_key_shown(gw, one, two)


async def test_a_key_refused_everywhere_reaches_the_client_without_the_key(
    gateway_factory: GatewayFactory,
) -> None:
    one, two = "sk-dead-ONE-SECRET-aaaa", "sk-dead-TWO-SECRET-bbbb"
    async with KeyedOpenAI("sk-other-key-cccc") as fake:
        gw = await gateway_factory({"up": provider(fake, api_keys=[one, two])}, model="gpt-up")
        status, answer = await ask(gw, "gpt-x")
        assert status == 401, answer
        assert len(fake.requests) == 2  # each key once, then the refusal goes back
        await assert_no_key_shown(gw, one, two)
        assert one not in orjson.dumps(answer).decode()


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("second", ["api_keys", "api_key_file", "api_key_command"])
def test_two_key_sources_are_a_configuration_error(tmp_path: Path, second: str) -> None:
    value: Any = ["sk-a", "sk-b"] if second == "api_keys" else "something"
    path = tmp_path / "babelgate.yaml"
    path.write_text(orjson.dumps({"providers": {"up": {
        "type": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "sk-literal-SECRET",
        second: value}}}).decode())
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "providers.up" in message and str(path) in message
    assert f"api_key and {second}" in message
    assert "sk-literal-SECRET" not in message


def test_an_empty_entry_of_api_keys_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "babelgate.yaml"
    path.write_text("providers:\n  up:\n    type: openai\n    base_url: http://127.0.0.1:1/v1\n"
                    "    api_keys: [\"${SET_KEY}\", \"${EMPTY_KEY}\"]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"SET_KEY": "sk-set-SECRET", "EMPTY_KEY": " "})
    assert "providers.up.api_keys: entry 1 is empty" in str(caught.value)
    assert "sk-set-SECRET" not in str(caught.value)


# ---------------------------------------------------------------------------- with a clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_resting_key_comes_back_when_its_rest_ends() -> None:
    from babelgate.providers.credentials import StaticKeys

    clock = Clock()
    ring = StaticKeys(("sk-one", "sk-two", "sk-three"), rest_seconds=60, clock=clock)
    ring.bind("up", lambda value: {"authorization": f"Bearer {value}"})
    first = ring.pick()
    assert first.headers == {"authorization": "Bearer sk-one"}
    other = await ring.refused(first, 401, None)
    assert other is not None and other.value == "sk-two"
    assert [ring.pick().value for _ in range(4)] == ["sk-three", "sk-two", "sk-three", "sk-two"]
    ring.rest(1, 10)  # the failover's hook: key #1's quota is used up for 10 s
    assert [ring.pick().value for _ in range(2)] == ["sk-three", "sk-three"]
    clock.now += 10
    assert {ring.pick().value for _ in range(2)} == {"sk-two", "sk-three"}
    clock.now += 50
    assert sorted(ring.pick().value for _ in range(3)) == ["sk-one", "sk-three", "sk-two"]
    # Every key resting: the one that wakes first serves; a refusal offers none.
    for index in range(3):
        ring.rest(index, 100 + index)
    assert ring.pick().value == "sk-one"
    assert await ring.refused(ring.pick(), 429, 5.0) is None
    assert set(ring.secrets()) == {"sk-one", "sk-two", "sk-three"}
    assert "sk-" not in repr(first)


def test_redact_masks_every_key_a_source_served(tmp_path: Path) -> None:
    from babelgate.protocols import Quirks
    from babelgate.providers.credentials import FileKey
    from babelgate.providers.provider import OpenAIChatProvider

    key_file = tmp_path / "token"
    write(key_file, "sk-first-SECRET-0001")
    clock = Clock()
    source = FileKey(str(key_file), clock=clock)
    provider = OpenAIChatProvider("up", "http://127.0.0.1:1/v1", None, Quirks(),
                                  credentials=source)
    write(key_file, "sk-second-SECRET-0002")
    clock.now += 2
    assert provider.headers()["authorization"] == "Bearer sk-second-SECRET-0002"
    text = "bad keys: sk-first-SECRET-0001 and sk-second-SECRET-0002"
    assert provider.redact(text) == "bad keys: *** and ***"
    assert provider.redact_bytes(text.encode()) == b"bad keys: *** and ***"
    assert provider.describe()["credentials"] == "api_key_file"
