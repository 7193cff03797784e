"""The ASGI application: a route table and one handler per endpoint.

`create_app(settings)` builds everything once (router, providers, HTTP client, tokenizer);
nothing happens at import time. Every error reaches the client in the format of the protocol
it spoke, with the status the error carries.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from babelgate import __version__, reuse
from babelgate.canonical import GatewayError, StreamError
from babelgate.config import Settings
from babelgate.protocols import Codec, get_codec
from babelgate.routing import Target
from babelgate.storage.conversation import Conversations, Recorder
from babelgate.storage.responses import ResponseStore, default_db_path

from .asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    cancel_on_disconnect,
    header_map,
    read_body,
    send_bytes,
    send_json,
)
from .count_tokens import count_tokens
from .gateway import Call, Gateway
from .memory import HeapTrimmer

log = logging.getLogger("babelgate")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

# GET/DELETE of a stored response: /v1/responses/{id}
STORED_RESPONSE_PREFIXES = ("/v1/responses/", "/responses/")

# Inbound protocol by path.
GENERATE_PATHS = {
    "/v1/messages": "anthropic",
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/responses": "openai-responses",
    "/responses": "openai-responses",
}


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        self.trimmer = HeapTrimmer()
        self.started = time.time()
        reuse.REUSE.resize(int(settings.server.reuse_mb * 2**20))
        storage = settings.storage
        # Responses clients' conversations (previous_response_id). Nothing opens the database
        # before a Responses request asks to store or continue one.
        self.conversations = Conversations(ResponseStore(
            storage.path or default_db_path(), storage.responses_ttl_days
        ))
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
            ("GET", "/v1/models"): self.models,
            ("GET", "/models"): self.models,
            ("GET", "/health"): self.health,
            ("GET", "/"): self.health,
            ("POST", "/api/event_logging/batch"): self.drop_telemetry,
        }
        for path, protocol in GENERATE_PATHS.items():
            self.routes[("POST", path)] = self._generate_for(protocol)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/")
            handler = self.routes.get((scope["method"], path))
            if handler is None and path.startswith(STORED_RESPONSE_PREFIXES):
                handler = self.stored_response
            if handler is None:
                await self.not_found(scope, receive, send)
                return
            await handler(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    # ------------------------------------------------------------------ lifecycle
    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.gateway.start()
                await self.conversations.store.start()  # prunes expired responses
                # Everything built so far lives as long as the process: keep the collector
                # from scanning it again on every full collection of the request path.
                gc.freeze()
                # A 50 KB request is a few thousand objects; with the default threshold (700)
                # the collector ran ~3,400 times in 8 s under load and took 8% of the core,
                # re-scanning requests in flight. Nearly all of it is freed by reference
                # counting anyway; collect young objects every 20,000 allocations instead.
                gc.set_threshold(20_000, 20, 20)
                self.trimmer.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.trimmer.stop()
                await self.gateway.stop()
                await self.conversations.store.close()  # finishes queued writes
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ generation
    def _generate_for(self, protocol: str) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            # get_codec is a dict lookup once loaded; loading on first use keeps start-up
            # independent of protocols nobody calls.
            await self.generate(get_codec(protocol), scope, receive, send)

        return handler

    async def generate(self, codec: Codec, scope: Scope, receive: Receive, send: Send) -> None:
        recorder: Recorder | None = None
        try:
            raw = await read_body(receive)
            data = original = reuse.loads(raw)
            if codec.name == "openai-responses":  # stored conversations; see storage/
                data, recorder = await self.conversations.prepare(data)
            request = codec.parse_request(data)
            targets = self.gateway.router.resolve(request.model)
        except GatewayError as error:
            await send_error(send, codec, error)
            return
        call = Call(codec, request, data, raw, header_map(scope), releasable=data is original)
        # From here the body lives only in `call`, which lets go of it while upstreams are
        # awaited and once a stream settles; locals of this frame would keep it for the whole
        # stream (~150 KB for Claude Code).
        del raw, data, original, request
        if call.request.stream:
            await cancel_on_disconnect(receive, self._stream(call, targets, send, recorder))
        else:
            await cancel_on_disconnect(receive, self._complete(call, targets, send, recorder))

    async def _complete(
        self, call: Call, targets: list[Target], send: Send, recorder: Recorder | None = None
    ) -> None:
        try:
            body, target = await self.gateway.complete(call, targets)
        except GatewayError as error:
            await send_error(send, call.codec, error)
            return
        except Exception as exc:  # a bug of ours: tell the client, keep the server up
            log.exception("internal error serving %s", call.request.model)
            await send_error(send, call.codec, internal_error(exc))
            return
        if recorder is not None:  # before sending: the client's next turn must find it
            recorder.whole(body)
        await send_bytes(send, 200, body, _json_headers(target))

    async def _stream(
        self, call: Call, targets: list[Target], send: Send, recorder: Recorder | None = None
    ) -> None:
        try:
            first, rest, target = await self.gateway.stream(call, targets)
        except GatewayError as error:
            await send_error(send, call.codec, error)
            return
        except Exception as exc:
            log.exception("internal error opening a stream for %s", call.request.model)
            await send_error(send, call.codec, internal_error(exc))
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, _target_header(target)]})
        if recorder is not None:  # keeps the final response object before it is sent
            recorder.feed(first)
        await send({"type": "http.response.body", "body": first, "more_body": True})
        try:
            async for chunk in rest:
                if recorder is not None:
                    recorder.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            # The server is stopping and its grace period ran out (a client that left is
            # handled by cancel_on_disconnect, and sending to it does nothing): end the stream
            # with an error the client retries on, not a silent cut, and let the task finish.
            stopping = GatewayError("overloaded", "babelgate is shutting down; retry the request")
            tail = call.codec.stream_encoder(call.request).encode(StreamError(stopping))
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        except Exception as exc:
            log.exception("internal error while streaming %s", call.request.model)
            tail = call.codec.stream_encoder(call.request).encode(StreamError(internal_error(exc)))
            await send({"type": "http.response.body", "body": tail, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # ------------------------------------------------------------------ other endpoints
    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        codec = get_codec("anthropic")
        try:
            raw = await read_body(receive)
            data = reuse.loads(raw)
            count, estimated = await count_tokens(self.gateway, data, header_map(scope))
        except GatewayError as error:
            await send_error(send, codec, error)
            return
        extra = [(b"x-babelgate-token-count", b"estimate" if estimated else b"upstream")]
        await send_json(send, 200, {"input_tokens": count}, extra)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = self.gateway.router.routable()
        if any(name == b"anthropic-version" for name, _ in scope["headers"]):
            data: list[dict[str, Any]] = [
                {"type": "model", "id": name, "display_name": name,
                 "created_at": "2025-01-01T00:00:00Z"}
                for name in names
            ]
            await send_json(send, 200, {
                "data": data, "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            })
            return
        created = int(self.started)
        await send_json(send, 200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "babelgate"}
            for name in names
        ]})

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {
            "status": "ok",
            "version": __version__,
            "config": self.settings.source,
            "providers": [p.describe() for p in self.gateway.providers.values()],
            "uptime_s": round(time.time() - self.started, 1),
            "reuse": reuse.REUSE.stats(),  # request pieces decoded once and found again
        })

    async def stored_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET or DELETE /v1/responses/{id}: a response kept for previous_response_id."""
        rid = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        store = self.conversations.store
        if scope["method"] == "GET":
            stored = await store.get(rid)
            if stored is not None:
                await send_json(send, 200, stored.response)
                return
        elif scope["method"] == "DELETE":
            if await store.delete(rid):
                await send_json(send, 200, {"id": rid, "object": "response", "deleted": True})
                return
        else:
            await self.not_found(scope, receive, send)
            return
        await send_error(send, get_codec("openai-responses"), GatewayError(
            "not_found", f"Response with id '{rid}' not found.", param="response_id"
        ))

    async def drop_telemetry(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Claude Code posts its telemetry here when pointed at a gateway: accept, drop."""
        await read_body(receive)
        await send_json(send, 200, {})

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        codec = get_codec("anthropic" if path.startswith("/v1/messages") else "openai")
        known = sorted({p for _, p in self.routes})
        await send_error(send, codec, GatewayError(
            "not_found",
            f"no endpoint {scope['method']} {path}; babelgate serves: {', '.join(known)}",
        ))


def create_app(settings: Settings) -> App:
    return App(settings)


async def send_error(send: Send, codec: Codec, error: GatewayError) -> None:
    headers = JSON_HEADERS
    if error.retry_after is not None:
        # Clients' SDKs wait as long as this says before retrying a 429 or 5xx.
        headers = [*JSON_HEADERS, (b"retry-after", f"{error.retry_after:g}".encode())]
    await send_bytes(send, error.status, orjson.dumps(codec.render_error(error)), headers)


def internal_error(exc: Exception) -> GatewayError:
    return GatewayError("api_error", f"internal gateway error: {type(exc).__name__}: {exc}")


def _target_header(target: Target) -> tuple[bytes, bytes]:
    return (b"x-babelgate-target", f"{target.provider}/{target.model}".encode())


def _json_headers(target: Target) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), _target_header(target)]
