"""The OpenAI Responses codec: Codex CLI's protocol, client-facing and upstream-facing.
Each direction lives in its own module; this class only ties them to the Codec interface."""

from __future__ import annotations

from babelgate.canonical import JSON, GatewayError, Request, Response
from babelgate.protocols.base import Codec, Quirks, StreamDecoder, StreamEncoder

from . import errors, request_in, request_out, response_in, response_out
from .stream_in import ResponsesStreamDecoder
from .stream_out import ResponsesStreamEncoder


class ResponsesCodec(Codec):
    name = "openai-responses"

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON) -> Request:
        return request_in.parse_request(body)

    def render_response(self, response: Response, request: Request) -> JSON:
        return response_out.render_response(response, request)

    def stream_encoder(self, request: Request) -> StreamEncoder:
        return ResponsesStreamEncoder(request)

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request: Request, quirks: Quirks) -> JSON:
        return request_out.render_request(request, quirks)

    def parse_response(self, body: JSON, request: Request) -> Response:
        return response_in.parse_response(body, request)

    def stream_decoder(self, request: Request) -> StreamDecoder:
        return ResponsesStreamDecoder(request)

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)
