"""The Anthropic Messages codec: one stateless object wiring the modules of this package to
the Codec interface (see protocols/base.py)."""

from __future__ import annotations

from typing import ClassVar

from babelgate.canonical import JSON, GatewayError, Request, Response

from ..base import Codec, Quirks, StreamDecoder, StreamEncoder
from ..reuse import Reuse, unshared
from . import errors, request, response, typed_request, upstream_request
from .stream_decode import AnthropicStreamDecoder
from .stream_encode import AnthropicStreamEncoder


class AnthropicCodec(Codec):
    name: ClassVar[str] = "anthropic"
    # The API's own keep-alive event; Claude Code resets its idle timer on it.
    keepalive: ClassVar[bytes] = b'event: ping\ndata: {"type": "ping"}\n\n'

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return request.parse_request(body, unshared(reuse))

    def parse_count_tokens_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return request.parse_count_tokens_request(body, unshared(reuse))

    def read_request(self, raw: bytes, reuse: Reuse) -> Request | None:
        return typed_request.read_request(raw, reuse)

    def render_response(
        self, response_: Response, request_: Request, reuse: Reuse | None = None
    ) -> JSON:
        return response.render_response(response_, request_)

    def stream_encoder(self, request_: Request, reuse: Reuse | None = None) -> StreamEncoder:
        return AnthropicStreamEncoder(request_)

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request_: Request, quirks: Quirks, reuse: Reuse | None = None) -> JSON:
        return upstream_request.render_request(request_, quirks, unshared(reuse))

    def parse_response(self, body: JSON, request_: Request, reuse: Reuse | None = None) -> Response:
        return response.parse_response(body, request_)

    def stream_decoder(self, request_: Request, reuse: Reuse | None = None) -> StreamDecoder:
        return AnthropicStreamDecoder(request_, unshared(reuse))

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)

    # ------------------------------------------------ token counting
    def render_count_tokens(
        self, request_: Request, quirks: Quirks, reuse: Reuse | None = None
    ) -> JSON:
        return upstream_request.render_count_tokens(request_, quirks, unshared(reuse))

    def parse_count_tokens(self, body: JSON) -> int | None:
        count = body.get("input_tokens")
        return count if isinstance(count, int) and not isinstance(count, bool) else None
