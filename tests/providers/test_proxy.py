"""Reaching upstreams through proxies and over TLS, against real servers the tests start:
pproxy (from PyPI; one port speaks HTTP CONNECT and SOCKS5) and fake upstreams on
https://127.0.0.1 with a CA and certificate made by trustme. pproxy's verbose log names
every tunnel it opened (`http 127.0.0.1:50000 -> 127.0.0.1:41234`), which is how a test
knows a request went through it, or did not.

The environment rules (NO_PROXY's forms) are plain functions, tested as such at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.core import free_port

from babelgate.canonical import GatewayError
from babelgate.providers.http import HttpClient, Route
from babelgate.providers.proxy import Proxy, bypassed, parse_proxy, proxy_from_env

# pproxy 2.7 asks for the event loop the way uvloop's policy no longer allows: it runs on
# asyncio's own loop (it tries uvloop only if it can import it).
PPROXY = ("import sys; sys.modules['uvloop'] = None; from pproxy.server import main; "
          "sys.argv = ['pproxy'] + sys.argv[1:]; main()")


@dataclass
class RealProxy:
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tunnels(self) -> list[str]:
        """Each tunnel pproxy opened, as `http -> 127.0.0.1:41234` / `socks5 -> host:port`."""
        lines = self.log_path.read_text().splitlines()
        return [f"{line.split()[0]} -> {line.split(' -> ')[1]}" for line in lines
                if " -> " in line]


@contextlib.contextmanager
def pproxy(workdir: Path, auth: str | None = None) -> Iterator[RealProxy]:
    """pproxy on a free port; with `auth` ("user:password") every connection must give it
    (`--auth 0`: pproxy would otherwise trust an address once it authenticated)."""
    port = free_port()
    log_path = workdir / f"pproxy-{port}.log"
    listen = f"http+socks5://127.0.0.1:{port}" + (f"#{auth}" if auth else "")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", PPROXY, "-l", listen, "-v", "--auth", "0"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while "Serving on" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "pproxy did not start"
            time.sleep(0.05)
        yield RealProxy(port, log_path)
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
def real_proxy(tmp_path: Path) -> Iterator[RealProxy]:
    with pproxy(tmp_path) as proxy:
        yield proxy


@dataclass
class Tls:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA of the test's own, and a server certificate for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(ca_file, server)


@pytest.fixture
async def https_fake(tls: Tls) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key="sk-tls-SECRET")
    await fake.start(tls=tls.server)
    yield fake
    await fake.stop()


async def ask(gw: Gateway, model: str, stream: bool = False) -> tuple[int, bytes]:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/chat/completions", data=orjson.dumps(body),
        headers={"content-type": "application/json"},
    ) as resp:
        return resp.status, await resp.read()


# ---------------------------------------------------------------------------- through the gateway


async def test_http_proxy_from_the_environment_and_no_proxy_bypass(
    gateway_factory: GatewayFactory, real_proxy: RealProxy
) -> None:
    async with FakeOpenAI(api_key="sk-a") as proxied, FakeOpenAI(api_key="sk-b") as direct:
        gw = await gateway_factory(
            {"proxied": proxied.provider_config(), "direct": direct.provider_config()},
            routes={"via-proxy": "proxied/gpt-up", "no-proxy": "direct/gpt-up"},
            # NO_PROXY with a port: the same host, only the `direct` fake's port bypasses.
            env={"HTTP_PROXY": f"http://{real_proxy.address}",
                 "NO_PROXY": f"example.com,127.0.0.1:{direct.port}"})
        for model in ("via-proxy", "no-proxy", "via-proxy"):
            status, raw = await ask(gw, model)
            assert status == 200, raw
        status, raw = await ask(gw, "via-proxy", stream=True)
        assert status == 200 and b"[DONE]" in raw
        assert len(proxied.requests) == 3 and len(direct.requests) == 1
        # One tunnel, kept alive for all three requests; nothing towards the bypassed fake.
        assert real_proxy.tunnels() == [f"http -> 127.0.0.1:{proxied.port}"]


async def test_socks5_proxy_of_a_provider(
    gateway_factory: GatewayFactory, real_proxy: RealProxy
) -> None:
    async with FakeOpenAI(api_key="sk-a") as fake:
        by_name = f"http://localhost:{fake.port}/v1"
        gw = await gateway_factory(
            {"remote": fake.provider_config(base_url=by_name,
                                            proxy=f"socks5h://{real_proxy.address}"),
             "local": fake.provider_config(base_url=by_name,
                                           proxy=f"socks5://{real_proxy.address}")},
            routes={"h": "remote/gpt-up", "plain": "local/gpt-up"},
            # A provider's own proxy wins over the environment.
            env={"ALL_PROXY": "http://127.0.0.1:9"})
        assert (await ask(gw, "h"))[0] == 200
        assert (await ask(gw, "plain"))[0] == 200
        # socks5h hands the proxy the name; socks5 resolves it here and hands an address.
        tunnels = real_proxy.tunnels()
        assert tunnels[0] == f"socks5 -> localhost:{fake.port}"
        assert tunnels[1] in (f"socks5 -> 127.0.0.1:{fake.port}", f"socks5 -> ::1:{fake.port}")
        async with aiohttp.ClientSession() as session, session.get(gw.url + "/health") as resp:
            health = await resp.json()
        shown = {p["name"]: p.get("proxy") for p in health["providers"]}
        assert shown == {"remote": f"socks5h://{real_proxy.address}",
                         "local": f"socks5://{real_proxy.address}"}


async def test_https_upstream_with_ca_file_and_through_a_connect_tunnel(
    gateway_factory: GatewayFactory, real_proxy: RealProxy, https_fake: FakeOpenAI, tls: Tls
) -> None:
    assert https_fake.base_url.startswith("https://127.0.0.1:")
    gw = await gateway_factory(
        {"tls": https_fake.provider_config(ca_file=str(tls.ca_file)),
         "tunnel": https_fake.provider_config(ca_file=str(tls.ca_file),
                                              proxy=f"http://{real_proxy.address}"),
         "untrusted": https_fake.provider_config()},
        routes={"tls": "tls/gpt-up", "tunnel": "tunnel/gpt-up", "untrusted": "untrusted/gpt-up"})
    for model in ("tls", "tunnel"):
        status, raw = await ask(gw, model)
        assert status == 200, raw
    status, raw = await ask(gw, "tunnel", stream=True)
    assert status == 200 and b"[DONE]" in raw
    assert real_proxy.tunnels() == [f"http -> 127.0.0.1:{https_fake.port}"]
    # Without the CA, the certificate is refused: the upstream's fault, a 502.
    status, raw = await ask(gw, "untrusted")
    assert status == 502
    assert b"CERTIFICATE_VERIFY_FAILED" in raw or b"certificate verify failed" in raw
    assert len(https_fake.requests) == 3


async def test_https_upstream_trusted_through_ssl_cert_file(
    gateway_factory: GatewayFactory, tls: Tls, tmp_path: Path
) -> None:
    async with FakeAnthropic(api_key="sk-ant-tls") as fake:
        await fake.stop()
        await fake.start(tls=tls.server)
        gw = await gateway_factory(fake, model="claude-up",
                                   env={"SSL_CERT_FILE": str(tls.ca_file)})
        body = {"model": "claude-x", "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/messages", data=orjson.dumps(body),
            headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        assert len(fake.requests) == 1


async def test_proxy_credentials_are_sent_and_never_shown(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    with pproxy(tmp_path, auth="me:pr0xy-PASS") as proxy:
        async with FakeOpenAI(api_key="sk-a") as fake:
            good = f"me:pr0xy-PASS@{proxy.address}"
            gw = await gateway_factory(
                {"http": fake.provider_config(proxy=f"http://{good}"),
                 "socks": fake.provider_config(proxy=f"socks5h://{good}"),
                 "wrong": fake.provider_config(
                     proxy=f"socks5h://me:wr0ng-PASS@{proxy.address}")},
                routes={"http": "http/gpt-up", "socks": "socks/gpt-up",
                        "wrong": "wrong/gpt-up"})
            assert (await ask(gw, "http"))[0] == 200
            assert (await ask(gw, "socks"))[0] == 200
            status, raw = await ask(gw, "wrong")
            assert status == 502, raw
            assert f"socks5h://{proxy.address}".encode() in raw
            assert len(fake.requests) == 2
            assert proxy.tunnels() == [f"http -> 127.0.0.1:{fake.port}",
                                       f"socks5 -> 127.0.0.1:{fake.port}"]
            assert "Unauthorized SOCKS b'me':b'wr0ng-PASS'" in proxy.log_path.read_text()
            async with aiohttp.ClientSession() as session, session.get(
                    gw.url + "/health") as resp:
                health = await resp.text()
            for secret in ("pr0xy-PASS", "wr0ng-PASS"):
                assert secret not in health and secret not in gw.log()
                assert secret.encode() not in raw


# ---------------------------------------------------------------------------- the client itself


async def test_a_proxy_that_refuses_is_a_connection_error_naming_it() -> None:
    """A raw server answers CONNECT with 407: the error names the proxy, not its password,
    and the CONNECT carried the credentials."""
    heads: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient()
    route = Route(parse_proxy(f"http://user:pa%20ss@127.0.0.1:{port}"))
    try:
        with pytest.raises(GatewayError) as caught:
            await client.post("https://api.example.test/v1/chat/completions", b"{}", {},
                              timeout=5, upstream="up", route=route)
    finally:
        await client.close()
        server.close()
    message = caught.value.message
    assert caught.value.kind == "connection"
    assert f"proxy http://127.0.0.1:{port} refused the tunnel" in message
    assert "407 Proxy Authentication Required" in message and "pa ss" not in message
    assert heads[0].startswith(b"CONNECT api.example.test:443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpwYSBzcw==\r\n" in heads[0]  # user:pa ss


async def test_a_proxy_that_is_down_is_a_connection_error_naming_it() -> None:
    client = HttpClient()
    port = free_port()  # nothing listens there
    try:
        with pytest.raises(GatewayError) as caught:
            await client.post("http://127.0.0.1:1/x", b"{}", {}, timeout=5, upstream="up",
                              route=Route(parse_proxy(f"socks5://127.0.0.1:{port}")))
    finally:
        await client.close()
    assert caught.value.kind == "connection"
    assert f"through proxy socks5://127.0.0.1:{port}" in caught.value.message


# ---------------------------------------------------------------------------- the environment


def env_proxy(url: str, **env: str) -> str | None:
    found = proxy_from_env(url, env)
    return None if found is None else found.shown


def test_the_proxy_variable_follows_the_scheme_lower_case_first() -> None:
    assert env_proxy("https://api.x.com", HTTPS_PROXY="http://p:3128") == "http://p:3128"
    assert env_proxy("https://api.x.com", https_proxy="socks5h://low:1",
                     HTTPS_PROXY="http://up:2") == "socks5h://low:1"
    assert env_proxy("https://api.x.com", HTTP_PROXY="http://p:3128") is None
    assert env_proxy("http://api.x.com", HTTP_PROXY="http://p:3128") == "http://p:3128"
    assert env_proxy("http://api.x.com", http_proxy="p2:8080") == "http://p2:8080"
    assert env_proxy("https://api.x.com", ALL_PROXY="socks5://s") == "socks5://s:1080"
    assert env_proxy("https://api.x.com", HTTPS_PROXY="http://a:1",
                     ALL_PROXY="http://b:2") == "http://a:1"
    assert env_proxy("https://api.x.com") is None


@pytest.mark.parametrize(("host", "port", "no_proxy", "direct"), [
    ("api.x.com", 443, "*", True),
    ("api.x.com", 443, "x.com", True),
    ("api.x.com", 443, ".x.com", True),
    ("x.com", 443, ".x.com", True),
    ("notx.com", 443, "x.com", False),
    ("api.x.com", 443, "other.com, x.com", True),
    ("api.x.com", 443, "other.com x.com", True),
    ("API.X.COM".lower(), 443, "X.com", True),
    ("api.x.com", 443, "x.com:443", True),
    ("api.x.com", 443, "x.com:8443", False),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("10.1.2.4", 80, "10.1.2.3", False),
    ("::1", 80, "::1", True),
    ("::1", 8080, "[::1]:8080", True),
    ("::1", 80, "[::1]:8080", False),
    ("127.0.0.1", 80, "localhost", False),
    ("api.x.com", 443, "", False),
])
def test_no_proxy_forms(host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert bypassed(host, port, no_proxy) is direct


def test_no_proxy_applies_to_the_environment_proxy() -> None:
    assert env_proxy("https://api.x.com/v1", HTTPS_PROXY="http://p:1", NO_PROXY="x.com") is None
    assert env_proxy("https://api.x.com/v1", HTTPS_PROXY="http://p:1",
                     no_proxy="y.com", NO_PROXY="x.com") == "http://p:1"  # lower case wins


@pytest.mark.parametrize(("url", "problem"), [
    ("https://p:1", "proxy scheme 'https' is not supported"),
    ("socks4://p:1", "proxy scheme 'socks4' is not supported"),
    ("http://:8080", "names no host"),
    ("http://p:99999", "port"),
])
def test_bad_proxy_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_proxy(url)


def test_a_proxy_password_is_never_shown() -> None:
    proxy = parse_proxy("http://me:s3cret-PASS@p.example:3128")
    assert proxy == Proxy("http", "p.example", 3128, "me", "s3cret-PASS")
    assert "s3cret" not in repr(proxy) and "s3cret" not in proxy.shown


def test_bad_proxy_and_ca_file_are_configuration_errors(tmp_path: Path) -> None:
    from babelgate.config import ConfigError, load_settings

    for extra, expected in (
        ({"proxy": "ftp://me:s3cret@p:1"}, "providers.up.proxy: proxy scheme 'ftp'"),
        ({"ca_file": str(tmp_path / "none.pem")}, "providers.up.ca_file: file"),
    ):
        path = tmp_path / "babelgate.yaml"
        config: dict[str, Any] = {"providers": {"up": {
            "type": "openai", "base_url": "https://api.x.com/v1", **extra}}}
        path.write_text(orjson.dumps(config).decode())
        with pytest.raises(ConfigError) as caught:
            load_settings(path)
        assert expected in str(caught.value) and str(path) in str(caught.value)
        assert "s3cret" not in str(caught.value)


def test_an_unusable_proxy_variable_is_a_configuration_error(tmp_path: Path) -> None:
    from babelgate.config import ConfigError, load_settings

    path = tmp_path / "babelgate.yaml"
    path.write_text("providers:\n  up: {type: openai, base_url: 'https://api.x.com/v1'}\n"
                    "  own: {type: openai, base_url: 'https://api.y.com/v1', "
                    "proxy: 'socks5://127.0.0.1:1080'}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"HTTPS_PROXY": "https://me:s3cret@proxy.x.com:443"})
    message = str(caught.value)
    assert message.startswith("providers.up: the environment's proxy is unusable "
                              "(HTTPS_PROXY: proxy scheme 'https' is not supported")
    assert str(path) in message and "s3cret" not in message
    # Bypassed for that host, or every provider with a proxy of its own: no error.
    load_settings(path, env={"HTTPS_PROXY": "https://p:1", "NO_PROXY": "x.com"})
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        load_settings(path, env={"HTTPS_PROXY": "https://p:1", "NO_PROXY": "y.com"})
