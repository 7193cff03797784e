"""GeminiCodec: the native Gemini generateContent protocol, both directions.

The provider layer builds the URLs (`{base}/v1beta/models/{model}:generateContent`,
`:streamGenerateContent?alt=sse`, `:countTokens`); this codec builds and reads bodies only.
The model name travels in the URL, never in the generateContent body.
"""

from __future__ import annotations

from typing import Any, ClassVar

from babelgate.canonical import GatewayError, Request, Response
from babelgate.protocols.base import Codec, Quirks, StreamDecoder, StreamEncoder
from babelgate.protocols.reuse import Reuse, unshared

from . import client, errors, request, response
from .stream_decode import GeminiStreamDecoder
from .stream_encode import GeminiStreamEncoder

JSON = dict[str, Any]


class GeminiCodec(Codec):
    name: ClassVar[str] = "gemini"

    # ------------------------------------------------ client-facing
    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return client.parse_request(body, reuse)

    def render_response(
        self, response: Response, request: Request, reuse: Reuse | None = None
    ) -> JSON:
        return client.render_response(response, request)

    def stream_encoder(self, request: Request, reuse: Reuse | None = None) -> StreamEncoder:
        return GeminiStreamEncoder(request)

    def render_error(self, error: GatewayError) -> JSON:
        return errors.render_error(error)

    # ------------------------------------------------ upstream-facing
    def render_request(self, request: Request, quirks: Quirks, reuse: Reuse | None = None) -> JSON:
        return _render_request(request, quirks, unshared(reuse))

    def parse_response(self, body: JSON, request: Request, reuse: Reuse | None = None) -> Response:
        return response.parse_response(body, request)

    def stream_decoder(self, request: Request, reuse: Reuse | None = None) -> StreamDecoder:
        return GeminiStreamDecoder(request, unshared(reuse))

    def parse_error(self, status: int, body: bytes) -> GatewayError:
        return errors.parse_error(status, body)

    # ------------------------------------------------ token counting (`:countTokens`)
    def parse_count_tokens_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return client.parse_count_tokens_request(body, reuse)

    def render_count_tokens(
        self, request: Request, quirks: Quirks, reuse: Reuse | None = None
    ) -> JSON:
        return _render_count_tokens(request, quirks, unshared(reuse))

    def parse_count_tokens(self, body: JSON) -> int:
        total = body.get("totalTokens")
        return total if isinstance(total, int) else 0


_render_request = request.render_request
_render_count_tokens = request.render_count_tokens
