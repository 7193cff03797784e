"""The upstream HTTP client (`babelgate.providers.http`) against raw servers on 127.0.0.1.

Every upstream here is a small `asyncio.start_server` that reads the request head and body
itself and writes exact response bytes, so each test controls the wire: framings, closes at
awkward moments, silences, compression.

Each test runs on asyncio's own event loop and on uvloop (tests/loops.py says why and how).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.loops import TEST_DEADLINE, on_asyncio_loop, on_each_loop

import babelgate
from babelgate.canonical import GatewayError
from babelgate.providers.http import HttpClient, UpstreamResponse

PAUSE_AT = 256 << 10  # the backpressure tests' threshold (the client's pause_at)
PATIENCE = 1.0  # seconds a server waits to observe something the client should do at once
NORMAL_TIMEOUT = 2.0  # the client's timeout when a test is not about timeouts


# ---------------------------------------------------------------------------- raw upstream
@dataclass
class Request:
    """One request as the upstream received it."""

    connection: int  # which accepted connection carried it: 0, 1, ...
    raw_head: bytes
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # in the order and spelling they were sent
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]

    def header(self, name: str) -> str:
        (value,) = self.values(name)
        return value


class Peer:
    """The upstream's side of one accepted connection."""

    def __init__(self, upstream: Upstream, index: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.upstream = upstream
        self.index = index
        self.reader = reader
        self.writer = writer

    async def request(self) -> Request | None:
        """The next request on this connection, or None when the client closed it."""
        try:
            raw_head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        request_line, *lines = raw_head[:-4].decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        headers = []
        for line in lines:
            name, value = line.split(":", 1)
            headers.append((name, value.strip()))
        lengths = [value for name, value in headers if name.lower() == "content-length"]
        body = await self.reader.readexactly(int(lengths[0])) if lengths else b""
        request = Request(self.index, raw_head, method, target, version, headers, body)
        self.upstream.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def client_closed(self) -> bool:
        """Whether the client closes this connection within PATIENCE (anything it still
        sends is skipped)."""
        try:
            async with asyncio.timeout(PATIENCE):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


Conversation = Callable[[Peer], Coroutine[Any, Any, None]]


class Upstream:
    """A raw HTTP/1.1 server on an ephemeral port; `conversation` runs once per accepted
    connection, and the connection is closed when it returns."""

    def __init__(self, conversation: Conversation, *, tls: Any = None) -> None:
        self.conversation = conversation
        self.tls = tls
        self.accepted = 0
        self.requests: list[Request] = []
        self.peers: list[Peer] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._conversations: set[asyncio.Task[None]] = set()
        self.faults: list[BaseException] = []  # raised by a conversation: the test fails with them
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for talking in list(self._conversations):
            talking.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for peer in self.peers:
            peer.close()
        if self.faults and exc_info[0] is None:
            raise self.faults[0]

    def url(self, path: str = "/v1/chat/completions?beta=true", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        peer = Peer(self, self.accepted, reader, writer)
        self.accepted += 1
        self.peers.append(peer)
        # The conversation runs in a task of its own, the one cancelled at the end of the
        # test: asyncio logs an error when the task it started for a connection is cancelled.
        talking = asyncio.create_task(self.conversation(peer))
        self._handlers.add(handler)
        self._conversations.add(talking)
        try:
            await asyncio.wait({talking})
        finally:
            writer.close()
            self._handlers.discard(handler)
            self._conversations.discard(talking)
        if talking.cancelled():
            return
        fault = talking.exception()
        # The client going away is what tests assert on, not a fault of the server's.
        if fault is not None and not isinstance(fault, ConnectionError
                                                | asyncio.IncompleteReadError):
            self.faults.append(fault)


def response(body: bytes = b'{"ok":true}', *, status: str = "200 OK",
             headers: tuple[str, ...] = ("content-type: application/json",)) -> bytes:
    """A complete answer framed by content-length."""
    lines = [f"HTTP/1.1 {status}", *headers, f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked_head(*headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", *headers, "transfer-encoding: chunked"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def answer_each(answer: bytes) -> Conversation:
    """Answer every request on every connection with `answer`, until the client closes."""

    async def conversation(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(answer)

    return conversation


@contextlib.asynccontextmanager
async def upstream_and_client(conversation: Conversation, **limits: Any) -> AsyncIterator[
        tuple[Upstream, HttpClient]]:
    """`limits`: the client's constructor parameters (max_body=..., keepalive=...)."""
    client = HttpClient(**limits)
    try:
        async with Upstream(conversation) as upstream:
            yield upstream, client
    finally:
        await client.close()


async def post(client: HttpClient, url: str, body: bytes = b'{"q":1}',
               headers: dict[str, str] | None = None,
               timeout: float = NORMAL_TIMEOUT) -> UpstreamResponse:
    return await client.post(url, body, headers or {}, timeout=timeout, upstream="test-up")


async def post_and_read(client: HttpClient, url: str, body: bytes = b'{"q":1}') -> bytes:
    answer = await post(client, url, body)
    return await answer.read()


async def failure(awaitable: Awaitable[Any]) -> GatewayError:
    """The GatewayError `awaitable` raises (the test fails when it raises none)."""
    with pytest.raises(GatewayError) as info:
        await awaitable
    return info.value


async def collect(answer: UpstreamResponse) -> list[bytes]:
    return [piece async for piece in answer.iter_chunks()]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------- 1. the request
@on_each_loop
async def test_post_sends_target_host_framing_callers_headers_and_exact_body() -> None:
    body = b'{"messages":[{"content":"h\xc3\xa9llo"}]}\x00\xff'  # any bytes, sent as they are
    async with upstream_and_client(answer_each(response(b'{"id":"r1"}'))) as (upstream, client):
        answer = await post(client, upstream.url("/v1/messages?beta=true&x=1"), body,
                            {"authorization": "Bearer sk-test", "X-Custom": "Value 1",
                             "content-type": "application/json"})
        assert answer.status == 200
        assert await answer.read() == b'{"id":"r1"}'

    (seen,) = upstream.requests
    assert (seen.method, seen.target, seen.version) == ("POST", "/v1/messages?beta=true&x=1",
                                                        "HTTP/1.1")
    assert seen.header("host") == f"127.0.0.1:{upstream.port}"
    assert seen.header("content-length") == str(len(body))
    assert seen.header("accept-encoding") == "identity"
    assert seen.header("user-agent") == f"babelgate/{babelgate.__version__}"
    assert seen.header("authorization") == "Bearer sk-test"
    assert seen.header("x-custom") == "Value 1"
    assert seen.header("content-type") == "application/json"
    assert seen.body == body


@on_each_loop
async def test_a_url_without_path_posts_to_root() -> None:
    async with upstream_and_client(answer_each(response())) as (upstream, client):
        await post_and_read(client, f"http://127.0.0.1:{upstream.port}")
    assert upstream.requests[0].target == "/"


@pytest.mark.parametrize("spelling", ["User-Agent", "user-agent", "USER-AGENT"])
@on_each_loop
async def test_callers_user_agent_replaces_the_default(spelling: str) -> None:
    async with upstream_and_client(answer_each(response())) as (upstream, client):
        answer = await post(client, upstream.url(), headers={spelling: "claude-cli/2.0"})
        await answer.read()
    (seen,) = upstream.requests
    assert seen.values("user-agent") == ["claude-cli/2.0"]
    assert seen.raw_head.lower().count(b"user-agent:") == 1


@on_each_loop
async def test_answer_status_headers_and_event_stream_flag() -> None:
    answer_bytes = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/event-stream; "
                    b"charset=utf-8\r\nRetry-After: 7\r\nX-Dup: a\r\nX-Dup: b\r\n"
                    b"Content-Length: 5\r\n\r\nslow!")
    async with upstream_and_client(answer_each(answer_bytes)) as (upstream, client):
        answer = await post(client, upstream.url())
        assert answer.status == 429  # an error status is an answer, not an exception
        assert answer.headers["retry-after"] == "7"  # names lower-cased
        assert answer.headers["x-dup"] == "a, b"
        assert answer.is_event_stream
        assert await answer.read() == b"slow!"
    async with upstream_and_client(answer_each(response())) as (upstream, client):
        answer = await post(client, upstream.url())
        assert not answer.is_event_stream
        await answer.read()


@on_each_loop
async def test_a_redirect_is_reported_not_followed() -> None:
    redirect = response(b"", status="307 Temporary Redirect",
                        headers=("location: http://127.0.0.1:1/elsewhere",))
    async with upstream_and_client(answer_each(redirect)) as (upstream, client):
        answer = await post(client, upstream.url())
        assert answer.status == 307
        assert answer.headers["location"] == "http://127.0.0.1:1/elsewhere"
        assert await answer.read() == b""
    assert len(upstream.requests) == 1


@on_each_loop
async def test_only_http_and_https_urls_are_accepted() -> None:
    client = HttpClient()
    try:
        error = await failure(post(client, "ftp://127.0.0.1/file"))
        assert error.kind == "connection"
        assert "ftp://127.0.0.1/file" in error.message
    finally:
        await client.close()


# ---------------------------------------------------------------------------- 2. keep-alive
@on_each_loop
async def test_sequential_requests_reuse_one_connection() -> None:
    async with upstream_and_client(answer_each(response(b"same"))) as (upstream, client):
        for n in range(5):
            assert await post_and_read(client, upstream.url(), f'{{"n":{n}}}'.encode()) == b"same"
    assert upstream.accepted == 1
    assert [request.body for request in upstream.requests] == [
        f'{{"n":{n}}}'.encode() for n in range(5)]


@on_each_loop
async def test_concurrent_requests_open_several_connections_then_reuse_them() -> None:
    all_in = asyncio.Event()

    async def answer_once_all_three_are_in(peer: Peer) -> None:
        while await peer.request() is not None:
            if len(peer.upstream.requests) == 3:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), PATIENCE)  # three at once, or fail
            await peer.send(response(str(peer.index).encode()))

    async with upstream_and_client(answer_once_all_three_are_in) as (upstream, client):
        answers = await asyncio.gather(*(post_and_read(client, upstream.url())
                                         for _ in range(3)))
        assert sorted(answers) == [b"0", b"1", b"2"]
        assert upstream.accepted == 3
        await post_and_read(client, upstream.url())
        await post_and_read(client, upstream.url())
        assert upstream.accepted == 3  # the idle ones served the next requests


@on_each_loop
async def test_the_most_recently_idle_connection_is_reused_first() -> None:
    both_in = asyncio.Event()

    async def answer_connection_one_last(peer: Peer) -> None:
        if await peer.request() is None:
            return
        if len(peer.upstream.requests) == 2:
            both_in.set()
        await asyncio.wait_for(both_in.wait(), PATIENCE)
        await asyncio.sleep(0.05 * peer.index)  # connection 1 goes back to the pool last
        await peer.send(response(str(peer.index).encode()))
        while await peer.request() is not None:
            await peer.send(response(str(peer.index).encode()))

    async with upstream_and_client(answer_connection_one_last) as (upstream, client):
        first_two = await asyncio.gather(post_and_read(client, upstream.url()),
                                         post_and_read(client, upstream.url()))
        assert sorted(first_two) == [b"0", b"1"]
        # The freshest idle connection is the least likely to have been closed by the
        # upstream's own idle timeout.
        assert await post_and_read(client, upstream.url()) == b"1"
        assert await post_and_read(client, upstream.url()) == b"1"
    assert upstream.accepted == 2


@on_each_loop
async def test_answer_with_connection_close_is_not_reused() -> None:
    observed: list[bool] = []

    async def say_close_but_keep_socket_open(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"bye", headers=("connection: close",)))
            observed.append(await peer.client_closed())

    async with upstream_and_client(say_close_but_keep_socket_open) as (upstream, client):
        assert await post_and_read(client, upstream.url()) == b"bye"
        assert await post_and_read(client, upstream.url()) == b"bye"
        assert upstream.accepted == 2
        while len(observed) < 1:
            await asyncio.sleep(0.01)
        assert observed[0], "the client kept the connection the upstream asked it to close"


@on_each_loop
async def test_an_idle_connection_past_keepalive_is_closed_not_reused() -> None:
    observed: list[bool] = []

    async def answer_then_watch(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response())
            observed.append(await peer.client_closed())

    async with upstream_and_client(answer_then_watch, keepalive=0.05) as (upstream, client):
        await post_and_read(client, upstream.url())
        await asyncio.sleep(0.1)
        await post_and_read(client, upstream.url())
        assert upstream.accepted == 2
        while not observed:
            await asyncio.sleep(0.01)
        assert observed[0]


@on_each_loop
async def test_client_close_closes_idle_connections() -> None:
    observed: list[bool] = []

    async def answer_then_watch(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response())
            observed.append(await peer.client_closed())

    async with Upstream(answer_then_watch) as upstream:
        client = HttpClient()
        await post_and_read(client, upstream.url())
        await client.close()
        while not observed:
            await asyncio.sleep(0.01)
        assert observed == [True]


# ---------------------------------------------------------------------------- 3. framings
@on_each_loop
async def test_chunked_body_is_yielded_piece_by_piece_as_it_arrives() -> None:
    pieces = [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"x" * 5000, b"data: [DONE]\n\n"]
    received = asyncio.Queue[bytes]()

    async def lockstep(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(chunked_head("content-type: text/event-stream"))
            for piece in pieces:
                await peer.send(chunk(piece))
                # The next piece only once the client has yielded this one: streaming, not
                # buffering the whole body.
                await asyncio.wait_for(received.get(), PATIENCE)
            await peer.send(LAST_CHUNK)

    async def read_in_lockstep(client: HttpClient, url: str) -> list[bytes]:
        answer = await post(client, url)
        assert answer.is_event_stream
        got = []
        async for piece in answer.iter_chunks():
            got.append(piece)
            received.put_nowait(piece)
        return got

    async with upstream_and_client(lockstep) as (upstream, client):
        assert await read_in_lockstep(client, upstream.url()) == pieces
        assert await read_in_lockstep(client, upstream.url()) == pieces
    assert upstream.accepted == 1  # the connection was kept after a chunked body


@on_each_loop
async def test_chunked_body_read_whole() -> None:
    body = b"".join(chunk(piece) for piece in (b"alpha ", b"beta ", b"gamma"))
    async with upstream_and_client(answer_each(chunked_head() + body + LAST_CHUNK)) as (
            upstream, client):
        assert await post_and_read(client, upstream.url()) == b"alpha beta gamma"
        assert await post_and_read(client, upstream.url()) == b"alpha beta gamma"
    assert upstream.accepted == 1


@pytest.mark.parametrize("reading", ["read", "iter_chunks"])
@on_each_loop
async def test_body_delimited_by_the_end_of_the_connection(reading: str) -> None:
    async def send_until_close(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst ")
            await asyncio.sleep(0.02)
            await peer.send(b"second")
            peer.close()

    async with upstream_and_client(send_until_close) as (upstream, client):
        for _ in range(2):  # the second one on a new connection: the first one ended
            answer = await post(client, upstream.url())
            body = (await answer.read() if reading == "read"
                    else b"".join(await collect(answer)))
            assert body == b"first second"
        assert upstream.accepted == 2


@on_each_loop
async def test_no_content_answer_has_an_empty_body_and_keeps_the_connection() -> None:
    async with upstream_and_client(answer_each(b"HTTP/1.1 204 No Content\r\n\r\n")) as (
            upstream, client):
        for _ in range(2):
            answer = await post(client, upstream.url())
            assert answer.status == 204
            assert await answer.read() == b""
    assert upstream.accepted == 1


@on_each_loop
async def test_interim_100_continue_is_skipped() -> None:
    answer_bytes = b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"final")
    async with upstream_and_client(answer_each(answer_bytes)) as (upstream, client):
        answer = await post(client, upstream.url())
        assert answer.status == 200
        assert await answer.read() == b"final"


# ---------------------------------------------------------------------------- 4. compression
def _deflate_zlib(data: bytes) -> bytes:
    return zlib.compress(data)


@pytest.mark.parametrize(("coding", "compress"), [("gzip", gzip.compress),
                                                   ("x-gzip", gzip.compress),
                                                   ("deflate", _deflate_zlib)])
@on_each_loop
async def test_compressed_whole_body_is_decoded(coding: str,
                                                compress: Callable[[bytes], bytes]) -> None:
    text = b'{"text":"' + b"compressible " * 2000 + b'"}'
    answer_bytes = response(compress(text), headers=(f"content-encoding: {coding}",))
    async with upstream_and_client(answer_each(answer_bytes)) as (upstream, client):
        assert await post_and_read(client, upstream.url()) == text
        assert await post_and_read(client, upstream.url()) == text
    assert upstream.accepted == 1


@on_each_loop
async def test_gzip_chunked_stream_is_decoded_as_it_arrives() -> None:
    events = [f'data: {{"n":{n},"pad":"{"z" * 300}"}}\n\n'.encode() for n in range(4)]
    received = asyncio.Queue[bytes]()

    async def gzip_lockstep(peer: Peer) -> None:
        if await peer.request() is None:
            return
        compressor = zlib.compressobj(wbits=31)  # gzip framing
        await peer.send(chunked_head("content-encoding: gzip",
                                     "content-type: text/event-stream"))
        for event in events:
            data = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
            await peer.send(chunk(data))
            await asyncio.wait_for(received.get(), PATIENCE)  # yielded before the next
        await peer.send(chunk(compressor.flush()) + LAST_CHUNK)

    async with upstream_and_client(gzip_lockstep) as (upstream, client):
        answer = await post(client, upstream.url())
        got = []
        async for piece in answer.iter_chunks():
            got.append(piece)
            received.put_nowait(piece)
        assert got == events


@on_each_loop
async def test_unsupported_content_encoding_is_a_connection_error() -> None:
    answer_bytes = response(b"\x1b\x00\x00", headers=("content-encoding: br",))
    async with upstream_and_client(answer_each(answer_bytes)) as (upstream, client):
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"
    assert "'br'" in error.message
    assert error.upstream == "test-up"


@on_each_loop
async def test_broken_gzip_body_is_a_connection_error() -> None:
    answer_bytes = response(b"this is not gzip at all", headers=("content-encoding: gzip",))
    async with upstream_and_client(answer_each(answer_bytes)) as (upstream, client):
        answer = await post(client, upstream.url())
        error = await failure(answer.read())
    assert error.kind == "connection"


# The limits: what an upstream can make the client hold in memory.
LIMIT = 1 << 20  # max_body of the tests below


def _gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzipped (about a thousandth of that), built a megabyte at a time."""
    compressor = zlib.compressobj(9, wbits=31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


@on_each_loop
async def test_a_gzip_bomb_is_cut_at_max_body_not_inflated_whole() -> None:
    bomb = _gzip_bomb(200 << 20)  # 200 MB inflated
    answer_bytes = response(bomb, headers=("content-encoding: gzip",))
    async with upstream_and_client(answer_each(answer_bytes), max_body=LIMIT) as (
            upstream, client):
        answer = await post(client, upstream.url())
        started = time.perf_counter()
        error = await failure(answer.read())
        # Inflating 200 MB takes ~0.5 s; stopping at the limit, milliseconds.
        assert time.perf_counter() - started < 0.3
    assert error.kind == "connection" and error.status == 502
    assert "larger than babelgate accepts" in error.message
    assert error.upstream == "test-up"


@on_each_loop
async def test_a_gzip_bomb_in_a_stream_is_cut_too() -> None:
    bomb = _gzip_bomb(64 << 20)

    async def bomb_in_chunks(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(chunked_head("content-encoding: gzip",
                                         "content-type: text/event-stream"))
            await peer.send(chunk(bomb) + LAST_CHUNK)

    async with upstream_and_client(bomb_in_chunks, max_body=LIMIT) as (upstream, client):
        answer = await post(client, upstream.url())
        pieces: list[bytes] = []
        with pytest.raises(GatewayError) as info:
            async for piece in answer.iter_chunks():
                pieces.append(piece)
    assert info.value.kind == "connection"
    assert all(len(piece) <= LIMIT for piece in pieces)


@pytest.mark.parametrize("size", [LIMIT, LIMIT + 1])
@on_each_loop
async def test_a_plain_body_up_to_max_body_is_read_and_one_byte_more_is_not(
        size: int) -> None:
    body = b"x" * size
    async with upstream_and_client(answer_each(response(body)), max_body=LIMIT) as (
            upstream, client):
        answer = await post(client, upstream.url())
        if size <= LIMIT:
            assert await answer.read() == body
            assert await post_and_read(client, upstream.url()) == body  # connection kept
            assert upstream.accepted == 1
        else:
            error = await failure(answer.read())
            assert error.kind == "connection"
            assert f"{LIMIT} bytes" in error.message


@on_each_loop
async def test_a_compressed_body_that_inflates_to_max_body_is_read() -> None:
    text = b"compressible " * (LIMIT // 13)
    answer_bytes = response(gzip.compress(text), headers=("content-encoding: gzip",))
    async with upstream_and_client(answer_each(answer_bytes), max_body=LIMIT) as (
            upstream, client):
        assert await post_and_read(client, upstream.url()) == text


@on_each_loop
async def test_headers_over_max_head_are_a_connection_error() -> None:
    headers = tuple(f"x-filler-{n}: {'v' * 100}" for n in range(40))  # ~4.5 KB
    async with upstream_and_client(answer_each(response(b"ok", headers=headers)),
                                   max_head=4096) as (upstream, client):
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"
    assert "headers exceed 4096 bytes" in error.message
    async with upstream_and_client(answer_each(response(b"ok", headers=headers)),
                                   max_head=8192) as (upstream, client):
        assert await post_and_read(client, upstream.url()) == b"ok"


# ---------------------------------------------------------------------------- 5. errors
@on_each_loop
async def test_connection_refused_is_a_connection_error() -> None:
    client = HttpClient()
    try:
        error = await failure(post(client, f"http://127.0.0.1:{closed_port()}/v1"))
    finally:
        await client.close()
    assert error.kind == "connection"
    assert error.upstream == "test-up"


@on_each_loop
async def test_close_without_answer_on_a_fresh_connection_is_a_connection_error() -> None:
    async def read_then_hang_up(peer: Peer) -> None:
        await peer.request()

    async with upstream_and_client(read_then_hang_up) as (upstream, client):
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"
    assert upstream.accepted == 1  # a fresh connection's failure is not retried


@pytest.mark.parametrize("reading", ["read", "iter_chunks"])
@on_each_loop
async def test_close_in_the_middle_of_a_sized_body_is_a_connection_error(reading: str) -> None:
    async def cut_off(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            await asyncio.sleep(0.02)

    async with upstream_and_client(cut_off) as (upstream, client):
        answer = await post(client, upstream.url())
        assert answer.status == 200
        if reading == "read":
            error = await failure(answer.read())
        else:
            got: list[bytes] = []

            async def read_chunks() -> None:
                async for piece in answer.iter_chunks():
                    got.append(piece)

            error = await failure(read_chunks())
            assert b"".join(got) == b"0123456789"  # what came is handed over first
    assert error.kind == "connection"


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 abc OK", b"garbage", b"HTTP/9 200 OK"])
@on_each_loop
async def test_malformed_status_line_is_a_connection_error(status_line: bytes) -> None:
    async def nonsense(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(status_line + b"\r\ncontent-length: 0\r\n\r\n")
            await peer.client_closed()

    async with upstream_and_client(nonsense) as (upstream, client):
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"


# ---------------------------------------------------------------------------- 6. stale keep-alive
@on_each_loop
async def test_kept_alive_connection_closed_by_the_upstream_is_retried_once() -> None:
    async def answer_one_then_hang_up_on_the_next(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(f"conn {peer.index}".encode()))
        if peer.index == 0:
            await peer.request()  # taken from the wire, then dropped without an answer
            return
        while await peer.request() is not None:
            await peer.send(response(f"conn {peer.index}".encode()))

    async with upstream_and_client(answer_one_then_hang_up_on_the_next) as (upstream, client):
        assert await post_and_read(client, upstream.url(), b"first") == b"conn 0"
        assert await post_and_read(client, upstream.url(), b"second") == b"conn 1"
    assert upstream.accepted == 2
    # The second request really went out on the old connection first, then again anew.
    assert [(r.connection, r.body) for r in upstream.requests] == [
        (0, b"first"), (0, b"second"), (1, b"second")]


@on_each_loop
async def test_upstream_closing_right_after_its_answer_does_not_fail_the_next_request() -> None:
    async def answer_and_hang_up(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"ok"))  # keep-alive by its headers, yet closed

    async with upstream_and_client(answer_and_hang_up) as (upstream, client):
        for _ in range(3):
            assert await post_and_read(client, upstream.url()) == b"ok"
    assert upstream.accepted == 3


@on_each_loop
async def test_the_retry_happens_once_only() -> None:
    async def answer_first_request_only(peer: Peer) -> None:
        if peer.index == 0 and await peer.request() is not None:
            await peer.send(response(b"ok"))
        await peer.request()  # dropped without an answer

    async with upstream_and_client(answer_first_request_only) as (upstream, client):
        assert await post_and_read(client, upstream.url()) == b"ok"
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"
    assert upstream.accepted == 2


@on_each_loop
async def test_part_of_an_answer_then_close_is_not_retried() -> None:
    async def answer_then_half_answer(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"ok"))
        if await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-")  # the request was taken

    async with upstream_and_client(answer_then_half_answer) as (upstream, client):
        assert await post_and_read(client, upstream.url()) == b"ok"
        error = await failure(post(client, upstream.url()))
    assert error.kind == "connection"
    assert upstream.accepted == 1
    assert len(upstream.requests) == 2


# ---------------------------------------------------------------------------- 7. timeouts
@on_each_loop
async def test_no_answer_within_the_timeout_is_a_timeout() -> None:
    async def never_answer(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(TEST_DEADLINE)

    async with upstream_and_client(never_answer) as (upstream, client):
        started = time.monotonic()
        error = await failure(post(client, upstream.url(), timeout=0.2))
        elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert error.upstream == "test-up"
    assert 0.15 <= elapsed < 1.0


@on_each_loop
async def test_a_stream_that_goes_silent_is_a_timeout_from_iter_chunks() -> None:
    async def one_piece_then_silence(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(chunked_head() + chunk(b"data: 1\n\n"))
            await asyncio.sleep(TEST_DEADLINE)

    async with upstream_and_client(one_piece_then_silence) as (upstream, client):
        answer = await post(client, upstream.url(), timeout=0.2)
        got: list[bytes] = []

        async def read_chunks() -> None:
            async for piece in answer.iter_chunks():
                got.append(piece)

        started = time.monotonic()
        error = await failure(read_chunks())
        elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert got == [b"data: 1\n\n"]
    assert elapsed < 1.0


@on_each_loop
async def test_a_body_that_keeps_trickling_does_not_time_out() -> None:
    pieces = [f"data: {n}\n\n".encode() for n in range(7)]

    async def trickle(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(chunked_head())
            for piece in pieces:  # 0.6 s in all, never silent for 0.3 s
                await asyncio.sleep(0.1)
                await peer.send(chunk(piece))
            await peer.send(LAST_CHUNK)

    async with upstream_and_client(trickle) as (upstream, client):
        started = time.monotonic()
        answer = await post(client, upstream.url(), timeout=0.3)
        assert b"".join(await collect(answer)) == b"".join(pieces)
        assert time.monotonic() - started > 0.55  # it did last longer than the timeout


@on_each_loop
async def test_a_slow_head_within_the_timeout_is_fine() -> None:
    async def think_then_answer(peer: Peer) -> None:
        if await peer.request() is not None:
            await asyncio.sleep(0.15)
            await peer.send(response(b"late but fine"))

    async with upstream_and_client(think_then_answer) as (upstream, client):
        answer = await post(client, upstream.url(), timeout=0.3)
        assert await answer.read() == b"late but fine"


@on_each_loop
async def test_a_kept_alive_connection_times_out_on_each_exchange_s_own_timeout() -> None:
    """The silence timer outlives an answer on a kept-alive connection (one per connection,
    not per exchange): the next exchange with a shorter timeout still fails at its own."""
    async def answer_the_first_only(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"first"))
        await peer.request()
        await asyncio.sleep(TEST_DEADLINE)

    async with upstream_and_client(answer_the_first_only) as (upstream, client):
        first = await post(client, upstream.url(), timeout=TEST_DEADLINE)
        assert await first.read() == b"first"
        started = time.monotonic()
        error = await failure(post(client, upstream.url(), timeout=0.2))
        elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert upstream.accepted == 1  # the same connection: its long timer did not hold
    assert 0.15 <= elapsed < 1.0


@on_each_loop
async def test_a_timer_left_by_an_earlier_exchange_does_not_cut_a_later_one_short() -> None:
    """The first exchange's deadline passes while the second waits on its answer, which
    comes within the second's own timeout: no timeout."""
    async def answer_late_the_second_time(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"first"))
        if await peer.request() is not None:
            await asyncio.sleep(0.25)
            await peer.send(response(b"second"))

    async with upstream_and_client(answer_late_the_second_time) as (upstream, client):
        first = await post(client, upstream.url(), timeout=0.3)
        assert await first.read() == b"first"
        await asyncio.sleep(0.15)  # the first's deadline falls inside the second's wait
        second = await post(client, upstream.url(), timeout=0.3)
        assert await second.read() == b"second"
    assert upstream.accepted == 1


# ---------------------------------------------------------------------------- 8. abandoning
async def _stop_reading_early(answer: UpstreamResponse, how: str) -> None:
    if how == "close":
        answer.close()
    elif how == "aclose":
        pieces = answer.iter_chunks()
        assert await anext(pieces) == b"part"
        await pieces.aclose()
    else:  # "break": the generator is finalised by the event loop's asyncgen hooks
        async for piece in answer.iter_chunks():
            assert piece == b"part"
            break


@pytest.mark.parametrize("how", ["close", "aclose", "break"])
@on_each_loop
async def test_a_response_left_before_its_end_drops_its_connection(how: str) -> None:
    observed = asyncio.Queue[bool]()

    async def part_then_watch(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npart")
            closed = await peer.client_closed()
            observed.put_nowait(closed)
            if not closed:  # finish the answer: a kept connection would now be reusable
                await peer.send(b"y" * 996)

    async with upstream_and_client(part_then_watch) as (upstream, client):
        answer = await post(client, upstream.url())
        await _stop_reading_early(answer, how)
        assert await observed.get(), "the connection of an abandoned answer stayed open"
        second = await post(client, upstream.url())
        assert upstream.accepted == 2
        second.close()


@on_each_loop
async def test_cancelling_post_closes_its_connection() -> None:
    observed = asyncio.Queue[bool]()
    arrived = asyncio.Event()

    async def take_request_and_watch(peer: Peer) -> None:
        if await peer.request() is not None:
            arrived.set()
            observed.put_nowait(await peer.client_closed())

    async with upstream_and_client(take_request_and_watch) as (upstream, client):
        waiting = asyncio.create_task(post(client, upstream.url()))
        await asyncio.wait_for(arrived.wait(), PATIENCE)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await observed.get(), "the cancelled exchange's connection stayed open"
        assert upstream.accepted == 1


@on_each_loop
async def test_closing_the_client_ends_a_read_in_progress() -> None:
    async def part_then_wait(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(chunked_head() + chunk(b"part"))
            await peer.client_closed()

    async with upstream_and_client(part_then_wait) as (upstream, client):
        answer = await post(client, upstream.url())
        reading = asyncio.create_task(collect(answer))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(GatewayError):
            await asyncio.wait_for(reading, PATIENCE)


# ---------------------------------------------------------------------------- 9. header injection
@pytest.mark.parametrize("headers", [{"x-note": "a\r\nx-injected: 1"}, {"x-note": "a\nb"},
                                     {"x-note": "a\rb"}, {"x-bad\r\nname": "v"}])
@on_each_loop
async def test_header_with_a_line_break_is_refused_and_nothing_is_sent(
        headers: dict[str, str]) -> None:
    async with upstream_and_client(answer_each(response(b"ok"))) as (upstream, client):
        error = await failure(post(client, upstream.url(), headers=headers))
        assert error.kind == "api_error"
        assert upstream.accepted == 0
        assert await post_and_read(client, upstream.url()) == b"ok"  # a kept connection...
        error = await failure(post(client, upstream.url(), headers=headers))
        assert error.kind == "api_error"
        assert await post_and_read(client, upstream.url()) == b"ok"  # ...stays clean
    assert upstream.accepted == 1
    assert len(upstream.requests) == 2
    assert all(b"injected" not in r.raw_head and b"x-note" not in r.raw_head
               for r in upstream.requests)


# ---------------------------------------------------------------------------- 10. backpressure
@on_each_loop
async def test_a_large_stream_read_slowly_arrives_whole_in_order() -> None:
    body = b"".join(n.to_bytes(4, "big") for n in range(2 << 20))  # 8 MB, order visible

    async def send_everything_then_small(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n\r\n"
                            .encode() + body)
        while await peer.request() is not None:
            await peer.send(response(b"small"))

    async with upstream_and_client(send_everything_then_small, pause_at=PAUSE_AT) as (
            upstream, client):
        answer = await post(client, upstream.url(), timeout=0.3)
        pieces: list[bytes] = []
        async for piece in answer.iter_chunks():
            pieces.append(piece)
            if len(pieces) == 2:
                # Longer than the timeout without reading: a paused stream is not silent.
                await asyncio.sleep(0.5)
            elif len(pieces) % 8 == 0:
                await asyncio.sleep(0.01)
        assert b"".join(pieces) == body
        # Reading paused at about a megabyte unread, so no piece is near the whole body.
        assert max(len(piece) for piece in pieces) <= 2 * PAUSE_AT
        assert await post_and_read(client, upstream.url()) == b"small"  # on the same,
        assert upstream.accepted == 1  # resumed connection


@on_each_loop
async def test_read_of_a_body_larger_than_the_pause_threshold_returns_it_whole() -> None:
    body = os.urandom(3 * PAUSE_AT)

    async def send_everything(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(body, headers=()))

    async with upstream_and_client(send_everything, pause_at=PAUSE_AT) as (upstream, client):
        answer = await post(client, upstream.url(), timeout=0.3)
        assert await asyncio.wait_for(answer.read(), PATIENCE) == body


# ---------------------------------------------------------------------------- 11. TLS
@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def _server_tls(cert_and_key: tuple[Path, Path]) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert_and_key)
    return context


# Runs in a fresh interpreter, so that SSL_CERT_FILE is read when the client first builds
# its TLS context; once on asyncio's loop, once on uvloop.
_TLS_CLIENT = """
import asyncio, sys, uvloop
from babelgate.providers.http import HttpClient

async def main():
    client = HttpClient()
    try:
        answer = await client.post(sys.argv[1], b'{"tls":1}', {}, timeout=5, upstream="tls")
        print(answer.status, (await answer.read()).decode())
    finally:
        await client.close()

asyncio.run(main())
uvloop.run(main())
"""


@on_asyncio_loop
async def test_https_with_a_trusted_certificate(tls_cert: tuple[Path, Path]) -> None:
    upstream = Upstream(answer_each(response(b"secret")), tls=_server_tls(tls_cert))
    async with upstream:
        env = {**os.environ, "SSL_CERT_FILE": str(tls_cert[0])}
        env.pop("SSL_CERT_DIR", None)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _TLS_CLIENT, upstream.url(scheme="https").replace(
                "127.0.0.1", "localhost"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), TEST_DEADLINE - 1)
    assert child.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["200 secret", "200 secret"]
    assert [r.body for r in upstream.requests] == [b'{"tls":1}', b'{"tls":1}']
    assert upstream.requests[0].header("host") == f"localhost:{upstream.port}"


@on_each_loop
async def test_https_with_an_untrusted_certificate_is_a_connection_error(
        tls_cert: tuple[Path, Path]) -> None:
    # Whatever the default trust store holds (SSL_CERT_FILE may name one), it cannot hold a
    # certificate made a moment ago.
    client = HttpClient()
    try:
        async with Upstream(answer_each(response()), tls=_server_tls(tls_cert)) as upstream:
            error = await failure(post(client, upstream.url(scheme="https")))
    finally:
        await client.close()
    assert error.kind == "connection"
    assert "certificate" in error.message.lower()
    assert upstream.requests == []
