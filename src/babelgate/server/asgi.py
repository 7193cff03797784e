"""Minimal ASGI plumbing: read a body, send a whole response, stream one.

The gateway speaks raw ASGI rather than through a web framework: the request path is hot and
needs nothing a framework adds (routing is a dict lookup on the path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import orjson

from babelgate.canonical import GatewayError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # keep reverse proxies from buffering the stream
]
MAX_BODY_BYTES = 64 * 1024 * 1024


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the common case, one message, costs no copy)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise GatewayError("request_too_large", "request body is larger than 64 MiB")
        parts.append(chunk)
    return b"".join(parts)


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict of lower-case names (ASGI already lower-cases them)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = JSON_HEADERS,
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = JSON_HEADERS + extra if extra else JSON_HEADERS
    await send_bytes(send, status, orjson.dumps(data), headers)


async def cancel_on_disconnect(receive: Receive, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` in this task; if the client disconnects first, cancel it (and so the
    upstream request it holds). Only call once the request body has been read. One watcher
    task per request: `work` runs inline rather than in a task of its own."""
    current = asyncio.current_task()
    assert current is not None
    state = {"done": False, "cut": False}

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not state["done"]:
                    state["cut"] = True
                    current.cancel()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not state["cut"]:  # cancelled from outside (shutdown), not by the client leaving
            raise
        current.uncancel()
    finally:
        state["done"] = True
        watcher.cancel()
