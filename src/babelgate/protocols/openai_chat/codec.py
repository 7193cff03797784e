"""The OpenAI Chat Completions codec: one object tying the modules of this package to the
Codec interface. It holds no state; each stream gets its own decoder or encoder."""

from __future__ import annotations

from typing import ClassVar

from babelgate.canonical import JSON, GatewayError, Request, Response

from ..base import Codec, Quirks, StreamDecoder, StreamEncoder
from ..reuse import Reuse, unshared
from . import errors, parse_request, parse_response, render_request, render_response
from .stream_decoder import ChatStreamDecoder
from .stream_encoder import ChatStreamEncoder


class OpenAIChatCodec(Codec):
    name: ClassVar[str] = "openai"

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return parse_request.parse_request(body, unshared(reuse))

    def render_response(
        self, response: Response, request: Request, reuse: Reuse | None = None
    ) -> JSON:
        return render_response.render_response(response, request)

    def stream_encoder(self, request: Request, reuse: Reuse | None = None) -> StreamEncoder:
        return ChatStreamEncoder(request)

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request: Request, quirks: Quirks, reuse: Reuse | None = None) -> JSON:
        return render_request.render_request(request, quirks, unshared(reuse))

    def parse_response(self, body: JSON, request: Request, reuse: Reuse | None = None) -> Response:
        return parse_response.parse_response(body, request, unshared(reuse))

    def stream_decoder(self, request: Request, reuse: Reuse | None = None) -> StreamDecoder:
        return ChatStreamDecoder(request, unshared(reuse))

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)
