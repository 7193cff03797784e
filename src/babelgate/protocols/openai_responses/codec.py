"""The OpenAI Responses codec: Codex CLI's protocol, client-facing and upstream-facing.
Each direction lives in its own module; this class only ties them to the Codec interface."""

from __future__ import annotations

from babelgate.canonical import JSON, GatewayError, Request, Response
from babelgate.protocols.base import Codec, Quirks, StreamDecoder, StreamEncoder
from babelgate.protocols.reuse import Reuse, unshared

from . import errors, request_in, request_out, response_in, response_out
from .stream_in import ResponsesStreamDecoder
from .stream_out import ResponsesStreamEncoder


class ResponsesCodec(Codec):
    name = "openai-responses"

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return request_in.parse_request(body, unshared(reuse))

    def render_response(
        self, response: Response, request: Request, reuse: Reuse | None = None
    ) -> JSON:
        return response_out.render_response(response, request, unshared(reuse))

    def stream_encoder(self, request: Request, reuse: Reuse | None = None) -> StreamEncoder:
        return ResponsesStreamEncoder(request, unshared(reuse))

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request: Request, quirks: Quirks, reuse: Reuse | None = None) -> JSON:
        return request_out.render_request(request, quirks, unshared(reuse))

    def parse_response(self, body: JSON, request: Request, reuse: Reuse | None = None) -> Response:
        return response_in.parse_response(body, request)

    def stream_decoder(self, request: Request, reuse: Reuse | None = None) -> StreamDecoder:
        return ResponsesStreamDecoder(request)

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)
