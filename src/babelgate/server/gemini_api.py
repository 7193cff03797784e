"""The Gemini API served to Gemini clients (Gemini CLI, the Google GenAI SDKs), on every
upstream: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (SSE with
`?alt=sse`, else one JSON array), `:countTokens`, `GET /v1beta/models` and
`/v1beta/models/{model}` (also under `/v1/` and `/v1alpha/`).

What this module promises:
- The model comes from the URL (protocols/gemini/endpoint.py), the body is the client's; from
  there a call goes through the app's one generation path (`App.generate`) with the Gemini
  codec bound to that model, so routing, fallbacks, pass-through to `type: gemini` upstreams,
  keep-alives and errors behave as for every other protocol.
- The client's key (`x-goog-api-key` or `?key=`) is read by nothing here: providers send their
  own key and forward no client credential, and the query string is neither logged nor sent.
- Every answer, errors included, is in Gemini's shape: `{"error": {"code", "message",
  "status"}}` with the HTTP status the error carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from babelgate.canonical import GatewayError
from babelgate.canonical.nesting import TOO_DEEP, too_deep
from babelgate.protocols import get_codec
from babelgate.protocols.gemini.endpoint import (
    COUNT,
    STREAM,
    ArrayFraming,
    GeminiCall,
    model_resource,
    parse_path,
)
from babelgate.routing import Route

from .auth import check_scope
from .count_tokens import count_tokens, route_count, route_headers
from .exchange import Headers, Response
from .http import Request
from .owner import owner_of

if TYPE_CHECKING:
    from .app import App

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
GEMINI_PREFIXES = ("/v1beta/", "/v1alpha/", "/v1/models/")


class GeminiApi:
    """The Gemini routes of one app (a path prefix, dispatched here by `App.__call__`)."""

    __slots__ = ("app", "codec")

    def __init__(self, app: App) -> None:
        self.app = app
        self.codec = get_codec("gemini")

    async def __call__(self, request: Request, response: Response) -> None:
        call = parse_path(request.path.rstrip("/"))
        method = "GET" if request.method == "HEAD" else request.method
        if call is not None and method == "GET" and call.action is None:
            if call.model:
                self.get_model(call.model, response)
            else:
                self.list_models(response)
            return
        if call is not None and method == "POST" and call.action is not None:
            if call.action == COUNT:
                await self.count(call.model, request, response)
                return
            stream = call.action == STREAM
            if stream and not _wants_sse(request.query):
                response = ArrayResponse(response)
            await self.app.generate(GeminiCall(call.model, stream), request, response)
            return
        self.error(response, GatewayError(
            "not_found", f"babelgate does not serve {method} {request.path}; Gemini clients "
            "can call models/{model}:generateContent, :streamGenerateContent, :countTokens, "
            "and GET models and models/{model}"))

    def list_models(self, response: Response) -> None:
        names = self.app.gateway.router.model_ids()
        _send_json(response, 200, {"models": [model_resource(name) for name in names]})

    def get_model(self, name: str, response: Response) -> None:
        try:
            self.app.gateway.router.resolve(name)
        except GatewayError as error:
            self.error(response, error)
            return
        _send_json(response, 200, model_resource(name))

    async def count(self, model: str, request: Request, response: Response) -> None:
        codec = GeminiCall(model, False)
        gateway = self.app.gateway
        route: Route | None = None  # once known, every answer names it, errors included
        try:
            check_scope(request.caller, model)
            reuse = self.app.reuse.table_for(owner_of(request))
            data = reuse.loads(request.body)
            counting = route_count(gateway, data, request.headers, reuse, codec)
            route = counting.route
            count, estimated = await count_tokens(gateway, counting, request.headers, reuse)
        except GatewayError as error:
            self.error(response, error, route)
            return
        except TOO_DEEP as exc:
            self.error(response, too_deep(exc), route)
            return
        extra = (b"x-babelgate-token-count", b"estimate" if estimated else b"upstream")
        _send_json(response, 200, {"totalTokens": count},
                   [*JSON_HEADERS, extra, *route_headers(route)])

    def error(self, response: Response, error: GatewayError, route: Route | None = None
              ) -> None:
        response.send(error.status, orjson.dumps(self.codec.render_error(error)),
                      [*JSON_HEADERS, *route_headers(route)])


def gemini_path(path: str) -> bool:
    """Whether a path no exact route took belongs to the Gemini API (a prefix test)."""
    return path.startswith(GEMINI_PREFIXES)


def _wants_sse(query: str) -> bool:
    return "alt=sse" in query.split("&")


def _send_json(response: Response, status: int, data: Any,
               headers: Headers = JSON_HEADERS) -> None:
    response.send(status, orjson.dumps(data), headers)


class ArrayResponse:
    """A stream answered as Gemini's JSON array (`:streamGenerateContent` without `alt=sse`):
    the SSE bytes the gateway writes are reframed on their way out (ArrayFraming); the head
    says `application/json`. Whole responses (errors before a stream began) pass unchanged.
    A keep-alive (an SSE comment) becomes nothing: the array has no place for one."""

    __slots__ = ("_framing", "_inner")

    def __init__(self, inner: Response) -> None:
        self._inner = inner
        self._framing = ArrayFraming()

    # The state is the wrapped response's (settable as the interface declares it).
    @property
    def started(self) -> bool:
        return self._inner.started

    @started.setter
    def started(self, value: bool) -> None:
        self._inner.started = value

    @property
    def finished(self) -> bool:
        return self._inner.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self._inner.finished = value

    @property
    def client_gone(self) -> bool:
        return self._inner.client_gone

    def send(self, status: int, body: bytes, headers: Headers) -> None:
        self._inner.send(status, body, headers)

    def start(self, status: int, headers: Headers, first: bytes = b"") -> None:
        kept = [(name, value) for name, value in headers
                if name not in (b"content-type", b"cache-control", b"x-accel-buffering")]
        self._inner.start(status, [*JSON_HEADERS, *kept], self._framing.feed(first))

    async def write(self, data: bytes) -> None:
        framed = self._framing.feed(data)
        if framed:
            await self._inner.write(framed)

    def end(self, tail: bytes = b"") -> None:
        self._inner.end(self._framing.feed(tail) + self._framing.close())
