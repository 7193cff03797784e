"""Hot reload over real processes: the real `babelgate serve --config FILE` in front of two fake
upstreams; the file is edited and the gateway told (by its own file watch, SIGHUP or
POST /admin/reload) and the next request must reach the upstream the file now names, while a
stream opened before finishes on the old one. A broken file is refused and the old routes
keep serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.conftest import Gateway, GatewayFactory, stop_process
from tests.fakes import FakeOpenAI, Reply
from tests.fakes.core import free_port

from babelgate.config import ProviderConfig

pytestmark = [pytest.mark.gateway]

KEY_A = "sk-reload-A-SECRET-1111"
KEY_B = "sk-reload-B-SECRET-2222"
POLL = 0.1  # server.reload_poll for the tests that use the file watch
WAIT = 10.0  # seconds a test waits at most for the gateway to notice

# What the "unknown field" error lists: every field a provider takes, as many as there are.
PROVIDER_FIELDS = ", ".join(ProviderConfig.model_fields)


@pytest.fixture
async def fake_a() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY_A) as fake:
        yield fake


@pytest.fixture
async def fake_b() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY_B) as fake:
        yield fake


async def start(factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI,
                poll: float) -> Gateway:
    """A gateway whose `default` route goes to fake A; fake B is configured but unused."""
    return await factory({"a": fake_a, "b": fake_b}, model="model-a",
                         extra={"server": {"reload_poll": poll}})


def route_to(gateway: Gateway, target: str, **changes: Any) -> None:
    """Rewrite the gateway's file with `default` routed to `target`."""
    config = {**gateway.config, "routes": {"default": target}, **changes}
    gateway.config = config
    gateway.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


async def ask(session: aiohttp.ClientSession, gateway: Gateway, text: str = "hi",
              model: str = "anything") -> str:
    """Where the gateway sends a chat request now."""
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    async with session.post(gateway.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        assert data["choices"][0]["message"]["content"]
        return str(resp.headers["x-babelgate-target"])  # the provider/model that answered


async def health(session: aiohttp.ClientSession, gateway: Gateway) -> dict[str, Any]:
    async with session.get(gateway.url + "/health") as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


async def wait_health(session: aiohttp.ClientSession, gateway: Gateway, key: str,
                      expected: object) -> dict[str, Any]:
    """/health once `key` has become `expected` (fails after WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        data = await health(session, gateway)
        if data[key] == expected:
            return data
        assert time.monotonic() < deadline, (key, data, gateway.log())
        await asyncio.sleep(0.05)


async def reload(session: aiohttp.ClientSession, gateway: Gateway) -> tuple[int, Any]:
    async with session.post(gateway.url + "/admin/reload") as resp:
        return resp.status, await resp.json()


# ---------------------------------------------------------------- the three triggers


async def test_a_file_edit_reroutes_the_next_request(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    gateway = await start(gateway_factory, fake_a, fake_b, POLL)
    async with aiohttp.ClientSession() as session:
        before = await health(session, gateway)
        assert before["config"] == str(gateway.config_path)
        assert before["config_error"] is None
        assert before["reloads"] == 0
        assert await ask(session, gateway) == "a/model-a"

        route_to(gateway, "b/model-b")
        after = await wait_health(session, gateway, "reloads", 1)
        assert after["config_loaded_at"] > before["config_loaded_at"]
        assert after["config_error"] is None
        assert await ask(session, gateway) == "b/model-b"
    assert len(fake_a.requests) == 1
    assert len(fake_b.requests) == 1
    assert fake_b.requests[0].body["model"] == "model-b"
    assert "configuration reloaded from" in gateway.log()


async def test_under_an_asgi_server_the_file_watch_and_the_endpoint_reload(
    tmp_path: Path, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    """The app under uvicorn (server/asgi.py): its lifespan starts the file watch."""
    factory = GatewayFactory(tmp_path, "uvicorn")
    try:
        gateway = await start(factory, fake_a, fake_b, POLL)
        async with aiohttp.ClientSession() as session:
            assert await ask(session, gateway) == "a/model-a"
            route_to(gateway, "b/model-b")
            await wait_health(session, gateway, "reloads", 1)
            assert await ask(session, gateway) == "b/model-b"
            route_to(gateway, "a/model-c")
            status, _ = await reload(session, gateway)
            assert status == 200
            assert await ask(session, gateway) == "a/model-c"
    finally:
        await factory.close()


async def test_sighup_reloads_the_file_and_keeps_serving(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    gateway = await start(gateway_factory, fake_a, fake_b, 0)  # no watch: the signal does it
    async with aiohttp.ClientSession() as session:
        assert await ask(session, gateway) == "a/model-a"
        route_to(gateway, "b/model-b")
        await asyncio.sleep(3 * POLL)
        assert await ask(session, gateway) == "a/model-a"  # nothing watches the file

        gateway.process.send_signal(signal.SIGHUP)
        await wait_health(session, gateway, "reloads", 1)
        assert gateway.process.poll() is None
        assert await ask(session, gateway) == "b/model-b"

        # A file that did not change is read again all the same.
        gateway.process.send_signal(signal.SIGHUP)
        await wait_health(session, gateway, "reloads", 2)
        assert await ask(session, gateway) == "b/model-b"
    assert gateway.process.poll() is None


async def test_post_admin_reload_applies_the_file_before_answering(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    gateway = await start(gateway_factory, fake_a, fake_b, 0)
    async with aiohttp.ClientSession() as session:
        assert await ask(session, gateway) == "a/model-a"
        route_to(gateway, "b/model-b")
        status, answer = await reload(session, gateway)
        assert status == 200
        assert answer["reloaded"] is True
        assert answer["config"] == str(gateway.config_path)
        assert answer["loaded_at"] == (await health(session, gateway))["config_loaded_at"]
        assert await ask(session, gateway) == "b/model-b"

        status, again = await reload(session, gateway)  # unchanged: read again anyway
        assert status == 200
        assert again["loaded_at"] >= answer["loaded_at"]
        assert (await health(session, gateway))["reloads"] == 2

        # Rules come with the configuration too.
        route_to(gateway, "b/model-b", rules=[{"if": {"model": "special-*"}, "to": "a/model-r"}])
        status, _ = await reload(session, gateway)
        assert status == 200
        assert await ask(session, gateway, model="special-1") == "a/model-r"
        assert await ask(session, gateway) == "b/model-b"


# ---------------------------------------------------------------- what a reload keeps


async def test_a_stream_open_before_a_reload_finishes_on_the_old_upstream(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    words = [f"w{i}" for i in range(30)]
    fake_a.queue(Reply(text=" ".join(words), chunk_delay=0.05))
    gateway = await start(gateway_factory, fake_a, fake_b, 0)
    body = {"model": "claude-x", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "count"}]}
    async with aiohttp.ClientSession() as session, session.post(
        gateway.url + "/v1/messages", json=body
    ) as stream:
        assert stream.status == 200
        assert stream.headers["x-babelgate-target"] == "a/model-a"
        head = await stream.content.readuntil(b"text_delta")  # under way on A

        route_to(gateway, "b/model-b")
        status, _ = await reload(session, gateway)
        assert status == 200
        assert await ask(session, gateway) == "b/model-b"  # new requests: B

        rest = await asyncio.wait_for(stream.content.read(), timeout=WAIT)
    whole = (head + rest).decode()
    assert "message_stop" in whole
    assert "event: error" not in whole
    text = "".join(
        piece.split('"text":"', 1)[1].split('"', 1)[0]
        for piece in whole.split("\n") if '"text_delta"' in piece
    )
    assert text == " ".join(words)
    assert len(fake_a.requests) == 1 and len(fake_b.requests) == 1


async def test_usage_records_keep_being_written_after_a_reload(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    """The books outlive a configuration: a request before and one after a reload are both
    in `babelgate usage`."""
    gateway = await start(gateway_factory, fake_a, fake_b, 0)
    async with aiohttp.ClientSession() as session:
        assert await ask(session, gateway) == "a/model-a"
        route_to(gateway, "b/model-b")
        status, _ = await reload(session, gateway)
        assert status == 200
        assert await ask(session, gateway) == "b/model-b"
    await stop_process(gateway.process)  # writes what is still queued
    result = subprocess.run(
        [sys.executable, "-m", "babelgate", "usage", "--by", "provider", "--json", "--config",
         str(gateway.config_path)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    groups = {g["name"]: g["requests"] for g in json.loads(result.stdout)["groups"]}
    assert groups == {"a": 1, "b": 1}


# ---------------------------------------------------------------- a broken file


async def test_a_broken_file_is_refused_and_the_old_routes_keep_serving(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    gateway = await start(gateway_factory, fake_a, fake_b, POLL)
    path = gateway.config_path
    good = path.read_text()
    async with aiohttp.ClientSession() as session:
        loaded_at = (await health(session, gateway))["config_loaded_at"]

        # Invalid YAML, told by the endpoint: refused with the reason, in OpenAI's shape.
        path.write_text(good.replace("routes:", "routes: [\n"))
        status, answer = await reload(session, gateway)
        assert status == 422
        assert answer["error"]["type"] == "invalid_request_error"
        assert answer["error"]["code"] == "config_invalid"
        assert "invalid YAML" in answer["error"]["message"]
        assert str(path) in answer["error"]["message"]
        state = await health(session, gateway)
        assert state["config_error"] == answer["error"]["message"]
        assert state["config_loaded_at"] == loaded_at
        assert await ask(session, gateway) == "a/model-a"

        # A validation error, found by the file watch: refused too.
        broken = {**gateway.config, "routes": {"default": "b/model-b"},
                  "providers": {**gateway.config["providers"],
                                "b": {**gateway.config["providers"]["b"], "bse_url": "x"}}}
        path.write_text(yaml.safe_dump(broken, sort_keys=False))
        state = await wait_health(session, gateway, "config_error",
                                  f"providers.b.bse_url: unknown field in {path}; remove it or "
                                  f"fix the spelling (known: {PROVIDER_FIELDS})")
        assert state["reloads"] == 0
        assert await ask(session, gateway) == "a/model-a"

        # Fixed: applied, and the error is gone.
        route_to(gateway, "b/model-b")
        state = await wait_health(session, gateway, "config_error", None)
        assert state["reloads"] == 1
        assert state["config_loaded_at"] > loaded_at
        assert await ask(session, gateway) == "b/model-b"
        health_text = str(await health(session, gateway))
    log = gateway.log()
    assert "ERROR" in log and "refused" in log and "invalid YAML" in log
    for key in (KEY_A, KEY_B):
        assert key not in log
        assert key not in health_text
        assert key not in str(answer)


async def test_settings_that_need_a_restart_are_named_and_the_rest_applied(
    gateway_factory: GatewayFactory, fake_a: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    gateway = await start(gateway_factory, fake_a, fake_b, 0)
    port = int(gateway.url.rsplit(":", 1)[1])
    async with aiohttp.ClientSession() as session:
        route_to(gateway, "b/model-b", server={"reload_poll": 0, "port": port + 1,
                                               "max_body_mb": 1})
        status, answer = await reload(session, gateway)
        assert status == 200
        assert answer["restart_pending"] == ["server.port", "server.max_body_mb"]
        assert await ask(session, gateway) == "b/model-b"  # the routes did change
        # Still listening where it was, still taking bodies over the new 1 MB.
        big = "x" * (2 * 2**20)
        assert await ask(session, gateway, big) == "b/model-b"
        state = await health(session, gateway)
        assert state["config_restart_pending"] == ["server.port", "server.max_body_mb"]
    assert "server.port, server.max_body_mb changed" in gateway.log()
    assert "restart" in gateway.log()


# ---------------------------------------------------------------- no file at start


async def test_without_a_file_a_reload_rediscovers_and_finds_a_new_babelgate_yaml(
    tmp_path: Path, fake_a: FakeOpenAI
) -> None:
    """Started from the environment (no key set: no provider), a reload runs the start-up
    discovery again: nothing changes and nothing crashes until ./babelgate.yaml appears; then
    it is read and watched."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(root / "src")}
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "babelgate", "serve", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", {}, tmp_path / "babelgate.yaml", log_path,
                      process)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_up(session, gateway)
            process.send_signal(signal.SIGHUP)
            state = await wait_health(session, gateway, "reloads", 1)
            assert state["config"] == "environment"
            assert state["providers"] == []

            config = {"providers": {"a": fake_a.provider_config()},
                      "routes": {"default": "a/model-a"},
                      "server": {"reload_poll": POLL}}
            gateway.config_path.write_text(yaml.safe_dump(config))
            status, answer = await reload(session, gateway)
            assert status == 200, answer
            assert answer["config"] == "babelgate.yaml"
            assert await ask(session, gateway) == "a/model-a"

            # From now on the file is watched.
            config["routes"] = {"default": "a/model-c"}
            gateway.config_path.write_text(yaml.safe_dump(config))
            await wait_health(session, gateway, "reloads", 3)
            assert await ask(session, gateway) == "a/model-c"
    finally:
        await stop_process(process)
    assert process.returncode == 0, gateway.log()


async def _wait_up(session: aiohttp.ClientSession, gateway: Gateway) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        assert gateway.process.poll() is None, gateway.log()
        try:
            await health(session, gateway)
            return
        except aiohttp.ClientError:
            assert time.monotonic() < deadline, gateway.log()
            await asyncio.sleep(0.1)
