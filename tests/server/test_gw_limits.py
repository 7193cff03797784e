"""What one client can take of the real gateway process (`python -m babelgate serve`), as an
attacker would try it over raw sockets, measured from outside: the process's resident memory
(VmRSS in /proc/PID/status), its open-files limit, and how soon a normal request is answered
meanwhile. Each test starts its own gateway, so that no other test's traffic moves the
figures."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI

from babelgate.config import ServerConfig
from babelgate.server.http import Limits
from babelgate.server.run import FILES_SPARED, limits

pytestmark = pytest.mark.gateway

MB = 2**20


def rss(gateway: Gateway) -> int:
    """The gateway process's resident memory, in bytes."""
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def address(gateway: Gateway) -> tuple[str, int]:
    parts = urlsplit(gateway.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def settled_rss(gateway: Gateway, seconds: float = 3.0) -> int:
    """RSS once freed memory has had time to go back to the system (the gateway trims its
    heap every 250 ms): the lowest of the readings over `seconds`."""
    lowest = rss(gateway)
    for _ in range(int(seconds / 0.25)):
        await asyncio.sleep(0.25)
        lowest = min(lowest, rss(gateway))
    return lowest


async def timed_request(gateway: Gateway) -> float:
    """Seconds a GET /health takes on a new connection, answer read in full."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address(gateway))
    try:
        writer.write(b"GET /health HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    return time.monotonic() - started


@contextlib.contextmanager
def open_files(count: int) -> Iterator[None]:
    """Lets this process hold `count` more sockets (skips if the system will not)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the open files limit ({hard}) is below {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def start(gateway_factory: GatewayFactory, fake_openai: FakeOpenAI,
                **server: Any) -> Gateway:
    return await gateway_factory(fake_openai, model="gpt-up", extra={"server": server})


# ---------------------------------------------------------------------------- pipelining
async def test_a_client_pipelining_without_reading_cannot_grow_the_process(
        gateway_factory: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """One connection sends request after request for 15 s and reads no answer. Answers
    the client does not take are its to hold, in its socket, not ours: the gateway stops
    reading that connection once a bounded amount of answers waits unsent."""
    gateway = await start(gateway_factory, fake_openai)
    baseline = await settled_rss(gateway)
    requests = b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n" * 20
    peak = baseline
    until = time.monotonic() + 15
    while time.monotonic() < until:
        # More than server.max_pipelined requests read at once are refused and the
        # connection closed: the attacker connects again and goes on.
        with socket.create_connection(address(gateway)) as client:
            client.setblocking(False)
            with contextlib.suppress(ConnectionError):
                while time.monotonic() < until:
                    with contextlib.suppress(BlockingIOError):
                        client.send(requests)
                    peak = max(peak, rss(gateway))
                    await asyncio.sleep(0.005)
    after = await settled_rss(gateway)
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB (baseline {baseline / MB:.0f} MB)"
    assert after < baseline + 10 * MB, f"{after / MB:.0f} MB after, {baseline / MB:.0f} before"
    assert await timed_request(gateway) < 1


# ---------------------------------------------------------------------------- aborted uploads
async def test_aborted_uploads_leave_no_memory_behind(
        gateway_factory: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """600 clients announce a 1 MB body, send part of it and go. What they sent must be
    freed when they go: a reference cycle (connection and parser, an exception and its
    frames) would keep each partial body until a full garbage collection."""
    gateway = await start(gateway_factory, fake_openai)
    head = (b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: 1048576\r\n\r\n")
    part = b'{"model": "gpt-up", "messages": [' + b" " * (300 * 1024)

    async def upload() -> None:
        _, writer = await asyncio.open_connection(*address(gateway))
        writer.write(head + part)
        await writer.drain()
        await asyncio.sleep(0.02)  # read by the gateway before the client goes
        writer.close()
        await writer.wait_closed()

    for _ in range(20):  # the allocator's first growth is not what this measures
        await upload()
    baseline = await settled_rss(gateway)
    for _ in range(600 // 10):
        await asyncio.gather(*(upload() for _ in range(10)))
    after = await settled_rss(gateway)
    assert after < baseline + 30 * MB, f"{after / MB:.0f} MB after, {baseline / MB:.0f} before"


# ---------------------------------------------------------------------------- deadlines
async def test_a_head_trickling_in_is_answered_408_and_closed(
        gateway_factory: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gateway = await start(gateway_factory, fake_openai, head_timeout=1.5)
    reader, writer = await asyncio.open_connection(*address(gateway))
    started = time.monotonic()
    try:
        for byte in b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-slow: " + b"s" * 100:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)  # every byte well within the idle timeout
            if reader.at_eof() or len(reader._buffer):
                break
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close\r\n" in answer
    assert b"head did not arrive within 1.5 s" in answer
    assert b'"type":"error"' in answer  # in the error format of the path's protocol
    assert 1.5 <= elapsed < 1.5 + 2  # the deadline is checked once a second


async def test_two_thousand_trickling_connections_leave_others_served(
        gateway_factory: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """Each of 2,000 connections sends a byte of its head now and then, which resets the idle
    clock; none may keep a normal request from being answered at once."""
    gateway = await start(gateway_factory, fake_openai)
    with open_files(2000), contextlib.ExitStack() as stack:
        clients = []
        for _ in range(2000):
            client = stack.enter_context(socket.create_connection(address(gateway)))
            client.setblocking(False)
            client.send(b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\n")
            clients.append(client)
        for _ in range(3):
            for client in clients:
                with contextlib.suppress(OSError):
                    client.send(b"x")  # one more byte of a header name
            assert await timed_request(gateway) < 1
            await asyncio.sleep(0.5)


async def test_the_gateway_raises_its_open_files_limit_and_takes_server_limits(
        gateway_factory: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gateway = await start(gateway_factory, fake_openai, max_body_mb=0.0625)  # 64 KiB
    limits = Path(f"/proc/{gateway.process.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    assert soft == hard
    reader, writer = await asyncio.open_connection(*address(gateway))
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
                     b"content-length: 65537\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"larger than 64 KiB" in answer


# ---------------------------------------------------------------------------- settings
def test_the_settings_defaults_are_the_servers_defaults() -> None:
    assert limits(ServerConfig()) == Limits()
    assert ServerConfig().head_timeout <= 60  # a trickling head is closed within a minute


def test_settings_become_limits_and_the_cap_fits_the_open_files_limit() -> None:
    config = ServerConfig(max_head_kb=8, max_body_mb=1.5, head_timeout=5, body_timeout=9,
                          keepalive_timeout=7, max_connections=5000, max_pipelined=3,
                          max_unsent_kb=32)
    assert limits(config) == Limits(
        max_head_bytes=8192, max_body_bytes=1536 * 1024, head_timeout=5, body_timeout=9,
        keepalive=7, max_connections=5000, max_pipelined=3, max_unsent_bytes=32768)
    # Room for an upstream connection per client, and some descriptors spared.
    assert limits(config, open_files=1124).max_connections == (1124 - FILES_SPARED) // 2
    assert limits(config, open_files=1_048_576).max_connections == 5000
