"""The one HTTP client every provider shares: HTTP/1.1 with kept-alive connections per
upstream, on asyncio protocols and httptools' parser (llhttp, the parser Node.js uses).

Why our own and not aiohttp's: a gateway makes one plain exchange per request (a POST with a
body in memory, an answer read whole or chunk by chunk), and the general client's machinery
around that exchange (request and response objects, header multidicts, URL objects, tracing,
payload writers, stream readers) cost more than the exchange itself. Measured with
`bench/http_clients.py` (45 KB POSTs, 32 at a time, one core, uvloop, canned nginx upstream)
on 2026-11-21: aiohttp 3.14 12,300-13,000 req/s, this client 39,800-45,100 req/s, httpx 0.28
340-450 req/s. That is ~55 µs of CPU saved on every request the gateway serves.

What it does, and deliberately does not:
- one exchange at a time per connection; idle connections are kept per origin (scheme, host,
  port, and the provider's `Route`) for `keepalive` seconds and reused most-recent-first;
  TLS with the default context (which honours SSL_CERT_FILE) or the route's own (`ca_file`);
- through a proxy when the route names one: an HTTP CONNECT or SOCKS5 tunnel opened per new
  connection (proxy.py), TLS to the upstream inside it;
- `timeout` bounds silence: connecting (at most `connect_timeout`), waiting for the answer,
  any gap between two reads; never a whole exchange, since an agent's stream may rightly last
  minutes. A stream the client reads slowly is paused (backpressure), not timed out;
- answers with Content-Length, chunked or read-until-close bodies; gzip and deflate
  decoded (we ask for `identity`, but a server may compress anyway);
- bounded memory whatever the upstream sends: a head over `max_head` bytes, or more than
  `max_body` bytes of answer held unread at once (a whole body being read, or a compressed
  piece that inflates past it: a gzip bomb is cut there, not inflated whole), fail the
  exchange;
- a kept-alive connection that the upstream closed while idle is retried once on a new
  connection, when nothing of an answer had arrived on it;
- no redirects (an API that redirects a POST is misconfigured: the 3xx is reported), no
  cookies.
Every failure is a GatewayError of kind `connection` or `timeout` (both the upstream's
fault: 502 and 504), which fallbacks act on. The limits are the client's constructor
parameters; the module constants below are their defaults.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import ssl
import zlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from babelgate import __version__
from babelgate.canonical import GatewayError

from .proxy import Proxy, open_tunnel, parse_proxy, proxy_from_env

KEEPALIVE_SECONDS = 60.0  # an idle connection older than this is closed, not reused
CONNECT_TIMEOUT_CAP = 15.0  # seconds: a connection is never waited on longer than this
PAUSE_AT = 1 << 20  # bytes of unread answer before reading from the upstream pauses
MAX_HEAD_BYTES = 64 << 10  # an answer's status line and headers; real APIs send ~1-2 KB
# Bytes of answer held in memory at once: a whole body being read (a JSON answer, images in
# base64 included, is at most some megabytes), or a compressed piece once inflated.
MAX_BODY_BYTES = 64 << 20
USER_AGENT = f"babelgate/{__version__}"  # unless the provider's headers set their own
_USER_AGENT_LINE = f"user-agent: {USER_AGENT}\r\n"

_TIMED_OUT = "the upstream did not answer in time"
_CLOSED = "the upstream closed the connection"
_CUT = "the upstream's response was cut off"
_TOO_LARGE = "the upstream's answer is larger than babelgate accepts"


@dataclass(frozen=True, slots=True)
class Route:
    """How a provider's connections are made: through `proxy` (None: directly), verified
    with `tls` (None: the default context). One per provider, made at start-up; connections
    are pooled per route, so two providers on one host with different proxies never share."""

    proxy: Proxy | None = None
    tls: ssl.SSLContext | None = None


def make_route(base_url: str, proxy: str | None = None, ca_file: str | None = None,
               env: Mapping[str, str] | None = None) -> Route | None:
    """A provider's route: its own `proxy` URL, else the one the environment gives for
    `base_url` (proxy.py), and a TLS context trusting `ca_file` when given. None when both
    are defaults, the common case. Raises ValueError (a bad proxy URL) and OSError or
    ssl.SSLError (an unreadable CA file): configuration errors, found at start-up."""
    chosen = parse_proxy(proxy) if proxy else proxy_from_env(base_url, env or {})
    tls = _ca_context(ca_file) if ca_file else None
    if chosen is None and tls is None:
        return None
    return Route(chosen, tls)


@functools.lru_cache(maxsize=64)  # one context per CA file, shared by its providers
def _ca_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.path.expanduser(ca_file))


class Origin(NamedTuple):
    """Where a URL's requests go, and the parts of its request head that never change."""

    key: tuple[str, str, int, Route | None]  # scheme, host, port, route: a pool each
    host: str
    port: int
    tls: bool
    head: bytes  # b"POST /path?query HTTP/1.1\r\nhost: ...\r\n"
    route: Route | None = None


@functools.lru_cache(maxsize=1024)  # a handful of URLs per provider (Gemini: one per model)
def origin_of(url: str, route: Route | None = None) -> Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GatewayError("connection", f"cannot call {url!r}: only http and https URLs work")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal
    if parts.port is not None:
        shown = f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"POST {target} HTTP/1.1\r\nhost: {shown}\r\n".encode("latin-1")
    return Origin((parts.scheme, host, port, route), host, port, tls, head, route)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class UpstreamResponse:
    """An open upstream answer. Read it (`read`, or `iter_chunks` to the end), or `close()`."""

    __slots__ = ("_connection", "_loop", "_pause_at", "_pending", "_size", "_waiter", "_whole",
                 "done", "error", "headers", "key_index", "status", "upstream")

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str],
                 upstream: str, pause_at: int = PAUSE_AT) -> None:
        self.status = status
        self.headers: Mapping[str, str] = headers
        self.upstream = upstream
        # Which of the provider's keys the request carried (Provider.send sets it), so that
        # what the answer says about that key (a quota used up) can rest it.
        self.key_index = 0
        self.done = False
        self.error: GatewayError | None = None
        self._connection: _Connection | None = connection
        # The connection's loop, kept: asyncio.get_running_loop() is a getpid() system call
        # per call on Python 3.11 (a fork check), and a stream waits many times.
        self._loop = connection.loop
        self._pending: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._pause_at = pause_at
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # read() takes it all at once: nothing to pause for

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def read(self) -> bytes:
        """The whole body."""
        self._whole = True
        connection = self._connection
        if connection is not None and connection.paused:
            connection.resume()
        try:
            while not self.done and self.error is None:
                await self._wait()
            if self.error is not None:
                self._pending.clear()  # the error outlives this call: not what came before it
                raise self.error
            return b"".join(self._pending)
        finally:
            self.close()

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, without buffering: what has arrived since the last chunk,
        joined."""
        try:
            while True:
                if self._pending:
                    chunk = self._pending[0] if len(self._pending) == 1 else b"".join(
                        self._pending)
                    self._pending.clear()
                    self._size = 0
                    connection = self._connection
                    if connection is not None and connection.paused:
                        connection.resume()
                    yield chunk
                elif self.error is not None:
                    raise self.error
                elif self.done:
                    return
                else:
                    await self._wait()
        finally:
            self.close()

    def close(self) -> None:
        """Let go of the connection: back to the pool when the answer was read to its end,
        closed when it was not (the rest of it would still arrive on it)."""
        connection, self._connection = self._connection, None
        if connection is not None and not self.done:
            connection.abandon()

    # ------------------------------------------------------------------ fed by the connection
    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size > self._pause_at:  # the lower of the pause threshold and max_body
            self._held_much()
        self._wake()

    def _held_much(self) -> None:
        """Much is held unread: past max_body the answer fails; a stream pauses its reading
        (a whole body being read does not: all of it is wanted)."""
        connection = self._connection
        if connection is None:
            return
        if self._size > connection.pool.max_body:
            connection._too_large(self)
        elif not self._whole:
            connection.pause()

    def _end(self) -> None:
        self.done = True
        self._connection = None  # the connection went back to its pool by itself
        self._wake()

    def _fail(self, error: GatewayError) -> None:
        self.error = error
        self._connection = None
        self._wake()


class _Connection(asyncio.Protocol):
    """One connection to an origin, one exchange at a time."""

    def __init__(self, pool: HttpClient, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.upstream = ""
        self.timeout = 0.0
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.received = False  # any byte of the current answer
        self.head: asyncio.Future[UpstreamResponse] | None = None
        self.response: UpstreamResponse | None = None
        self.header_list: list[tuple[bytes, bytes]] = []
        self.inflate: zlib._Decompress | None = None
        self.until_close = False  # the body ends when the upstream closes the connection
        self.head_size = 0  # bytes of the current answer's headers so far

    # ------------------------------------------------------------------ one exchange
    def send(self, head: bytes, body: bytes, upstream: str, timeout: float,
             ) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self.upstream, self.timeout = upstream, timeout
        self.received = False
        self.header_list = []
        self.head_size = 0
        self.response = self.inflate = None
        self.until_close = False
        self.head = self.loop.create_future()
        self.transport.writelines((head, body))
        self.last_read = now = self.loop.time()
        # One silence timer per connection, not per exchange: a kept-alive connection's timer
        # stays armed after an answer, and an exchange reuses it when it fires no later than
        # this one's deadline (_check_silence then waits on to the deadline); only a shorter
        # timeout re-arms it (a timer started and cancelled per exchange: ~1 us on uvloop).
        timer = self.timer
        if timer is None or timer.when() > now + timeout:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(now + timeout, self._check_silence)
        return self.head

    def _check_silence(self) -> None:
        self.timer = None
        if self.closed:
            return
        waiting = self.head is not None or self.response is not None
        if not waiting:
            return
        deadline = self.last_read + self.timeout
        if self.paused or self.loop.time() < deadline:
            # Still reading, or the client reads slowly (then the silence is not upstream's).
            self.timer = self.loop.call_at(max(deadline, self.loop.time() + 0.05),
                                           self._check_silence)
            return
        self._fail(GatewayError("timeout", f"{_TIMED_OUT} ({self.upstream})",
                                upstream=self.upstream))

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.last_read = self.loop.time()
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The caller stopped before the end of the answer: this connection is done for."""
        self.response = None
        self.head = None
        self.close()

    def stop(self, error: GatewayError) -> None:
        """Close; an exchange still under way ends with `error` rather than waiting on."""
        if self.head is not None or self.response is not None:
            self._fail(error)
        else:
            self.close()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def _too_large(self, response: UpstreamResponse) -> None:
        response._pending.clear()  # the answer fails: nothing of it is handed on
        response._size = 0
        self._fail(GatewayError("connection", f"{_TOO_LARGE} (over {self.pool.max_body} "
                                f"bytes held at once; {self.upstream})",
                                upstream=self.upstream))

    def _fail(self, error: GatewayError) -> None:
        head, response = self.head, self.response
        self.head = self.response = None
        self.close()
        if head is not None and not head.done():
            head.set_exception(error)
        if response is not None:
            response._fail(error)

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(GatewayError("connection", f"the upstream sent a malformed answer "
                                    f"({self.upstream}): {exc}", upstream=self.upstream))

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.forget(self)
        if self.response is not None and self.until_close and exc is None:
            response, self.response = self.response, None
            response._end()  # a body delimited by the end of the connection: complete
            return
        if was_closed or (self.head is None and self.response is None):
            return
        detail = f": {exc}" if exc is not None else ""
        message = _CUT if self.response is not None else _CLOSED
        self._fail(GatewayError("connection", f"{message} ({self.upstream}){detail}",
                                upstream=self.upstream))

    # ------------------------------------------------------------------ httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.pool.max_head:
            self._fail(GatewayError("connection", f"{_TOO_LARGE}: its headers exceed "
                                    f"{self.pool.max_head} bytes ({self.upstream})",
                                    upstream=self.upstream))
            return
        self.header_list.append((name, value))

    def on_headers_complete(self) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.header_list:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): wait on
            self.header_list = []
            self.head_size = 0
            return
        if self.head is None:  # failed while the headers came (too large)
            return
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            self.inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        elif coding != "identity":
            self._fail(GatewayError("connection", f"the upstream answered with content-encoding "
                                    f"{coding!r}, which babelgate cannot decode "
                                    f"({self.upstream})", upstream=self.upstream))
            return
        self.until_close = ("content-length" not in headers
                            and "transfer-encoding" not in headers
                            and status not in (204, 304))
        response = self.response = UpstreamResponse(self, status, headers, self.upstream,
                                                    self.pool.watch_at)
        head, self.head = self.head, None
        if not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None:
            return
        if self.inflate is not None:
            room = self.pool.max_body - response._size  # what may still be held unread
            try:
                # Never more than one byte past the room: a bomb stops inflating here (and
                # _feed fails the answer).
                body = self.inflate.decompress(body, max(room, 0) + 1)
            except zlib.error as exc:
                self._fail(GatewayError("connection", f"the upstream's compressed answer is "
                                        f"broken ({self.upstream}): {exc}",
                                        upstream=self.upstream))
                return
            if not body:
                return
        response._feed(body)  # which fails the answer past max_body

    def on_message_complete(self) -> None:
        response, self.response = self.response, None
        if response is None:
            return
        if self.inflate is not None:
            rest = self.inflate.flush()
            if len(rest) > self.pool.max_body - response._size:
                self.response = response
                self._too_large(response)
                return
            if rest:
                response._feed(rest)
        # The silence timer stays armed for the connection's next exchange (see `send`); when
        # it fires with nothing under way, it stops.
        if self.paused:  # the answer's end came in the read that paused it
            self.resume()
        if self.parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        response._end()


class HttpClient:
    """Kept-alive connections to every upstream; create it inside the running event loop.

    Limits: `max_head` bytes of an answer's status line and headers; `max_body` bytes of
    answer held unread at once (see the module docstring); `pause_at` bytes unread before a
    stream's reading pauses; `keepalive` seconds an idle connection stays reusable;
    `connect_timeout` seconds at most for a connection (less when the call's timeout is)."""

    def __init__(
        self,
        *,
        max_head: int = MAX_HEAD_BYTES,
        max_body: int = MAX_BODY_BYTES,
        pause_at: int = PAUSE_AT,
        keepalive: float = KEEPALIVE_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_CAP,
    ) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.pause_at = pause_at
        # Past this many bytes unread, an answer is looked at: paused, or failed past max_body.
        self.watch_at = min(pause_at, max_body)
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int, Route | None], list[_Connection]] = {}
        self._all: set[_Connection] = set()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float,
        upstream: str,
        route: Route | None = None,
    ) -> UpstreamResponse:
        """Send a POST and return once the status line and headers are in; `route` says how
        to connect (a proxy, a TLS context), None directly."""
        origin = origin_of(url, route)
        head = origin.head + _header_block(headers, len(body))
        connection = self._idle_connection(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, head, body, upstream, timeout)
            except GatewayError as error:
                # Closed by the upstream while idle (the race every kept-alive client has):
                # nothing of an answer came, so the request was not taken. Once more, anew.
                if connection.received or error.kind != "connection":
                    raise
        connection = await self._connect(origin, upstream, timeout)
        return await self._exchange(connection, head, body, upstream, timeout)

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes,
                        upstream: str, timeout: float) -> UpstreamResponse:
        try:
            return await connection.send(head, body, upstream, timeout)
        except BaseException:
            connection.abandon()  # cancelled or failed mid-exchange: never reused
            raise

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            # (its loop's clock: asyncio.get_running_loop() costs a system call per request)
            if connection.loop.time() - connection.idle_since > self.keepalive:
                connection.close()
                continue
            return connection
        return None

    async def _connect(self, origin: Origin, upstream: str, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        route = origin.route
        tls = None
        if origin.tls:
            tls = route.tls if route is not None and route.tls is not None else _tls_context()
        proxy = route.proxy if route is not None else None
        try:
            async with asyncio.timeout(min(timeout, self.connect_timeout)):
                if proxy is not None:
                    connection = await open_tunnel(proxy, origin.host, origin.port,
                                                   lambda: _Connection(self, origin), tls)
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, origin),
                        origin.host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if origin.tls else None,
                    )
        except TimeoutError:
            raise GatewayError("timeout", f"{_TIMED_OUT} ({upstream}): no connection within "
                               f"{min(timeout, self.connect_timeout):g} s",
                               upstream=upstream) from None
        except (OSError, ssl.SSLError) as exc:
            detail = str(exc).strip()
            if proxy is not None and proxy.shown not in detail:
                detail = f"{detail} (through proxy {proxy.shown})"
            raise GatewayError("connection", f"could not connect to the upstream ({upstream})"
                               + (f": {detail}" if detail else ""), upstream=upstream) from None
        self._all.add(connection)
        return connection

    def release(self, connection: _Connection) -> None:
        connection.idle_since = connection.loop.time()
        self._idle.setdefault(connection.origin.key, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.origin.key)
        if idle and connection in idle:
            idle.remove(connection)

    async def close(self) -> None:
        stopping = GatewayError("connection", "babelgate is shutting down")
        for connection in list(self._all):
            connection.stop(stopping)
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def _header_block(headers: Mapping[str, str], length: int) -> bytes:
    """The request's header lines after `host`, and the blank line that ends the head."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        # A line break inside a name or value would start a header (or a request) of its own.
        bad = next(name for name, value in headers.items()
                   if "\r" in name or "\n" in name or "\r" in value or "\n" in value)
        raise GatewayError("api_error", f"header {bad!r} contains a line break; fix it in "
                           "the provider's `headers`")
    if not any(len(name) == 10 and name.lower() == "user-agent" for name in headers):
        text += _USER_AGENT_LINE
    return (f"{text}content-length: {length}\r\naccept-encoding: identity\r\n\r\n"
            .encode())
