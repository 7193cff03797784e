"""Our HTTP/1.1 server (`babelgate.server.http`) against raw client sockets on 127.0.0.1.

Each test starts a `Server` with a small handler written in the test, talks to it through
`asyncio.open_connection` and writes the exact request bytes itself; answers are read by a
strict reader of our own (not httptools), so framing mistakes (a missing CRLF, a stray zero
chunk, body bytes after a HEAD head) fail the test instead of being smoothed over.

Like tests/test_http_client.py, every test runs on asyncio's own loop and on uvloop (the
server sits directly on transports, which the two loops implement separately), as a plain
function wrapped by `on_each_loop`: the wrapper picks the loop and puts a deadline on the
whole test, so a server that hangs fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import random
import re
import socket
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import pytest
from tests.loops import on_each_loop

from babelgate.server import http
from babelgate.server.http import Headers, Limits, Request, Response, Server

PATIENCE = 1.0  # seconds a client waits for something the server should do at once
QUIET = 0.2  # seconds a client listens before concluding that the server sends nothing


# ---------------------------------------------------------------------------- the server side
def refusal(path: str, status: int, message: str) -> tuple[bytes, Headers]:
    """The test's refusal format: says which status, path and reason it was given, so a test
    can check that the server asked for exactly this refusal."""
    return f"refused {status} at {path!r}: {message}".encode(), [(b"content-type", b"text/x-r")]


def refused(status: int, path: str) -> bytes:
    """The start of the body `refusal` gives for `status` at `path`."""
    return f"refused {status} at {path!r}: ".encode()


Handler = Callable[[Request, Response], Coroutine[Any, Any, None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, tick: float = 1.0, **limits: Any) -> AsyncIterator[Server]:
    """A server for `handler` on a free port; `limits` are fields of http.Limits."""
    server = Server(handler, refusal, Limits(**limits), tick)
    await server.listen("127.0.0.1", 0)
    try:
        yield server
    finally:
        if not server.stopping:
            await server.stop(0)


class Recorder:
    """A handler that keeps every request and answers each with a whole 200 response naming
    its method and path, followed by its body."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request, response: Response) -> None:
        self.requests.append(request)
        response.send(200, answer_body(request.method, request.path, request.body),
                      [(b"content-type", b"text/plain")])


def answer_body(method: str, path: str, body: bytes = b"") -> bytes:
    return f"{method} {path}|".encode() + body


# ---------------------------------------------------------------------------- the client side
def request(method: str = "GET", target: str = "/", *headers: str, body: bytes | None = None,
            version: str = "HTTP/1.1") -> bytes:
    """Request bytes; a body gets its content-length unless `headers` frame it otherwise."""
    lines = [f"{method} {target} {version}", "host: test", *headers]
    framed = any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers)
    if body is not None and not framed:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) (\d{3}) ([^\r\n]*)")


@dataclass
class Answer:
    """One response as it came over the wire."""

    version: str
    status: int
    reason: str
    head: bytes
    headers: list[tuple[str, str]]  # names lower-cased, in the order they came
    body: bytes = b""
    chunks: list[bytes] | None = None  # the chunks as framed, when the body was chunked

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


class Client:
    """A raw connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, *, to_head: bool = False) -> Answer:
        """The next response, its body framed as its head says (none after a HEAD)."""
        async with asyncio.timeout(PATIENCE):
            head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        matched = STATUS_LINE.fullmatch(status_line)
        assert matched is not None, f"bad status line {status_line!r}"
        headers = []
        for line in lines:
            name, colon, value = line.partition(b": ")
            assert colon and name and value == value.strip(), f"bad header line {line!r}"
            headers.append((name.decode().lower(), value.decode("latin-1")))
        answer = Answer(matched[1].decode(), int(matched[2]), matched[3].decode(), head, headers)
        if to_head or answer.status < 200:
            return answer
        encoding, length = answer.header("transfer-encoding"), answer.header("content-length")
        if encoding is not None:
            assert encoding == "chunked" and length is None, answer.head
            answer.chunks = await self.chunks()
            answer.body = b"".join(answer.chunks)
        elif length is not None:
            answer.body = await self.reader.readexactly(int(length))
        else:  # unframed: the body ends with the connection
            answer.body = await self.reader.read()
        return answer

    async def chunks(self) -> list[bytes]:
        chunks = []
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            assert re.fullmatch(rb"[0-9a-f]+\r\n", size_line), f"bad chunk size {size_line!r}"
            size = int(size_line, 16)
            data = await self.reader.readexactly(size)
            assert await self.reader.readexactly(2) == b"\r\n", "chunk not ended by CRLF"
            if size == 0:
                return chunks
            chunks.append(data)

    async def closed(self, within: float = PATIENCE) -> bool:
        """Whether the server closes the connection within `within` seconds (sending nothing
        more before it)."""
        try:
            async with asyncio.timeout(within):
                rest = await self.reader.read()
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        assert rest == b"", f"bytes before the close: {rest[:300]!r}"
        return True

    async def quiet(self, seconds: float = QUIET) -> None:
        """Fails unless the server sends nothing (and keeps the connection) for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                data = await self.reader.read(65536)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {data[:300]!r}" if data else
                             "expected silence, the server closed the connection")


@contextlib.asynccontextmanager
async def connect(server: Server) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


async def ask(server: Server, data: bytes) -> Answer:
    """One request on a fresh connection, and its answer."""
    async with connect(server) as client:
        await client.send(data)
        return await client.answer()


# ---------------------------------------------------------------------------- 1. whole responses
@on_each_loop
async def test_a_whole_response_has_status_line_date_length_headers_and_body() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.send(201, b"hello, world", [(b"content-type", b"text/plain"), (b"x-n", b"1")])

    async with serving(handler) as server:
        answer = await ask(server, request())
    assert (answer.version, answer.status, answer.reason) == ("HTTP/1.1", 201, "Created")
    assert [name for name, _ in answer.headers] == [
        "date", "content-type", "x-n", "content-length"]
    assert answer.header("content-type") == "text/plain"
    assert answer.header("x-n") == "1"
    assert answer.header("content-length") == "12"
    assert answer.body == b"hello, world"
    date = answer.header("date") or ""
    assert date.endswith(" GMT")
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 3


@on_each_loop
async def test_a_status_without_a_known_phrase_still_gets_a_status_line() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.send(299, b"", [])

    async with serving(handler) as server:
        answer = await ask(server, request())
    assert (answer.status, answer.reason, answer.body) == (299, "Unknown", b"")
    assert answer.header("content-length") == "0"


@on_each_loop
async def test_the_date_header_follows_the_clock() -> None:
    async with serving(Recorder(), tick=0.05) as server, connect(server) as client:
        await client.send(request())
        first = (await client.answer()).header("date")
        await asyncio.sleep(1.1)  # the header has a resolution of a second
        await client.send(request())
        second = (await client.answer()).header("date")
    assert first is not None and second is not None
    assert parsedate_to_datetime(second) > parsedate_to_datetime(first)


@on_each_loop
async def test_a_stream_head_goes_out_with_its_first_bytes_before_any_write() -> None:
    release = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [(b"content-type", b"text/event-stream")], b"data: one\n\n")
        await release.wait()
        await response.write(b"data: two\n\n")
        response.end()

    async with serving(handler) as server, connect(server) as client:
        await client.send(request())
        # Everything the handler gave so far must be on the wire while it waits.
        async with asyncio.timeout(PATIENCE):
            head = await client.reader.readuntil(b"\r\n\r\n")
            first = await client.reader.readexactly(len(chunk(b"data: one\n\n")))
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\ntransfer-encoding: chunked\r\n" in head
        assert b"content-length" not in head
        assert first == chunk(b"data: one\n\n")
        await client.quiet()
        release.set()
        assert await client.chunks() == [b"data: two\n\n"]


@on_each_loop
async def test_a_stream_ended_in_its_opening_turn_is_on_the_wire_when_end_returns() -> None:
    """The upstream's whole answer came in one read: head, events and end go out as the
    stream ends, in one write, not after the rest of the handler's turn (its usage record,
    closing its generators), which the client need not wait for."""
    seen: list[bytes] = []
    client: socket.socket | None = None

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [(b"content-type", b"text/event-stream")], b"data: one\n\n")
        response.end(b"data: two\n\n")
        assert client is not None
        # Still in the handler's turn: what reached the client's socket so far (loopback
        # delivers a write before the call returns).
        try:
            seen.append(client.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            seen.append(b"")  # nothing yet

    async with serving(handler) as server:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
        with client:
            client.sendall(request())
            async with asyncio.timeout(PATIENCE):
                while not seen:
                    await asyncio.sleep(0.01)
    (wire,) = seen
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == chunk(b"data: one\n\n") + chunk(b"data: two\n\n") + b"0\r\n\r\n"


@pytest.mark.parametrize("value", [
    b"ok\r\nSet-Cookie: s=evil", b"ok\nSet-Cookie: s=evil", b"ok\rSet-Cookie: s=evil",
    b"ok\r\n\r\nHTTP/1.1 200 OK", b"nul\x00byte", b"bell\x07del\x7f"])
@on_each_loop
async def test_a_header_value_with_control_characters_cannot_split_the_response(
        value: bytes) -> None:
    """Header values may carry outside text (a client's model name): a line break in one
    must not become a header or a response of its own, whatever the handler forgot."""
    async def handler(request: Request, response: Response) -> None:
        if request.path == "/stream":
            response.start(200, [(b"x-target", value)], b"first")
            response.end()
        else:
            response.send(200, b"body", [(b"x-target", value), (b"x-after", b"1")])

    async with serving(handler) as server, connect(server) as client:
        for path in ("/whole", "/stream", "/whole"):  # and the connection stays usable
            await client.send(request("GET", path))
            answer = await client.answer()
            assert answer.status == 200
            sent = answer.header("x-target") or ""
            assert [name for name, _ in answer.headers if name.startswith("x-")] == (
                ["x-target", "x-after"] if path == "/whole" else ["x-target"])
            assert "set-cookie" not in dict(answer.headers)
            assert re.fullmatch(r"[\x20-\x7e]+", sent), sent  # one printable line
            assert unquote_to_bytes(sent) == value  # encoded, not lost
            assert answer.body == (b"body" if path == "/whole" else b"first")


def test_header_text_keeps_printable_ascii_and_encodes_the_rest() -> None:
    for text in ("openai/gpt-5.1:latest", "a b", "100%"):
        assert http.header_text(text) == text.encode()
    for text in ("ok\r\nSet-Cookie: s=evil", "modèle", "x\x00\x7f", "tab\there"):
        encoded = http.header_text(text)
        assert re.fullmatch(rb"[ -~]+", encoded), encoded
        assert unquote(encoded.decode()) == text


# ---------------------------------------------------------------------------- 2. keep-alive
@on_each_loop
async def test_requests_read_in_pieces_on_many_connections_at_once_keep_their_bytes() -> None:
    """Every connection's reads land in one buffer of the server's: requests sent in pieces
    (a head cut inside a header, a body in several reads, an upgrade request's body) on
    connections taking turns each arrive with their own bytes, whatever came in between."""
    recorder = Recorder()
    rng = random.Random(5)
    async with serving(recorder) as server, contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server)) for _ in range(4)]
        sent: list[list[bytes]] = [[] for _ in clients]
        for turn in range(3):
            wires = []
            for n in range(len(clients)):
                upgrade = turn == 2 and n == 0
                body = rng.randbytes(70_000 if upgrade else rng.choice([10, 3000, 70_000]))
                extra = ("Connection: Upgrade", "Upgrade: h2c") if upgrade else ()
                wire = request("POST", f"/c{n}/t{turn}", f"x-name: {'v' * 500}", *extra,
                               body=body)
                cuts = [0, *sorted(rng.sample(range(1, len(wire)), 6)), len(wire)]
                wires.append([wire[a:b] for a, b in itertools.pairwise(cuts)])
                sent[n].append(body)
            for piece in range(7):  # connections take turns, a piece each
                for client, pieces in zip(clients, wires, strict=True):
                    await client.send(pieces[piece])
                    await asyncio.sleep(0.002)  # its own read, most of the time
            for n, client in enumerate(clients):
                answer = await client.answer()
                assert answer.body == answer_body("POST", f"/c{n}/t{turn}", sent[n][-1])
    by_path = {r.path: r for r in recorder.requests}
    assert len(by_path) == 12
    for n, bodies in enumerate(sent):
        for turn, body in enumerate(bodies):
            request_ = by_path[f"/c{n}/t{turn}"]
            assert request_.body == body and request_.headers["x-name"] == "v" * 500


@on_each_loop
async def test_several_requests_on_one_connection() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        for n in range(4):
            await client.send(request("POST", f"/n/{n}", body=b"body %d" % n))
            answer = await client.answer()
            assert answer.status == 200
            assert answer.header("connection") is None  # HTTP/1.1: persistent by default
            assert answer.body == answer_body("POST", f"/n/{n}", b"body %d" % n)
        assert len(server.connections) == 1
        await client.quiet()
    assert [r.body for r in recorder.requests] == [b"body %d" % n for n in range(4)]


@on_each_loop
async def test_connection_close_from_the_client_closes_after_the_answer() -> None:
    async with serving(Recorder()) as server, connect(server) as client:
        await client.send(request("GET", "/bye", "Connection: close"))
        answer = await client.answer()
        assert answer.body == answer_body("GET", "/bye")
        assert answer.header("connection") == "close"
        assert await client.closed()


@on_each_loop
async def test_http_1_0_without_keep_alive_closes_after_the_answer() -> None:
    async with serving(Recorder()) as server, connect(server) as client:
        await client.send(request("GET", "/old", version="HTTP/1.0"))
        answer = await client.answer()
        assert answer.body == answer_body("GET", "/old")
        assert answer.header("connection") == "close"
        assert await client.closed()


@on_each_loop
async def test_http_1_0_with_keep_alive_keeps_the_connection_and_says_so() -> None:
    async with serving(Recorder()) as server, connect(server) as client:
        for n in range(2):
            await client.send(request("GET", f"/old/{n}", "Connection: keep-alive",
                                      version="HTTP/1.0"))
            answer = await client.answer()
            assert answer.body == answer_body("GET", f"/old/{n}")
            # An HTTP/1.0 client keeps the connection only when the answer says it may.
            assert answer.header("connection") == "keep-alive"
        await client.quiet()


# ---------------------------------------------------------------------------- 3. pipelining
@on_each_loop
async def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    release = asyncio.Event()
    events: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        events.append(f"start {request.path}")
        if request.path == "/1":
            await release.wait()
        else:
            await asyncio.sleep(0)  # a handler that awaits is still served in turn
        events.append(f"end {request.path}")
        response.send(200, request.path.encode() + request.body, [])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("GET", "/1") + request("POST", "/2", body=b"+two")
                          + request("GET", "/3"))
        await client.quiet()  # nothing answered while the first request is held
        assert events == ["start /1"]
        release.set()
        bodies = [(await client.answer()).body for _ in range(3)]
        await client.quiet()
    assert bodies == [b"/1", b"/2+two", b"/3"]
    assert events == ["start /1", "end /1", "start /2", "end /2", "start /3", "end /3"]


@on_each_loop
async def test_pipelined_requests_keep_their_own_http_version() -> None:
    release = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        if request.path == "/held":
            await release.wait()
        response.start(200, [], request.path.encode())
        response.end()

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("GET", "/held") + request("GET", "/eleven")
                          + request("GET", "/ten", version="HTTP/1.0"))
        await asyncio.sleep(QUIET)  # all three parsed before the first is answered
        release.set()
        held, eleven, ten = [await client.answer() for _ in range(3)]
        assert held.chunks == [b"/held"]
        assert eleven.chunks == [b"/eleven"]  # HTTP/1.1: chunked, whatever came after it
        assert ten.chunks is None and ten.body == b"/ten"  # HTTP/1.0: unframed, then closed
        assert ten.header("connection") == "close"


# ---------------------------------------------------------------------------- 4. request bodies
@on_each_loop
async def test_a_chunked_request_body_is_decoded() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(request("POST", "/up", "Transfer-Encoding: chunked"))
        for piece in (b"hel", b"lo, ", b"w" * 3000):
            await client.send(chunk(piece))
            await asyncio.sleep(0.01)  # in separate packets
        await client.send(LAST_CHUNK)
        answer = await client.answer()
    assert answer.body == answer_body("POST", "/up", b"hello, " + b"w" * 3000)
    (seen,) = recorder.requests
    assert seen.body == b"hello, " + b"w" * 3000
    assert seen.headers["transfer-encoding"] == "chunked"


@on_each_loop
async def test_expect_100_continue_gets_the_interim_answer_then_the_answer() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(request("POST", "/up", "Expect: 100-continue", "Content-Length: 5"))
        async with asyncio.timeout(PATIENCE):
            interim = await client.reader.readexactly(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.quiet()
        assert recorder.requests == []
        await client.send(b"hello")
        answer = await client.answer()
        assert answer.body == answer_body("POST", "/up", b"hello")
        # The next request without Expect gets no interim answer.
        await client.send(request("POST", "/again", body=b"x"))
        assert (await client.answer()).status == 200


# ---------------------------------------------------------------------------- 5. limits
async def assert_refused(client: Client, status: int, path: str) -> Answer:
    answer = await client.answer()
    assert answer.status == status
    assert answer.body.startswith(refused(status, path)), answer.body
    assert answer.header("content-type") == "text/x-r"
    assert answer.header("connection") == "close"
    assert await client.closed()
    return answer


@on_each_loop
async def test_a_content_length_over_64_mib_is_refused_with_413_without_reading_it() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        # Only the head is sent: the refusal must not wait for the body.
        await client.send(request("POST", "/v1/messages?x=1", "Expect: 100-continue",
                                  f"Content-Length: {64 * 1024 * 1024 + 1}"))
        answer = await assert_refused(client, 413, "/v1/messages")  # no 100 Continue first
    assert b"64 MiB" in answer.body
    assert recorder.requests == []


@on_each_loop
async def test_a_body_at_the_limit_passes_one_byte_more_is_refused() -> None:
    recorder = Recorder()
    async with serving(recorder, max_body_bytes=1000) as server:
        answer = await ask(server, request("POST", "/up", body=b"a" * 1000))
        assert answer.body == answer_body("POST", "/up", b"a" * 1000)
        async with connect(server) as client:
            await client.send(request("POST", "/up", "Content-Length: 1001"))
            await assert_refused(client, 413, "/up")
    assert len(recorder.requests) == 1


@on_each_loop
async def test_a_client_sending_its_whole_oversized_body_still_reads_the_413() -> None:
    """Clients without `Expect` send the body the server will not read. Closing with those
    bytes unread makes the kernel answer with a reset, which can destroy the 413 before the
    client reads it: the server must close its side only after it stops receiving."""
    async with serving(Recorder(), max_body_bytes=1000) as server, connect(server) as client:
        await client.send(request("POST", "/up", body=b"b" * (4 << 20)))
        await assert_refused(client, 413, "/up")


@on_each_loop
async def test_a_chunked_body_growing_past_the_limit_is_refused_with_413() -> None:
    recorder = Recorder()
    async with serving(recorder, max_body_bytes=1000) as server:
        async with connect(server) as client:  # at the limit: accepted
            await client.send(request("POST", "/up", "Transfer-Encoding: chunked")
                              + chunk(b"a" * 600) + chunk(b"b" * 400) + LAST_CHUNK)
            assert (await client.answer()).status == 200
        async with connect(server) as client:
            await client.send(request("POST", "/up", "Transfer-Encoding: chunked")
                              + chunk(b"a" * 600))
            await client.quiet()
            await client.send(chunk(b"b" * 401))  # the body never ends: no last chunk
            await assert_refused(client, 413, "/up")
    assert len(recorder.requests) == 1


@on_each_loop
async def test_headers_over_64_kib_are_refused_with_431() -> None:
    recorder = Recorder()
    filler = "v" * 1000
    async with serving(recorder) as server:
        fits = [f"x-fill-{n}: {filler}" for n in range(60)]
        assert (await ask(server, request("GET", "/fits", *fits))).status == 200
        too_many = [f"x-fill-{n}: {filler}" for n in range(70)]
        async with connect(server) as client:
            await client.send(request("GET", "/big?q=1", *too_many))
            await assert_refused(client, 431, "/big")
    assert [r.path for r in recorder.requests] == ["/fits"]


@pytest.mark.parametrize("where", ["header value", "url"])
@on_each_loop
async def test_a_head_that_keeps_growing_is_refused_at_the_limit(where: str) -> None:
    """The limit must hold while the head is still arriving, not only once a header is
    complete: else one endless header line grows the server's memory without bound."""
    async with serving(Recorder()) as server, connect(server) as client:
        if where == "url":
            await client.send(b"GET /" + b"u" * 1000)
        else:
            await client.send(b"GET /p HTTP/1.1\r\nhost: test\r\nx-big: ")
        await asyncio.sleep(QUIET)  # the server has read the start of the head
        for _ in range(100):  # 100 KiB, never ended
            client.writer.write(b"z" * 1024)
            await asyncio.sleep(0)
        await client.writer.drain()
        answer = await client.answer()
        assert answer.status == 431
        assert answer.body.startswith(b"refused 431")
        assert await client.closed()


@pytest.mark.parametrize("wrong", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nhost: test\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /up HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n",
])
@on_each_loop
async def test_a_malformed_request_is_refused_with_400_and_closes(wrong: bytes) -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(wrong)
        answer = await client.answer()
        assert answer.status == 400
        assert answer.body.startswith(b"refused 400 at "), answer.body
        assert b"malformed HTTP request" in answer.body
        assert answer.header("connection") == "close"
        assert await client.closed()
        assert recorder.requests == []
        # The server stays up for the next client.
        assert (await ask(server, request())).status == 200


@on_each_loop
async def test_a_malformed_request_behind_pipelined_ones_is_refused_after_them() -> None:
    release = asyncio.Event()
    paths: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        paths.append(request.path)
        if request.path == "/1":
            await release.wait()
        response.send(200, request.path.encode(), [])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("GET", "/1") + request("GET", "/2")
                          + b"THIS IS NOT HTTP\r\n\r\n")
        await client.quiet()
        release.set()
        first, second = await client.answer(), await client.answer()
        assert (first.body, second.body) == (b"/1", b"/2")
        refusal_answer = await client.answer()
        assert refusal_answer.status == 400
        assert refusal_answer.header("connection") == "close"
        assert await client.closed()
    assert paths == ["/1", "/2"]


# ---------------------------------------------------------------------------- 6. the request
@on_each_loop
async def test_path_is_percent_decoded_and_the_query_split_off_as_sent() -> None:
    recorder = Recorder()
    async with serving(recorder) as server:
        await ask(server, request("GET", "/v1/a%20b/caf%C3%A9/plain?beta=true&q=a%20b"))
        await ask(server, request("GET", "/v1/messages"))
        await ask(server, request("GET", "/v1/messages?"))
    assert [(r.path, r.query) for r in recorder.requests] == [
        ("/v1/a b/café/plain", "beta=true&q=a%20b"), ("/v1/messages", ""), ("/v1/messages", "")]


@on_each_loop
async def test_absolute_form_target_gives_its_path_and_query() -> None:
    recorder = Recorder()
    async with serving(recorder) as server:
        await ask(server, request("POST", "http://gateway.example:8080/v1/mess%61ges?beta=1",
                                  body=b"{}"))
        await ask(server, request("GET", "http://gateway.example"))
    assert [(r.method, r.path, r.query, r.body) for r in recorder.requests] == [
        ("POST", "/v1/messages", "beta=1", b"{}"), ("GET", "/", "", b"")]


@on_each_loop
async def test_header_names_are_lower_cased_and_repeated_headers_joined() -> None:
    recorder = Recorder()
    async with serving(recorder) as server:
        await ask(server, request("GET", "/", "X-Dup: a", "Authorization: Bearer K",
                                  "x-dup: b, c", "X-DUP: d", "Anthropic-Version: 2023-06-01"))
    (seen,) = recorder.requests
    assert seen.headers == {"host": "test", "x-dup": "a, b, c, d",
                            "authorization": "Bearer K", "anthropic-version": "2023-06-01"}


# ---------------------------------------------------------------------------- 7. HEAD
@on_each_loop
async def test_head_gets_the_head_of_a_whole_response_and_no_body_bytes() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.send(200, b"twelve bytes", [(b"content-type", b"text/plain")])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("HEAD", "/"))
        head = await client.answer(to_head=True)
        assert head.status == 200
        assert head.header("content-length") == "12"  # the GET's length
        # Any body bytes would be read as the start of the next answer.
        await client.send(request("GET", "/"))
        answer = await client.answer()
        assert (answer.status, answer.body) == (200, b"twelve bytes")


@on_each_loop
async def test_head_of_a_stream_has_no_chunks() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(200, [], b"first")
        await response.write(b"more")
        response.end(b"tail")

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("HEAD", "/"))
        head = await client.answer(to_head=True)
        assert head.header("transfer-encoding") == "chunked"
        await client.send(request("GET", "/"))
        answer = await client.answer()
        assert answer.chunks == [b"first", b"more", b"tail"]


# ---------------------------------------------------------------------------- 8. streams
@on_each_loop
async def test_a_stream_is_a_valid_chunked_body_and_the_tail_comes_before_its_end() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(200, [(b"content-type", b"text/event-stream")], b"data: 1\n\n")
        await response.write(b"data: 2\n\n")
        await response.write(b"")  # not a terminating zero chunk
        await response.write(b"x" * 70000)  # a size with several hex digits
        response.end(b"data: [DONE]\n\n")

    async with serving(handler) as server, connect(server) as client:
        for _ in range(2):  # and the connection stays usable after the stream
            await client.send(request("POST", "/stream", body=b"{}"))
            answer = await client.answer()
            assert answer.status == 200
            assert answer.header("content-type") == "text/event-stream"
            assert answer.header("connection") is None
            assert answer.chunks == [b"data: 1\n\n", b"data: 2\n\n", b"x" * 70000,
                                     b"data: [DONE]\n\n"]
        await client.quiet()


@on_each_loop
async def test_a_stream_without_first_bytes_or_tail() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(200, [])
        await response.write(b"only")
        response.end()
        response.end(b"ignored")  # ending twice changes nothing

    async with serving(handler) as server, connect(server) as client:
        await client.send(request())
        assert (await client.answer()).chunks == [b"only"]
        await client.quiet()


@on_each_loop
async def test_an_http_1_0_client_gets_an_unframed_stream_ended_by_the_close() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(200, [(b"content-type", b"text/event-stream")], b"data: 1\n\n")
        await response.write(b"")
        await response.write(b"data: 2\n\n")
        response.end(b"data: end\n\n")

    async with serving(handler) as server, connect(server) as client:
        # Even when it asked for keep-alive: without chunks only the close ends the body.
        await client.send(request("GET", "/", "Connection: keep-alive", version="HTTP/1.0"))
        answer = await client.answer()
        assert answer.header("transfer-encoding") is None
        assert answer.header("content-length") is None
        assert answer.header("connection") == "close"
        assert answer.body == b"data: 1\n\ndata: 2\n\ndata: end\n\n"


# ---------------------------------------------------------------------------- 9. clients leaving
@on_each_loop
async def test_a_client_leaving_mid_request_cancels_the_handler() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        if request.path == "/next":
            response.send(200, b"still here", [])
            return
        started.set()
        try:
            await asyncio.Event().wait()  # an upstream that never answers
        except asyncio.CancelledError:
            assert response.client_gone
            cancelled.set()
            raise

    async with serving(handler) as server:
        async with connect(server) as client:
            await client.send(request("POST", "/slow", body=b"{}"))
            await asyncio.wait_for(started.wait(), PATIENCE)
        await asyncio.wait_for(cancelled.wait(), PATIENCE)
        assert (await ask(server, request("GET", "/next"))).body == b"still here"


@on_each_loop
async def test_a_client_leaving_mid_stream_cancels_the_handler() -> None:
    cancelled = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [], b"first")
        try:
            while True:
                await asyncio.sleep(0.01)
                await response.write(b"more")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serving(handler) as server:
        async with connect(server) as client:
            await client.send(request())
            await client.answer(to_head=True)
            await client.reader.readuntil(b"more\r\n")
        await asyncio.wait_for(cancelled.wait(), PATIENCE)
        assert len(server.connections) == 0


@on_each_loop
async def test_a_client_leaving_mid_upload_never_reaches_the_handler() -> None:
    recorder = Recorder()
    async with serving(recorder) as server:
        async with connect(server) as client:
            await client.send(request("POST", "/up", "Content-Length: 100") + b"x" * 50)
        async with connect(server) as client:
            await client.send(request("POST", "/up", "Transfer-Encoding: chunked")
                              + chunk(b"x" * 50))
        assert (await ask(server, request("GET", "/next"))).status == 200
    assert [r.path for r in recorder.requests] == ["/next"]


@pytest.mark.parametrize("sent", [
    request("POST", "/up", "Content-Length: 100000") + b"x" * 50000,  # part of a body
    request("POST", "/up")[:30],  # part of a head
    request("POST", "/up", f"Content-Length: {64 * 1024 * 1024 + 1}"),  # refused: 413
    b"NOT HTTP AT ALL\r\n\r\n",  # refused: 400
    request("GET", "/ok"),  # answered
    request("GET", "/bug"),  # a handler that fails
    request("GET", "/stream"),  # a stream the client leaves
])
@on_each_loop
async def test_a_connection_is_freed_when_it_closes_without_the_garbage_collector(
        sent: bytes) -> None:
    """A reference cycle through a connection (its parser, an exception's frames) would keep
    it, and whatever body it was reading, until the garbage collector's next full pass."""
    async def handler(request: Request, response: Response) -> None:
        if request.path == "/bug":
            raise RuntimeError("a bug")
        if request.path == "/stream":
            response.start(200, [], b"first")
            await asyncio.sleep(10)
        response.send(200, b"fine", [])

    # Logged as the gateway logs (run.configure_logging): pytest's own capture keeps every
    # record, and with a failing handler's its traceback and frames, for the report.
    logger = logging.getLogger("babelgate")
    propagate, logger.propagate = logger.propagate, False
    gc.collect()
    gc.disable()
    try:
        async with serving(handler, linger=0.1) as server:
            async with connect(server) as client:
                await client.send(sent)
                await asyncio.sleep(0.05)
                (conn,) = server.connections
                gone = weakref.ref(conn)
                del conn
            for _ in range(50):
                if gone() is None:
                    break
                await asyncio.sleep(0.02)
            assert gone() is None, [type(r) for r in gc.get_referrers(gone())]
    finally:
        gc.enable()
        logger.propagate = propagate


# ---------------------------------------------------------------------------- 10. backpressure
PIECE = b"x" * 65536
PIECES = 800  # 50 MiB: far more than the socket buffers of both ends hold


async def until_stalled(count: Callable[[], int]) -> int:
    """Waits until `count()` stops changing for a while; returns it."""
    last = -1
    while count() != last:
        last = count()
        await asyncio.sleep(0.15)
    return last


@on_each_loop
async def test_a_client_that_does_not_read_holds_the_stream_back_until_it_reads() -> None:
    written = 0
    done = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        nonlocal written
        response.start(200, [])
        for _ in range(PIECES):
            await response.write(PIECE)
            written += 1
        response.end()
        done.set()

    async with serving(handler) as server, connect(server) as client:
        await client.send(request())
        stalled = await until_stalled(lambda: written)  # the client reads nothing yet
        assert not done.is_set()
        assert 0 < stalled < PIECES // 2
        answer = await client.answer()  # now it reads, and the handler goes on
        assert len(answer.body) == PIECES * len(PIECE)
        assert answer.chunks is not None and set(answer.chunks) == {PIECE}
        await asyncio.wait_for(done.wait(), PATIENCE)


@on_each_loop
async def test_a_client_leaving_while_the_stream_waits_for_it_cancels_the_handler() -> None:
    written = 0
    cancelled = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        nonlocal written
        response.start(200, [])
        try:
            for _ in range(PIECES):
                await response.write(PIECE)
                written += 1
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serving(handler) as server:
        async with connect(server) as client:
            await client.send(request())
            stalled = await until_stalled(lambda: written)
            assert stalled < PIECES
        await asyncio.wait_for(cancelled.wait(), PATIENCE)
        assert written == stalled
        async with connect(server) as client:  # the server goes on
            await client.send(request("HEAD", "/"))
            assert (await client.answer(to_head=True)).status == 200


@on_each_loop
async def test_a_client_pipelining_without_reading_holds_back_its_next_requests() -> None:
    """Whole answers do not wait for the client as a stream's writes do: without a bound,
    a client that pipelines and never reads would have every answer kept in our memory."""
    recorder = Recorder()
    answer_size = 65536 + len(answer_body("GET", "/p"))
    unsent = 128 * 1024
    async with serving(recorder, max_unsent_bytes=unsent) as server, \
            connect(server) as client:
        count = 800  # 50 MiB of answers: far more than the socket buffers of both ends hold
        client.writer.write(request("GET", "/p", body=PIECE) * count)
        stalled = await until_stalled(lambda: len(recorder.requests))
        assert 0 < stalled < count // 2
        (conn,) = server.connections
        assert conn.transport.get_write_buffer_size() <= unsent + answer_size
        for _ in range(count):  # now it reads: every answer comes, in order
            answer = await client.answer()
            assert answer.body == answer_body("GET", "/p", PIECE)
        assert len(recorder.requests) == count
        await client.quiet()


@on_each_loop
async def test_requests_pipelined_beyond_the_bound_are_refused_after_those_ahead() -> None:
    release = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        if request.path == "/0":
            await release.wait()
        response.send(200, request.path.encode(), [])

    async with serving(handler, max_pipelined=3) as server, connect(server) as client:
        await client.send(b"".join(request("GET", f"/{n}") for n in range(6)))
        await client.quiet()
        release.set()
        for n in range(4):  # the one answered and the three queued behind it
            assert (await client.answer()).body == f"/{n}".encode()
        answer = await assert_refused(client, 503, "/4")
        assert b"more than 3 requests pipelined" in answer.body


# ---------------------------------------------------------------------------- 11. failing handlers
@on_each_loop
async def test_a_handler_raising_gets_a_500_in_the_refusal_format_and_the_connection_goes_on(
        ) -> None:
    async def handler(request: Request, response: Response) -> None:
        if request.path == "/v1/bug":
            raise ValueError("a bug")
        response.send(200, b"fine", [])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("POST", "/v1/bug?x=1", body=b"{}"))
        answer = await client.answer()
        assert answer.status == 500
        assert answer.body.startswith(refused(500, "/v1/bug")), answer.body
        await client.send(request("GET", "/after"))
        assert (await client.answer()).body == b"fine"


@on_each_loop
async def test_a_handler_returning_without_answering_gets_a_500() -> None:
    async def handler(request: Request, response: Response) -> None:
        if request.path == "/after":
            response.send(200, b"fine", [])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("POST", "/v1/messages", body=b"{}"))
        answer = await client.answer()
        assert answer.status == 500
        # The refusal gets the path, so the client reads the error in its own protocol.
        assert answer.body.startswith(refused(500, "/v1/messages")), answer.body
        await client.send(request("GET", "/after"))
        assert (await client.answer()).body == b"fine"


@on_each_loop
async def test_a_handler_returning_mid_stream_gets_its_stream_ended() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(200, [], b"first")
        await response.write(b"second")

    async with serving(handler) as server, connect(server) as client:
        for _ in range(2):
            await client.send(request())
            assert (await client.answer()).chunks == [b"first", b"second"]


@on_each_loop
async def test_a_handler_raising_mid_stream_cuts_the_stream_instead_of_ending_it() -> None:
    """A chunked body ended properly would pass a truncated answer off as complete; the
    connection must close without the terminating chunk."""

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [], b"first")
        await response.write(b"second")
        raise RuntimeError("a bug mid-stream")

    async with serving(handler) as server, connect(server) as client:
        await client.send(request())
        assert b"transfer-encoding: chunked" in (await client.answer(to_head=True)).head
        async with asyncio.timeout(PATIENCE):
            rest = await client.reader.read()
        assert rest == chunk(b"first") + chunk(b"second")  # and no last chunk


# ---------------------------------------------------------------------------- 12. idle keep-alive
KEEPALIVE = 0.3


@on_each_loop
async def test_an_idle_connection_is_closed_after_keepalive() -> None:
    async with serving(Recorder(), tick=0.02, keepalive=KEEPALIVE) as server:
        async with connect(server) as client:
            await client.send(request())
            await client.answer()
            answered = time.monotonic()
            assert await client.closed(within=KEEPALIVE + PATIENCE)
            assert time.monotonic() - answered >= KEEPALIVE - 0.02
        async with connect(server) as client:  # one that never sends anything
            assert await client.closed(within=KEEPALIVE + PATIENCE)
        assert len(server.connections) == 0


@on_each_loop
async def test_a_connection_with_a_request_under_way_is_not_idle() -> None:
    async def handler(request: Request, response: Response) -> None:
        await asyncio.sleep(3 * KEEPALIVE)
        response.send(200, b"slow but there", [])

    async with serving(handler, tick=0.02, keepalive=KEEPALIVE) as server, \
            connect(server) as client:
        await client.send(request())
        async with asyncio.timeout(3 * KEEPALIVE + PATIENCE):
            head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert await client.reader.readexactly(14) == b"slow but there"
        # ... and idle again once answered.
        assert await client.closed(within=KEEPALIVE + PATIENCE)


@on_each_loop
async def test_a_slow_upload_is_not_idle() -> None:
    recorder = Recorder()
    async with serving(recorder, tick=0.02, keepalive=KEEPALIVE) as server, \
            connect(server) as client:
        await client.send(request("POST", "/up", "Content-Length: 6"))
        for byte in b"abcdef":  # 6 * KEEPALIVE/2 in all: longer than keepalive
            await asyncio.sleep(KEEPALIVE / 2)
            await client.send(bytes([byte]))
        assert (await client.answer()).body == answer_body("POST", "/up", b"abcdef")


@on_each_loop
async def test_a_head_trickling_in_is_refused_with_408_at_its_deadline() -> None:
    """Every byte resets the idle clock: a head that comes a byte at a time would hold the
    connection forever but for a deadline on the whole head."""
    recorder = Recorder()
    async with serving(recorder, tick=0.02, head_timeout=0.4) as server, \
            connect(server) as client:
        started = time.monotonic()
        for byte in request("GET", "/slow", "x-pad: " + "p" * 40)[:-2]:
            await client.send(bytes([byte]))
            if client.reader.at_eof() or client.reader._buffer:  # answered: stop sending
                break
            await asyncio.sleep(0.02)
        answer = await assert_refused(client, 408, "/slow")
        assert 0.4 - 0.05 <= time.monotonic() - started < 0.4 + PATIENCE
        assert b"head did not arrive within 0.4 s" in answer.body
        # ... and a head that makes it in time is served, on a new connection.
        assert (await ask(server, request("GET", "/fast"))).status == 200
    assert [r.path for r in recorder.requests] == ["/fast"]


@on_each_loop
async def test_a_body_trickling_in_is_refused_with_408_at_its_deadline() -> None:
    recorder = Recorder()
    async with serving(recorder, tick=0.02, body_timeout=0.4) as server, \
            connect(server) as client:
        await client.send(request("POST", "/up", "Content-Length: 1000"))
        started = time.monotonic()
        for _ in range(100):
            if client.reader.at_eof() or client.reader._buffer:
                break
            await client.send(b"b")
            await asyncio.sleep(0.02)
        answer = await assert_refused(client, 408, "/up")
        assert 0.4 - 0.05 <= time.monotonic() - started < 0.4 + PATIENCE
        assert b"body did not arrive within 0.4 s" in answer.body
    assert recorder.requests == []


@on_each_loop
async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline() -> None:
    async with serving(Recorder(), tick=0.02, head_timeout=0.3) as server, \
            connect(server) as client:
        started = time.monotonic()
        assert await client.closed(within=0.3 + PATIENCE)  # without a word
        assert time.monotonic() - started >= 0.3 - 0.05


@on_each_loop
async def test_the_head_deadline_runs_from_the_answer_for_a_head_begun_during_it() -> None:
    """A client may send its next request's head while the last is being answered: the
    time the answer takes is not the head's to lose."""
    async def handler(request: Request, response: Response) -> None:
        if request.path == "/slow":
            await asyncio.sleep(0.5)
        response.send(200, request.path.encode(), [])

    async with serving(handler, tick=0.02, head_timeout=0.3) as server, \
            connect(server) as client:
        await client.send(request("GET", "/slow") + request("GET", "/next")[:10])
        assert (await client.answer()).body == b"/slow"
        await asyncio.sleep(0.1)
        await client.send(request("GET", "/next")[10:])
        assert (await client.answer()).body == b"/next"


def test_the_default_deadlines_close_a_trickling_head_within_a_minute() -> None:
    limits = Limits()
    assert limits.head_timeout <= 60
    assert limits.body_timeout <= 300
    assert limits.head_timeout < limits.keepalive  # the first head: not held by keepalive


@on_each_loop
async def test_connections_over_the_cap_are_told_503_and_closed() -> None:
    recorder = Recorder()
    async with serving(recorder, max_connections=3) as server:
        async with contextlib.AsyncExitStack() as stack:
            held = [await stack.enter_async_context(connect(server)) for _ in range(3)]
            await asyncio.sleep(0.05)
            async with connect(server) as over:
                await over.send(request("GET", "/over"))
                answer = await assert_refused(over, 503, "")
                assert b"maximum of 3 connections" in answer.body
            await held[0].send(request("GET", "/held"))  # those within the cap are served
            assert (await held[0].answer()).status == 200
        await asyncio.sleep(0.05)  # ... and once they go, new ones are again
        assert (await ask(server, request("GET", "/again"))).status == 200
        assert server.turned_away == 0
    assert [r.path for r in recorder.requests] == ["/held", "/again"]


@on_each_loop
async def test_connections_far_over_the_cap_are_closed_unanswered() -> None:
    async with serving(Recorder(), max_connections=1, linger=PATIENCE) as server, \
            contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server))
                   for _ in range(1 + http.TURNED_AWAY_ANSWERED + 10)]
        await asyncio.sleep(0.1)
        assert server.turned_away == http.TURNED_AWAY_ANSWERED
        answered = unanswered = 0
        for client in clients[1:]:
            async with asyncio.timeout(PATIENCE):
                data = await client.reader.read(4096)
            if data.startswith(b"HTTP/1.1 503"):
                answered += 1
            else:
                assert data == b""
                unanswered += 1
        assert (answered, unanswered) == (http.TURNED_AWAY_ANSWERED, 10)


@on_each_loop
async def test_limits_are_the_servers_own_and_named_in_refusals() -> None:
    recorder = Recorder()
    async with serving(recorder, max_head_bytes=2000, max_body_bytes=1536) as server:
        async with connect(server) as client:
            await client.send(request("GET", "/h", "x-big: " + "v" * 2000))
            answer = await assert_refused(client, 431, "/h")
            assert b"larger than 2000 bytes" in answer.body
        async with connect(server) as client:
            await client.send(request("POST", "/b", body=b"b" * 1537))
            answer = await assert_refused(client, 413, "/b")
            assert b"larger than 1.5 KiB" in answer.body
        assert (await ask(server, request("POST", "/b", body=b"b" * 1536))).status == 200
    assert [r.path for r in recorder.requests] == ["/b"]


# ---------------------------------------------------------------------------- 13. graceful stop
@on_each_loop
async def test_stop_lets_a_request_under_way_finish_within_grace() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        started.set()
        await release.wait()
        response.send(200, b"finished", [])

    async with serving(handler) as server:
        port = server.port
        async with connect(server) as idle, connect(server) as client:
            await client.send(request())
            await asyncio.wait_for(started.wait(), PATIENCE)
            stopping = asyncio.create_task(server.stop(grace=3 * PATIENCE))
            assert await idle.closed()  # idle connections go at once
            assert not stopping.done()
            with pytest.raises(OSError):  # no new connections meanwhile
                await asyncio.open_connection("127.0.0.1", port)
            release.set()
            answer = await client.answer()
            assert (answer.status, answer.body) == (200, b"finished")
            # The connection does not outlive the stop; the client learns it from the head.
            assert answer.header("connection") == "close"
            assert await client.closed()
            await asyncio.wait_for(stopping, PATIENCE)


@on_each_loop
async def test_stop_cancels_a_request_that_outlasts_grace() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            assert not response.client_gone
            response.send(503, b"shutting down", [])  # what the app does: an error to retry on

    async with serving(handler) as server, connect(server) as client:
        port = server.port
        await client.send(request())
        await asyncio.wait_for(started.wait(), PATIENCE)
        began = time.monotonic()
        await server.stop(grace=0.3)
        # uvloop counts timers from the time cached at the start of the loop's iteration and
        # in whole milliseconds, so its 0.3 s can end a little before 0.3 s of our clock
        # (0.2998 s seen under load): a few ms of slack, not a different grace.
        assert 0.29 <= time.monotonic() - began < 0.3 + PATIENCE
        assert cancelled.is_set()
        answer = await client.answer()
        assert (answer.status, answer.body) == (503, b"shutting down")
        assert answer.header("connection") == "close"
        assert await client.closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


@on_each_loop
async def test_stop_without_requests_under_way_returns_at_once() -> None:
    async with serving(Recorder()) as server, connect(server) as client:
        await client.send(request())
        await client.answer()
        began = time.monotonic()
        await server.stop(grace=10)
        assert time.monotonic() - began < PATIENCE
        assert await client.closed()


# ---------------------------------------------------------------------------- 14. upgrades
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@on_each_loop
async def test_an_upgrade_request_is_answered_in_http_1_1_then_the_connection_closes() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(request("GET", "/v1/models", "Connection: Upgrade, HTTP2-Settings",
                                  "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__")
                          + H2_PREFACE)
        answer = await client.answer()
        assert (answer.version, answer.status) == ("HTTP/1.1", 200)
        assert answer.body == answer_body("GET", "/v1/models")
        assert answer.header("connection") == "close"
        assert await client.closed()
    assert len(recorder.requests) == 1  # what followed was not taken for a request


@on_each_loop
async def test_an_upgrade_request_with_a_body_gets_its_body() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(request("POST", "/v1/messages", "Connection: Upgrade, HTTP2-Settings",
                                  "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__",
                                  body=b'{"model":"m"}'))
        answer = await client.answer()
        assert answer.body == answer_body("POST", "/v1/messages", b'{"model":"m"}')
        assert await client.closed()


@on_each_loop
async def test_requests_pipelined_before_an_upgrade_request_are_answered_too() -> None:
    release = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        if request.path == "/first":
            await release.wait()
        response.send(200, request.path.encode() + b"|" + request.body, [])

    async with serving(handler) as server, connect(server) as client:
        await client.send(request("GET", "/first")
                          + request("POST", "/second", "Connection: Upgrade",
                                    "Upgrade: websocket", "Content-Length: 4")
                          + b"bo")
        await asyncio.sleep(QUIET)  # all that has come in is read
        release.set()
        first = await client.answer()
        assert first.body == b"/first|"
        assert first.header("connection") is None  # the connection stays for the next one
        await client.quiet()  # the second waits for the rest of its body
        await client.send(b"dy" + H2_PREFACE)
        second = await client.answer()
        assert second.body == b"/second|body"
        assert second.header("connection") == "close"
        assert await client.closed()


@on_each_loop
async def test_an_upgrade_request_with_a_chunked_body_is_refused() -> None:
    recorder = Recorder()
    async with serving(recorder) as server, connect(server) as client:
        await client.send(request("POST", "/v1/messages", "Connection: Upgrade",
                                  "Upgrade: h2c", "Transfer-Encoding: chunked")
                          + chunk(b"{}") + LAST_CHUNK)
        await assert_refused(client, 400, "/v1/messages")
    assert recorder.requests == []
