"""OpenAI Responses API (`POST /v1/responses`), the protocol Codex CLI speaks."""

from .codec import ResponsesCodec

codec = ResponsesCodec()

__all__ = ["ResponsesCodec", "codec"]
