"""Shared fixtures: strict fake upstreams (in-process, one per test) and the real gateway as a
subprocess in front of them.

    async def test_x(fake_openai, gateway_factory):
        fake_openai.queue(Reply(text="hi"))
        gw = await gateway_factory(fake_openai, model="gpt-test")
        ...  # talk to gw.url over HTTP, then assert on fake_openai.requests

Tests that need the gateway carry `@pytest.mark.gateway`; a gateway that does not start
fails the test with its log.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

# The fakes live in the `tests` package (also runnable as `python -m tests.fakes`), so the
# repository root must be importable whatever directory pytest was started from.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes import (  # noqa: E402
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeResponses,
    FakeUpstream,
)
from tests.fakes.core import free_port  # noqa: E402

pytest_plugins = ["tests.reuse_support"]  # the reuse tests' shared fixture

HEALTH_TIMEOUT = 15.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gateway: needs the babelgate server subprocess")
    config.addinivalue_line(
        "markers", "each_server: a server test run under our own server and the ASGI adapter "
        "(tests/server/conftest.py EACH_SERVER)")


# ---------------------------------------------------------------- fake upstreams


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
async def fake_responses() -> AsyncIterator[FakeResponses]:
    async with FakeResponses() as fake:
        yield fake


# ---------------------------------------------------------------- the gateway


@dataclass
class Gateway:
    """A running gateway: `url` (no trailing slash), its config and its log."""

    url: str
    config: dict[str, Any]
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def own_server(config: str, port: int) -> list[str]:
    return [sys.executable, "-m", "babelgate", "serve", "--config", config,
            "--host", "127.0.0.1", "--port", str(port)]


def uvicorn_server(config: str, port: int) -> list[str]:
    """The ASGI adapter under uvicorn, as docs/configuration.md shows it (the configuration
    comes from $BABELGATE_CONFIG)."""
    return [sys.executable, "-m", "uvicorn", "--factory", "babelgate.server.asgi:app_factory",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--timeout-graceful-shutdown", "1"]


def granian_server(config: str, port: int) -> list[str]:
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
            "babelgate.server.asgi:app_factory", "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--no-access-log"]


# How a gateway is started, by server name: our own HTTP server, or the ASGI adapter.
SERVER_COMMANDS = {"own": own_server, "uvicorn": uvicorn_server, "granian": granian_server}


class GatewayFactory:
    """Starts gateways for a test and stops them all at teardown; `server` names how
    (SERVER_COMMANDS)."""

    def __init__(self, workdir: Path, server: str = "own") -> None:
        self.workdir = workdir
        self.server = server
        self.gateways: list[Gateway] = []

    async def __call__(
        self,
        upstreams: FakeUpstream | Mapping[str, FakeUpstream | dict[str, Any]],
        *,
        model: str = "test-model",
        routes: dict[str, str] | None = None,
        preset: str | None = None,
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> Gateway:
        """`upstreams`: one fake (named "up"), or provider name -> fake or raw config dict.
        Without `routes`, `default` routes to the first provider's `model`."""
        config = build_config(upstreams, model, routes, preset, extra)
        gateway = self.spawn(config, env or {})
        self.gateways.append(gateway)
        await wait_healthy(gateway)
        return gateway

    def spawn(self, config: dict[str, Any], env: dict[str, str]) -> Gateway:
        index = len(self.gateways)
        # Stored Responses state stays inside the test's own directory.
        config.setdefault("storage", {"path": str(self.workdir / f"gateway-{index}.db")})
        config_path = self.workdir / f"gateway-{index}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = self.workdir / f"gateway-{index}.log"
        port = free_port()
        command = SERVER_COMMANDS[self.server](str(config_path), port)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "BABELGATE_CONFIG": str(config_path),
                     **env},
            )
        return Gateway(f"http://127.0.0.1:{port}", config, config_path, log_path, process)

    async def close(self) -> None:
        for gateway in self.gateways:
            await stop_process(gateway.process)


def build_config(
    upstreams: FakeUpstream | Mapping[str, FakeUpstream | dict[str, Any]],
    model: str,
    routes: dict[str, str] | None,
    preset: str | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    named = {"up": upstreams} if isinstance(upstreams, FakeUpstream) else dict(upstreams)
    providers: dict[str, Any] = {}
    for name, upstream in named.items():
        entry = upstream.provider_config() if isinstance(upstream, FakeUpstream) else upstream
        if preset is not None:
            entry = {**entry, "preset": preset}
        providers[name] = entry
    first = next(iter(providers))
    config: dict[str, Any] = {
        "providers": providers,
        "routes": routes or {"default": f"{first}/{model}"},
    }
    config.update(extra or {})
    return config


async def wait_healthy(gateway: Gateway) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                pytest.fail(f"gateway exited with {gateway.process.returncode}:\n{gateway.log()}")
            try:
                async with session.get(gateway.url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"gateway not healthy after {HEALTH_TIMEOUT} s:\n{gateway.log()}")


async def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
    deadline = time.monotonic() + grace
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path)
    yield factory
    await factory.close()
