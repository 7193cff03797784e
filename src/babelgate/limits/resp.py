"""A lean RESP client: the few commands the limits send, on our own event loop.

Why not redis-py on the request path: under callgrind one redis-py asyncio round trip cost
~0.4 M instructions (its connection pool, command packing, response parser and lock), and a
limited request makes two (admission and settlement), +70% of a whole request's instructions.
This client keeps one persistent connection, writes a command as one pre-sized bytes object,
and parses only the replies RESP2 gives to our commands (simple strings, errors, integers,
bulk strings, arrays of those), FIFO, so concurrent requests pipeline on the one connection.

What this module promises:
- `RespClient(url, timeout)` speaks to `redis://[user:password@]host[:port][/db]`,
  `rediss://` (TLS) or `unix:///path[?db=N]`. It connects on first use (AUTH and SELECT sent
  then), and again after the connection is lost.
- `call(*args)` sends one command and returns its reply: bytes, int, None, or a list of
  those; `send(command)` the same for a command encoded already. An error reply raises
  `RespError`; no connection, a lost connection or no reply in `timeout` seconds (1.5
  at most: one timer per connection checks) raise `ConnectionError` / `TimeoutError` (both
  OSError). A reply that is late is not mistaken for the next command's: the connection is
  dropped on a timeout.
- The parser holds at most one reply's bytes beyond what it consumed; a server that sends
  garbage has its connection dropped.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

Reply = bytes | int | None | list["Reply"]


class RespError(Exception):
    """An error reply from the server (`-ERR ...`, `-NOSCRIPT ...`)."""

    @property
    def code(self) -> str:
        return str(self.args[0]).split(" ", 1)[0]


def encode(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """One command as RESP: an array of bulk strings. Our commands are ASCII text and numbers,
    written as one str and encoded once (a bytes object per argument cost twice as much)."""
    parts = [f"*{len(args)}\r\n"]
    for arg in args:
        if type(arg) is str:
            text = arg
        elif type(arg) is int:
            text = str(arg)
        elif type(arg) is float:
            text = repr(arg)
        else:
            return _encode_bytes(args)
        if not text.isascii():  # a bulk string's length is in bytes
            return _encode_bytes(args)
        parts.append(f"${len(text)}\r\n{text}\r\n")
    return "".join(parts).encode()


def _encode_bytes(args: tuple[bytes | str | int | float, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Incomplete(Exception):
    """The buffer ends before the reply does: wait for more bytes."""


def parse(buffer: bytes, start: int) -> tuple[Reply | RespError, int]:
    """One reply from `buffer` at `start`: (reply, where the next begins); Incomplete when the
    buffer ends first, ValueError on what is not RESP."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise Incomplete
    kind, line = buffer[start:start + 1], buffer[start + 1:end]
    after = end + 2
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise Incomplete
        return buffer[after:after + size], after + size + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), after
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if isinstance(item, RespError):
                raise ValueError("an error inside an array")
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP reply: {kind!r}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Reply]] = collections.deque()
        self.buffer = b""
        self.lost: BaseException | None = None
        self.watch: asyncio.TimerHandle | None = None  # RespClient._watch, while armed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        at = 0
        try:
            while at < len(buffer) and self.waiting:
                reply, at = parse(buffer, at)
                waiter = self.waiting.popleft()
                if not waiter.done():  # not cancelled by its caller meanwhile
                    if isinstance(reply, RespError):
                        waiter.set_exception(reply)
                    else:
                        waiter.set_result(reply)
        except Incomplete:
            pass
        except ValueError:
            self.drop(ConnectionError("the server sent something that is not RESP"))
            return
        if at < len(buffer) and not self.waiting:
            self.drop(ConnectionError("the server sent a reply nobody asked for"))
            return
        self.buffer = buffer[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionError("the server closed the connection"))

    def fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(str(exc) or type(exc).__name__))

    def drop(self, exc: BaseException) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        self.url = url
        self.timeout = timeout
        parts = urlsplit(url)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = parts.scheme == "rediss"
        db_text = (parse_qs(parts.query).get("db", ["0"])[0] if self._unix is not None
                   else parts.path.strip("/") or "0")
        self._db = int(db_text) if db_text.isdigit() else 0
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: bytes | str | int | float) -> Reply:
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        return await self._send(connection, encode(args))

    async def send(self, command: bytes) -> Reply:
        """`call` for a command encoded already (by `encode`, or from parts of it kept
        between calls)."""
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        return await self._send(connection, command)

    async def _send(self, connection: _Connection, command: bytes) -> Reply:
        assert connection.transport is not None
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        connection.waiting.append(waiter)
        connection.transport.write(command)
        if connection.watch is None:
            connection.watch = asyncio.get_running_loop().call_later(
                self.timeout / 2, self._watch, connection, None, 0)
        return await waiter

    def _watch(self, connection: _Connection, head: asyncio.Future[Reply] | None,
               seen: int) -> None:
        """Every half `timeout` while commands wait: the oldest one seen three times in a
        row has waited `timeout` seconds at least (1.5 at most) for its reply. One timer
        per connection rather than one per command (a timer made and cancelled cost ~5,000
        instructions a command under callgrind)."""
        connection.watch = None
        waiting = connection.waiting
        if connection.lost is not None or not waiting:
            return
        first = waiting[0]
        seen = seen + 1 if first is head else 1
        if seen < 3:
            connection.watch = asyncio.get_running_loop().call_later(
                self.timeout / 2, self._watch, connection, first, seen)
            return
        late = f"no reply in {self.timeout:g} s"
        for waiter in waiting:
            if not waiter.done():
                waiter.set_exception(TimeoutError(late))
        # Later replies on this connection would answer the wrong commands: drop it.
        connection.drop(TimeoutError(late))

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            current = self._connection
            if current is not None and current.lost is None:
                return current  # another caller connected meanwhile
            loop = asyncio.get_running_loop()
            try:
                if self._unix is not None:
                    opening = loop.create_unix_connection(_Connection, self._unix)
                else:
                    opening = loop.create_connection(
                        _Connection, self._host, self._port,
                        ssl=ssl.create_default_context() if self._tls else None)
                transport, connection = await asyncio.wait_for(opening, self.timeout)
            except TimeoutError:
                raise TimeoutError(f"cannot connect in {self.timeout:g} s") from None
            # uvloop may call connection_made only after the opening returned.
            connection.transport = transport
            try:
                if self._password is not None:
                    auth = (self._user, self._password) if self._user else (self._password,)
                    await self._send(connection, encode(("AUTH", *auth)))
                if self._db:
                    await self._send(connection, encode(("SELECT", self._db)))
            except BaseException:
                connection.drop(ConnectionError("set-up failed"))
                raise
            self._connection = connection
            return connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.fail(ConnectionError("closed"))
            connection.transport.close()
