"""Our HTTP/1.1 server: requests parsed by httptools on asyncio protocols, handed to the app as
plain values, answered in as few writes as the response allows.

The gateway ran under uvicorn's ASGI cycle before. Per request that meant message dicts for
every body chunk, a `send` coroutine per chunk, the response head written on its own, and a
second task of ours to notice a client leaving (docs/benchmark.md has the numbers). Here:
- a whole response, head and body, goes out in one write; a stream's head goes out with its
  first bytes, and its last bytes with the chunked terminator;
- a client that goes away cancels its request's task directly (connection_lost): no watcher;
- one task per request, nothing per connection but the protocol object.

What it does: keep-alive (idle connections closed after `keepalive` seconds), pipelined
requests answered in order, `Expect: 100-continue`, chunked request bodies (httptools decodes
them), HEAD, HTTP/1.0 clients (no chunked encoding: a stream ends with the connection),
backpressure (a stream waits while the client's socket is full; a client's next request waits
while the answers it has not read pass `max_unsent_bytes`), and a graceful stop
(`Server.stop`). What one client may take is bounded by `Limits`, a constructor parameter:
the head's size (431, also while a head is still arriving) and the body's (413), deadlines
for a head and a body to arrive in total (408: a byte now and then does not hold a
connection), the requests pipelined ahead (503), and connections at once (503, then closed).
Header values are checked where the head is written (`_head`): none can split a response.
A connection that closes is freed by reference counting, not left to the garbage collector
(connection_lost breaks the cycle with the parser).

A request the server refuses (too large, malformed, late) is answered after those read
before it, in the format `refusal` gives, then the connection closes without
resetting what the client still sends. A handler that fails mid-stream gets its connection
closed without the chunked terminator, so the client sees a cut, not a short answer. An
answer after which the connection closes says `connection: close`. What it does not: protocol
upgrades (WebSocket, h2c: answered in HTTP/1.1, then the connection closes), HTTP/2, TLS (put
a proxy in front for those).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, unquote

import httptools

if TYPE_CHECKING:
    from babelgate.storage.keys import KeyRecord

log = logging.getLogger("babelgate")

Headers = Sequence[tuple[bytes, bytes]]
INF = float("inf")
# Connections over Limits.max_connections answered 503 at once (beyond, closed unanswered).
TURNED_AWAY_ANSWERED = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may take of the server. Each is a setting under `server:` in the
    configuration (docs/configuration.md); bytes and seconds here."""

    max_head_bytes: int = 64 * 1024  # a request's line and headers (431 beyond)
    max_body_bytes: int = 64 * 1024 * 1024  # a request's body (413 beyond)
    keepalive: float = 75.0  # an idle connection is closed after this
    # A request's head must have arrived this long after its first byte (or after the
    # connection opened, for its first request), and its body this long after its head: in
    # total, not between bytes, so that a byte now and then cannot hold a connection (408).
    head_timeout: float = 30.0
    body_timeout: float = 120.0
    max_connections: int = 10_000  # beyond: turned away with a 503
    # Requests read ahead of the one being answered (pipelining); the next is refused (503).
    max_pipelined: int = 64
    # Answer bytes written but not yet taken by the client, beyond which the connection's
    # next request is neither read nor answered: a client that pipelines without reading
    # its answers holds this much of our memory, not all the answers.
    max_unsent_bytes: int = 256 * 1024
    linger: float = 2.0  # how long a refused request's remaining bytes are read and dropped

# "HTTP/1.1 200 OK\r\n" for every status, built once.
_STATUS_LINES = {
    int(status): b"HTTP/1.1 %d %s\r\n" % (status, status.phrase.encode()) for status in HTTPStatus
}
_CHUNKED = b"transfer-encoding: chunked\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
# The bytes no header line may carry (RFC 9110 5.5: control characters; the tab is allowed),
# mapped to LF: after this translation, a head counts two LFs per line (its CRLF), or a name
# or value brought a line break (a split response) or another control character with it.
_CONTROLS = bytes(range(0, 9)) + bytes(range(10, 32)) + b"\x7f"
_AS_LF = bytes.maketrans(_CONTROLS, b"\n" * len(_CONTROLS))
_CONTROL = re.compile(b"[" + re.escape(_CONTROLS) + b"]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # what a header name may be

# Header names the gateway's clients send on every request, as they spell them (lower-case
# or Capitalised-Words), with the name as a request holds it: one dict lookup where a decode
# and a lower() cost ~1.4 K instructions a header under callgrind. Others take the long way.
_COMMON_HEADERS = (
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection",
    "content-type", "content-length", "authorization", "x-api-key", "x-goog-api-key",
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "x-app", "originator", "session_id", "version", "openai-beta", "x-stainless-arch",
    "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
    "x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version",
    "x-stainless-timeout", "x-stainless-helper-method", "x-goog-api-client",
    "traceparent", "tracestate", "expect", "transfer-encoding",
)
HEADER_NAMES: Mapping[bytes, str] = MappingProxyType({
    spelling.encode("latin-1"): name
    for name in _COMMON_HEADERS
    for spelling in (name, "-".join(part.capitalize() for part in name.split("-")))
})
_PRINTABLE_ASCII = "".join(map(chr, range(0x20, 0x7F)))  # what header_text keeps as it is


class Request:
    """One request as the app sees it. Header names are lower-case; a header sent more than
    once has its values joined with ", " (RFC 9110 5.3)."""

    __slots__ = ("body", "caller", "headers", "method", "path", "query")

    def __init__(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        # The gateway key the request was made with, once the app checked it (auth.py);
        # None while the gateway has no keys.
        self.caller: KeyRecord | None = None


class Response:
    """How a handler answers its request: `send` a whole response, or `start` a stream,
    `write` to it and `end` it. Writing to a client that has gone does nothing (its task is
    being cancelled anyway)."""

    __slots__ = ("_chunked", "_conn", "_head_only", "finished", "keep_alive", "started")

    def __init__(self, conn: _Connection, keep_alive: bool, head_only: bool, http11: bool):
        self._conn = conn
        self.keep_alive = keep_alive
        self._head_only = head_only
        self._chunked = http11
        self.started = False
        self.finished = False

    @property
    def client_gone(self) -> bool:
        return self._conn.closed

    def send(self, status: int, body: bytes, headers: Headers) -> None:
        """The whole response, in one write."""
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = self.finished = True
        conn = self._conn
        if conn.closed:
            return
        head = self._head(status, headers, b"content-length: %d\r\n" % len(body))
        conn.out([head] if self._head_only else [head, body])

    def start(self, status: int, headers: Headers, first: bytes = b"") -> None:
        """Begin a stream of unknown length; `first` goes out with the head, and with what
        else the stream writes in this turn of the event loop (see _Connection.hold)."""
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = True
        if not self._chunked:  # HTTP/1.0: the body ends when the connection closes
            self.keep_alive = False
        conn = self._conn
        if conn.closed:
            return
        head = self._head(status, headers, _CHUNKED if self._chunked else b"")
        conn.hold(self._framed(first, head) if first and not self._head_only else [head])

    async def write(self, data: bytes) -> None:
        """More of a started stream. Waits while the client's socket buffer is full, so a slow
        client holds back the upstream instead of filling our memory."""
        conn = self._conn
        if not data or conn.closed or self._head_only:
            return
        conn.out(self._framed(data))
        conn.flush()  # in the transport now, so that a full socket makes us wait below
        if conn.write_paused:
            await conn.drained()

    def end(self, tail: bytes = b"") -> None:
        """Finish a started stream, `tail` being its last bytes."""
        if self.finished:
            return
        self.finished = True
        conn = self._conn
        if conn.closed or self._head_only:
            return
        if not self._chunked:
            if tail:
                conn.out([tail])
        elif tail:
            conn.out(self._framed(tail, end=True))
        else:
            conn.out([_LAST_CHUNK])
        # The stream is whole: an opening still held (the upstream's whole answer came in one
        # read) leaves now with the end, still one write, but before the rest of this turn
        # (the request's usage record, closing its generators), which the client need not
        # wait for.
        conn.flush()

    def _head(self, status: int, headers: Headers, framing: bytes) -> bytes:
        conn = self._conn
        if conn.closes_after_this():
            # ... whatever the request asked: saying so keeps the client from sending its
            # next request on this connection.
            self.keep_alive = False
        lines = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status,
                 conn.server.date_line]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(framing)
        if not self.keep_alive:
            lines.append(_CLOSE)
        elif not self._chunked:
            # An HTTP/1.0 client that asked for keep-alive keeps the connection only if the
            # answer says it may (`_chunked` is "the client speaks HTTP/1.1").
            lines.append(_KEEP_ALIVE)
        lines.append(b"\r\n")
        head = b"".join(lines)
        # Header values may carry a client's or an upstream's text (a model name): one with a
        # line break in it would let that text add headers or a whole response of its own.
        # Our own lines hold exactly one CRLF each (status, date, framing, connection, the
        # blank line: those not empty), so one translation and one count check them all.
        if head.translate(_AS_LF).count(b"\n") != 2 * (len(lines) - 3 * len(headers)
                                                       - (not framing)):
            return self._head(status, _encoded(headers), framing)
        return head

    def _framed(self, data: bytes, head: bytes = b"", end: bool = False) -> list[bytes]:
        if not self._chunked:
            return [head, data]
        return [head, b"%x\r\n" % len(data), data, b"\r\n0\r\n\r\n" if end else b"\r\n"]


Handler = Callable[[Request, Response], Awaitable[None]]
# What the app answers when the server refuses a request itself (malformed, too large): the
# request's path (b"" if unknown), an HTTP status and a message -> the body and its headers,
# so that the client gets the refusal in its own protocol's error format.
Refusal = Callable[[str, int, str], tuple[bytes, Headers]]


def header_text(text: str) -> bytes:
    """`text` (a client's or an upstream's) as a header value: printable ASCII stays as it
    is; any other character (a control, a line break, non-ASCII as UTF-8) is
    percent-encoded, so that the value is one line of printable ASCII."""
    if text.isascii() and text.isprintable():  # (two C calls: this runs per request)
        return text.encode()
    return quote(text, safe=_PRINTABLE_ASCII).encode()


def _encoded(headers: Headers) -> list[tuple[bytes, bytes]]:
    """`headers` made safe to write: control characters in values percent-encoded, headers
    whose name is not a token dropped. Only a handler's mistake gets here (values carrying
    outside text go through header_text): it is logged, and the response still goes out."""
    safe = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            log.warning("response header %r dropped: not a valid header name", name[:100])
            continue
        encoded = _CONTROL.sub(lambda found: b"%%%02X" % found[0][0], value)
        if encoded != value:
            log.warning("response header %s carried control characters: percent-encoded",
                        name.decode())
        safe.append((name, encoded))
    return safe


def plain_refusal(path: str, status: int, message: str) -> tuple[bytes, Headers]:
    text = message.replace("\\", "\\\\").replace('"', '\\"')
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"%s"}}' % (
        text.encode()
    )
    return body, [(b"content-type", b"application/json")]


class Server:
    """Listens, keeps the connections, and stops gracefully."""

    def __init__(
        self,
        handler: Handler,
        refusal: Refusal = plain_refusal,
        limits: Limits = Limits(),
        tick: float = 1.0,  # the Date header's resolution, how often connections are swept
    ) -> None:
        self.handler = handler
        self.refusal = refusal
        self.limits = limits
        self.tick = tick
        self.head_too_large = f"the request's head is larger than {_size(limits.max_head_bytes)}"
        self.body_too_large = f"the request's body is larger than {_size(limits.max_body_bytes)}"
        self.connections: set[_Connection] = set()
        # Where every connection's reads land (_Connection.get_buffer); as large as the
        # reads uvloop and asyncio make into their own buffers.
        self.read_buffer = memoryview(bytearray(256 * 1024))
        self.turned_away = 0  # connections over max_connections being answered 503
        self.stopping = False
        self.date_line = _date_line()
        self.now = 0.0  # the loop's clock at the last tick: deadlines are checked at ticks
        self._server: asyncio.AbstractServer | None = None
        self._tick: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Listen on host:port; `reuse_port` (SO_REUSEPORT) lets other processes that set it
        too listen on the same port, the kernel spreading connections among them."""
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=2048, reuse_port=reuse_port or None
        )
        self._on_tick()

    @property
    def port(self) -> int:
        assert self._server is not None
        return cast(int, cast(asyncio.Server, self._server).sockets[0].getsockname()[1])

    def _on_tick(self) -> None:
        loop = self.loop
        assert loop is not None
        self.date_line = _date_line()
        self.now = now = loop.time()
        keepalive = self.limits.keepalive
        for conn in list(self.connections):
            if conn.task is not None:
                continue  # being answered: neither idle nor late
            if now > conn.deadline:
                conn.time_out()
            elif now - conn.idle_since > keepalive:
                conn.close()
        self._tick = loop.call_later(self.tick, self._on_tick)

    async def stop(self, grace: float) -> None:
        """Stop listening, close idle connections, let requests under way finish for up to
        `grace` seconds, then cancel the rest (a stream ends with an error event its client
        retries on: see App._stream) and close everything."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.task is None:
                conn.close()
        tasks = {conn.task for conn in self.connections if conn.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for conn in list(self.connections):
            conn.close()
        if self._tick is not None:
            self._tick.cancel()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.BufferedProtocol):
    """One client connection: parses its requests and runs them one at a time, in order.

    Its reads land in the server's read buffer (get_buffer) instead of a new bytes object
    each: the parser copies out all it keeps (the URL, headers and body are bytes of their
    own) before the read returns, so the next read, on any connection, may use the buffer
    again. A 40 KB request body was copied twice on its way in (the read, then the body the
    parser hands over); now once."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = cast(asyncio.AbstractEventLoop, server.loop)
        self.parser = httptools.HttpRequestParser(self)
        self.transport = cast(asyncio.Transport, None)
        self.closed = False
        self.task: asyncio.Task[None] | None = None  # the request being answered
        # Pipelined requests after it, each with its keep-alive and whether it is HTTP/1.1:
        # the parser only knows about the last request it read.
        self.waiting: deque[tuple[Request, bool, bool]] = deque()
        self.idle_since = self.loop.time()
        # By when the head or body under way must have arrived (Limits.head_timeout): from
        # the start, the first request's head.
        self.deadline = server.now + server.limits.head_timeout
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.upgraded = False  # the client asked to switch protocols: close after answering
        # An upgrade request's body, which httptools skips (see on_message_complete): the
        # request, its keep-alive and version, how many body bytes are missing, those read.
        self._upgrade_body: tuple[Request, bool, bool, int, list[bytes]] | None = None
        self._refused = False  # nothing more is read; the refusal below is the last answer
        self._turned_away = False  # over Limits.max_connections: answered 503, not served
        self._write_blocked = False  # the next request waits for the client to read
        self._refusal: tuple[str, int, str] | None = None  # sent after the requests ahead
        self._linger: asyncio.TimerHandle | None = None
        self._held: list[bytes] | None = None  # written at the end of this loop turn (hold)
        # the request being parsed
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._in_head = False  # between the first byte of a request and its headers' end
        self._begun = 0  # requests begun on this connection
        self._head_bytes = 0  # bytes read in reads that fell wholly inside the head
        self._body: list[bytes] = []
        self._body_size = 0

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        server = self.server
        limits = server.limits
        if len(server.connections) >= limits.max_connections:
            self._turn_away()
            return
        server.connections.add(self)
        transport.set_write_buffer_limits(limits.max_unsent_bytes)

    def _turn_away(self) -> None:
        """A connection over Limits.max_connections: told so (503) and closed. When many
        arrive at once, those beyond a small number more are closed without a word: answering
        them would hold as many descriptors as the cap is there to spare."""
        server = self.server
        if server.turned_away >= TURNED_AWAY_ANSWERED:
            self.closed = True
            self.transport.abort()
            return
        if not server.turned_away:
            log.warning("serving the maximum of %d connections: turning new ones away",
                        server.limits.max_connections)
        server.turned_away += 1
        self._turned_away = self._refused = True
        self._send_refusal("", 503, f"babelgate is serving its maximum of "
                                    f"{server.limits.max_connections} connections; retry shortly")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # The parser holds our callbacks, and so us: without this cycle, reference counting
        # frees the connection, and the body it was reading, now. (Nothing is parsed after
        # the connection is lost.)
        del self.parser
        if self._linger is not None:
            self._linger.cancel()
        server = self.server
        if self._turned_away:
            server.turned_away -= 1
        else:
            server.connections.discard(self)
        self.waiting.clear()
        if self.task is not None:
            self.task.cancel()  # the client left: stop its upstream request too
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """What a read brought (a view of the read buffer: nothing may keep it)."""
        if self._refused:
            return
        self.idle_since = self.loop.time()  # a slow upload is not an idle connection
        if self.upgraded:
            if self._upgrade_body is not None:
                self._take_upgrade_body(data)
            return
        in_head, begun = self._in_head, self._begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True  # what follows is not HTTP/1.1; answer, then close
            if self._upgrade_body is not None:
                self._take_upgrade_body(data[exc.args[0]:])
            return
        except httptools.HttpParserError as exc:
            # A callback's own exception arrives as the context of a callback error.
            self._refuse(*_refusal_of(exc))
            return
        if in_head and self._in_head and self._begun == begun:
            # All of `data` belongs to a head that is still not complete. on_header only sees
            # a header once it has ended, and httptools keeps a header line however long it
            # grows: without this count, one endless header would fill our memory.
            self._head_bytes += len(data)
            if self._head_bytes > self.server.limits.max_head_bytes:
                self._refuse(431, self.server.head_too_large)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._write_blocked and not self.closed:
            # The client has taken its answers: on with its next request.
            self._write_blocked = False
            if not self.waiting and not self._refused:
                self.transport.resume_reading()
            self._next()

    async def drained(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()
        await self._drain

    def closes_after_this(self) -> bool:
        """Whether the connection closes after the answer under way: the server is stopping,
        or the client asked to switch protocols in the request answered (the last one read:
        the requests it pipelined before that one are still answered)."""
        return self.server.stopping or (
            self.upgraded and not self.waiting and self._upgrade_body is None)

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        if self.deadline == INF:  # (the first request's deadline runs from the start)
            self.deadline = self.server.now + self.server.limits.head_timeout
        self._url = b""
        self._headers = {}
        self._head_size = 0
        self._in_head = True
        self._begun += 1
        self._head_bytes = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url  # called for each piece of a URL split between reads
        self._head_size += len(url)
        if self._head_size > self.server.limits.max_head_bytes:
            raise _Refused(431, self.server.head_too_large)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > self.server.limits.max_head_bytes:
            raise _Refused(431, self.server.head_too_large)
        key = HEADER_NAMES.get(name) or name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = self._headers.get(key)
        self._headers[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        server = self.server
        self.deadline = server.now + server.limits.body_timeout
        headers = self._headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > server.limits.max_body_bytes:
            raise _Refused(413, server.body_too_large)
        if headers.get("expect", "").lower() == "100-continue" and self.task is None:
            self.out([b"HTTP/1.1 100 Continue\r\n\r\n"])  # after any answer still held

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.server.limits.max_body_bytes:
            raise _Refused(413, self.server.body_too_large)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.deadline = INF  # until the next request's first byte
        url = self._url
        if url[:1] != b"/":  # absolute form (a proxy's request) or `*`
            parsed = httptools.parse_url(url)
            raw_path, raw_query = parsed.path or b"/", parsed.query or b""
        else:
            raw_path, _, raw_query = url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        body = self._body
        request = Request(
            self.parser.get_method().decode("latin-1"),
            path,
            raw_query.decode("latin-1"),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        self._body = []
        parser = self.parser
        keep_alive = parser.should_keep_alive() and not self.server.stopping
        http11 = parser.get_http_version() == "1.1"
        if parser.should_upgrade():
            # httptools skips the body of a request asking to switch protocols, taking what
            # follows its head for the new protocol. We switch to none and answer the
            # request in HTTP/1.1 (curl --http2 asks so on a POST): its body is read raw.
            length = int(self._headers.get("content-length") or 0)  # llhttp checked it
            if length:
                self._upgrade_body = (request, keep_alive, http11, length, [])
                self.deadline = self.server.now + self.server.limits.body_timeout
                return
            if "chunked" in self._headers.get("transfer-encoding", ""):
                raise _Refused(400, "a request asking to switch protocols cannot have a "
                                    "chunked body here: send it with a content-length")
        self._start_or_queue(request, keep_alive, http11)

    def _start_or_queue(self, request: Request, keep_alive: bool, http11: bool) -> None:
        if self.task is None and not self._write_blocked:
            self._run(request, keep_alive, http11)
            return
        # Pipelined (answered after the one under way, or once the client has read what is
        # written): read no further meanwhile. What one read brought is queued, up to a bound.
        if len(self.waiting) >= self.server.limits.max_pipelined:
            raise _Refused(503, f"more than {self.server.limits.max_pipelined} requests "
                                "pipelined on one connection; read the answers first")
        self.waiting.append((request, keep_alive, http11))
        self.transport.pause_reading()

    def _take_upgrade_body(self, data: bytes | memoryview) -> None:
        assert self._upgrade_body is not None
        request, keep_alive, http11, missing, pieces = self._upgrade_body
        pieces.append(bytes(data[:missing]))  # (a view of the read buffer: copied)
        missing -= len(data)
        if missing > 0:
            self._upgrade_body = (request, keep_alive, http11, missing, pieces)
            return
        self._upgrade_body = None  # what follows the body is the new protocol: ignored
        self.deadline = INF
        request.body = b"".join(pieces)
        self._start_or_queue(request, keep_alive, http11)

    # ------------------------------------------------------------------ requests
    def _run(self, request: Request, keep_alive: bool, http11: bool) -> None:
        response = Response(self, keep_alive, request.method == "HEAD", http11)
        self.task = self.loop.create_task(self._serve(request, response))

    async def _serve(self, request: Request, response: Response) -> None:
        try:
            await self.server.handler(request, response)
        except asyncio.CancelledError:
            pass  # the client left, or the server stopped waiting: nothing more to say
        except Exception:  # a bug of ours: answer if we still can, keep the server up
            log.exception("internal error serving %s %s", request.method, request.path)
            if not response.started:
                body, headers = self.server.refusal(request.path, 500, "internal gateway error")
                response.send(500, body, headers)
            elif not response.finished:
                # Ending the chunked body properly would pass the truncated answer off as
                # complete: close the connection without the last chunk instead, which the
                # client reads as a broken answer.
                response.finished = True
                response.keep_alive = False
        finally:
            self._finish(response, request.path)

    def _finish(self, response: Response, path: str) -> None:
        self.task = None
        if self.closed:
            return
        if not response.finished:
            if response.started:  # a handler that returned mid-stream: end it properly
                response.end()
            else:  # nothing was sent: the client would wait forever
                body, headers = self.server.refusal(path, 500, "the gateway sent no response")
                response.send(500, body, headers)
        if not response.keep_alive or self.closes_after_this():
            self.close()
            return
        self.idle_since = self.loop.time()
        if self.deadline != INF:  # a head or body began while the answer took its time
            limits = self.server.limits
            self.deadline = self.server.now + (
                limits.head_timeout if self._in_head else limits.body_timeout)
        self._next()

    def _next(self) -> None:
        """On with what follows an answer: the next pipelined request, or the refusal after
        them, once the client has read enough of the answers so far (Limits.max_unsent_bytes:
        until then, resume_writing calls back)."""
        if self.write_paused:
            if not self._write_blocked:
                self._write_blocked = True
                if not self._refused:
                    self.transport.pause_reading()
            return
        if self.waiting:
            request, keep_alive, http11 = self.waiting.popleft()
            if not self.waiting and not self._refused:
                self.transport.resume_reading()
            self._run(request, keep_alive, http11)
        elif self._refusal is not None:
            self._send_refusal(*self._refusal)

    def time_out(self) -> None:
        """The head or body under way is late (Limits.head_timeout, body_timeout): 408, and
        the connection closes. One that never began a request is closed without a word."""
        self.deadline = INF
        if self._refused:
            return  # closing already
        limits = self.server.limits
        if self._in_head:
            self._refuse(408, f"the request's head did not arrive within "
                              f"{limits.head_timeout:g} s of its start")
        elif self._begun or self._upgrade_body is not None:
            self._refuse(408, f"the request's body did not arrive within "
                              f"{limits.body_timeout:g} s of its head")
        else:
            self.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request the server cannot take, then close: what follows it on the
        connection can no longer be parsed. The requests read before it are answered first,
        in order."""
        self._refused = True
        self.deadline = INF
        self.transport.pause_reading()
        path = self._url.partition(b"?")[0].decode("latin-1")
        if self.task is None and not self.waiting and not self._write_blocked:
            self._send_refusal(path, status, message)
        else:
            self._refusal = (path, status, message)

    def _send_refusal(self, path: str, status: int, message: str) -> None:
        body, headers = self.server.refusal(path, status, message)
        Response(self, False, False, True).send(status, body, headers)
        # The client may still be sending what we refused (a body over the limit). Closing
        # with bytes unread makes the kernel answer them with a reset, which can destroy the
        # refusal before the client reads it. So our side ends with a FIN after the answer,
        # and what still comes is read and dropped (data_received, `_refused`) until the
        # client closes, for Limits.linger seconds at most.
        if self.closed:
            return
        self.flush()
        self.transport.write_eof()
        self.transport.resume_reading()
        self._linger = self.loop.call_later(self.server.limits.linger, self.close)

    # ------------------------------------------------------------------ writing
    def out(self, parts: list[bytes]) -> None:
        """Write `parts` now, or after what is held if something is."""
        if self._held is not None:
            self._held += parts
        else:
            self.transport.writelines(parts)

    def hold(self, parts: list[bytes]) -> None:
        """Write `parts` at the end of this turn of the event loop (or sooner: at the
        stream's next write or its end), together with what else is written until then. A
        stream's opening is held so: when the upstream's whole
        answer came in one read, its end follows in the same turn, and head, events and
        terminator leave in one write instead of two (a write to a socket costs more than the
        turn's delay; measured ~3% of a streamed request). One callback per stream."""
        if self._held is None:
            self._held = parts
            self.loop.call_soon(self.flush)
        else:
            self._held += parts

    def flush(self) -> None:
        held, self._held = self._held, None
        if held and not self.closed:
            self.transport.writelines(held)

    def close(self) -> None:
        self.flush()
        if not self.closed:
            self.closed = True
            self.transport.close()  # sends what is buffered first


def _size(count: int) -> str:
    """A byte count as people write it: 64 KiB, 1.5 MiB, 1000 bytes."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size and count * 10 % size == 0:  # exact to a tenth
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def _date_line() -> bytes:
    return b"date: %s\r\n" % formatdate(usegmt=True).encode()


def _refusal_of(error: httptools.HttpParserError) -> tuple[int, str]:
    """The status and message for a request the parser stopped at. (A function of its own:
    a local holding the callback's exception in data_received would make a reference cycle
    through its traceback and that frame, keeping the bytes just read until the garbage
    collector runs.)"""
    refused = error.__context__
    if isinstance(refused, _Refused):
        return refused.status, str(refused)
    return 400, f"malformed HTTP request: {error}"


class _Refused(Exception):
    """A request the server refuses (too large, or one it cannot read), raised from a parser
    callback: httptools stops and re-raises it from feed_data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
