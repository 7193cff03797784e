"""The app under an ASGI server (uvicorn, granian, hypercorn), for HTTP/2 or TLS in process:

    BABELGATE_CONFIG=babelgate.yaml uvicorn --factory babelgate.server.asgi:app_factory \\
        --host 127.0.0.1 --port 8080 --loop uvloop --http httptools --no-access-log
    BABELGATE_CONFIG=babelgate.yaml granian --interface asgi --factory \\
        babelgate.server.asgi:app_factory --host 127.0.0.1 --port 8080 --loop uvloop

Our own server (`babelgate serve`, server/http.py) stays the default: it does the same work in
fewer instructions per request (docs/benchmark.md). This module is only the seam: an ASGI
request becomes the plain `Request` the app's handlers read, and their `Response` calls
become ASGI messages. What the app promises holds under both:
- a whole answer is one `http.response.body` message; a stream's messages go out as the
  handler writes them, and `write` waits for the server's `send`, which is where an ASGI
  server applies backpressure;
- a client that disconnects cancels its request's task, and with it the upstream request
  (a watcher awaits the `http.disconnect` that ASGI servers deliver through `receive`);
- a request body over `max_body` is refused with 413 in the client's protocol's format;
- a handler that fails before answering gets a 500 in that format; one that fails
  mid-stream leaves the response incomplete, which ASGI servers turn into a cut connection
  (the client reads a broken answer, not a short one);
- `lifespan` starts and stops the app (a server without it starts the app on the first
  request; it is then stopped with the process).
Hot reload works as under our server (server/reload.py): the lifespan starts the watch of the
configuration file, and POST /admin/reload is an endpoint of the app; SIGHUP is the ASGI
server's own business.
On SIGTERM the ASGI server decides how long open requests may run: `server.shutdown_timeout`
is not read. uvicorn cancels what is still open after --timeout-graceful-shutdown, and a
stream cancelled so ends with an error event its client retries on, as under our server;
granian lets open requests run to their end (--workers-kill-timeout cuts them instead).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from babelgate.config import ConfigError, load_settings

from .app import App, create_app
from .exchange import Headers
from .http import Request
from .run import configure_logging

log = logging.getLogger("babelgate")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONFIG_VARIABLE = "BABELGATE_CONFIG"  # the app factory's configuration file
MAX_BODY_BYTES = 64 * 1024 * 1024  # as our own server's limit


class AsgiResponse:
    """The app's `Response` (server/exchange.py) over an ASGI `send`. `send`, `start` and
    `end` only queue their messages (they must not wait); the next `write`, or the adapter
    once the handler returns, delivers them."""

    __slots__ = ("_head_only", "_queued", "_send", "finished", "gone", "started")

    def __init__(self, send: Send, head_only: bool) -> None:
        self._send = send
        self._head_only = head_only
        self._queued: list[Message] = []
        self.started = False
        self.finished = False
        self.gone = False  # the server reported the client's disconnect

    @property
    def client_gone(self) -> bool:
        return self.gone

    def send(self, status: int, body: bytes, headers: Headers) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = self.finished = True
        self._queued += (
            {"type": "http.response.start", "status": status,
             "headers": [*headers, (b"content-length", b"%d" % len(body))]},
            {"type": "http.response.body", "body": b"" if self._head_only else body},
        )

    def start(self, status: int, headers: Headers, first: bytes = b"") -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        self.started = True
        self._queued.append({"type": "http.response.start", "status": status,
                             "headers": list(headers)})
        if first and not self._head_only:
            self._queued.append({"type": "http.response.body", "body": first, "more_body": True})

    async def write(self, data: bytes) -> None:
        if not data or self.gone or self._head_only:
            return
        self._queued.append({"type": "http.response.body", "body": data, "more_body": True})
        await self.deliver()

    def end(self, tail: bytes = b"") -> None:
        if self.finished:
            return
        self.finished = True
        self._queued.append({"type": "http.response.body",
                             "body": b"" if self._head_only else tail})

    async def deliver(self) -> None:
        """Send what is queued. A client gone meanwhile makes it a no-op: its task is being
        cancelled (ASGI servers may raise OSError for a send after a disconnect)."""
        queued, self._queued = self._queued, []
        try:
            for message in queued:
                if self.gone:
                    return
                await self._send(message)
        except OSError:
            self.gone = True


class AsgiApp:
    """An ASGI 3 application serving `app`'s handlers."""

    def __init__(self, app: App, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body
        self._started = False
        self._starting = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # Anything else (websocket) is not ours: returning refuses it.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as exc:
                    log.exception("babelgate failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.app.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        async with self._starting:
            if not self._started:
                await self.app.start()
                self._started = True

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._started:
            await self._start()  # a server without lifespan: start on the first request
        path: str = scope["path"]
        response = AsgiResponse(send, scope["method"] == "HEAD")
        headers = _headers(scope["headers"])
        body = await self._body(receive, headers, path, response)
        if body is None:  # refused, or the client left while sending it
            await response.deliver()
            return
        request = Request(scope["method"], path, scope.get("query_string", b"").decode("latin-1"),
                          headers, body)
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(_watch(receive, response, task))
        try:
            await self.app(request, response)
        except asyncio.CancelledError:
            if not response.gone:
                raise  # the server itself cancelled us (it is stopping)
            task.uncancel()  # our own watcher's cancel: the client left, nothing more to say
            return
        except Exception:  # a bug of ours: answer if we still can
            log.exception("internal error serving %s %s", request.method, request.path)
            if not response.started:
                body, error_headers = self.app.refusal(path, 500, "internal gateway error")
                response.send(500, body, error_headers)
            else:
                response.finished = True  # never ended: the server cuts the connection
        finally:
            watcher.cancel()  # before the last message: completing makes receive() return
        if not response.finished:
            if response.started:  # a handler that returned mid-stream: end it properly
                response.end()
            else:
                body, error_headers = self.app.refusal(path, 500, "the gateway sent no response")
                response.send(500, body, error_headers)
        await response.deliver()

    async def _body(
        self, receive: Receive, headers: dict[str, str], path: str, response: AsgiResponse
    ) -> bytes | None:
        """The whole request body; None when it was refused (the refusal queued on
        `response`) or the client left before sending it all."""
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            self._refuse(path, response)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                response.gone = True
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                self._refuse(path, response)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _refuse(self, path: str, response: AsgiResponse) -> None:
        body, headers = self.app.refusal(
            path, 413, f"request body is larger than {_size(self.max_body)}")
        response.send(413, body, [*headers, (b"connection", b"close")])


async def _watch(receive: Receive, response: AsgiResponse, task: asyncio.Task[Any]) -> None:
    """Wait for the client to disconnect, then cancel its request's task. Cancelled by the
    adapter once the handler is done."""
    while (await receive())["type"] != "http.disconnect":
        pass
    response.gone = True
    task.cancel()


def _size(size: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """As our own server gives them: lower-case names, repeated ones joined with ", "."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = headers.get(key)
        headers[key] = text if known is None else f"{known}, {text}"
    return headers


def app_factory() -> AsgiApp:
    """The ASGI app, configured from the file named by $BABELGATE_CONFIG (else as `babelgate
    serve` without --config: ./babelgate.yaml, then API-key variables). Host, port, TLS and
    the graceful-stop timeout are the ASGI server's own options."""
    configure_logging()
    try:
        settings = load_settings(os.environ.get(CONFIG_VARIABLE) or None)
    except ConfigError as exc:
        print(f"babelgate: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return AsgiApp(create_app(settings), int(settings.server.max_body_mb * 2**20))
