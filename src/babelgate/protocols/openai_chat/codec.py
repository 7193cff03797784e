"""The OpenAI Chat Completions codec: one object tying the modules of this package to the
Codec interface. It holds no state; each stream gets its own decoder or encoder."""

from __future__ import annotations

from typing import ClassVar

from babelgate.canonical import JSON, GatewayError, Request, Response

from ..base import Codec, Quirks, StreamDecoder, StreamEncoder
from . import errors, parse_request, parse_response, render_request, render_response
from .stream_decoder import ChatStreamDecoder
from .stream_encoder import ChatStreamEncoder


class OpenAIChatCodec(Codec):
    name: ClassVar[str] = "openai"

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON) -> Request:
        return parse_request.parse_request(body)

    def render_response(self, response: Response, request: Request) -> JSON:
        return render_response.render_response(response, request)

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return ChatStreamEncoder(request)

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request: Request, quirks: Quirks) -> JSON:
        return render_request.render_request(request, quirks)

    def parse_response(self, body: JSON, request: Request) -> Response:
        return parse_response.parse_response(body, request)

    def stream_decoder(self, request: Request) -> StreamDecoder:
        return ChatStreamDecoder(request)

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)
