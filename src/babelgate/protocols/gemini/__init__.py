"""The Gemini native protocol (generateContent / streamGenerateContent / countTokens)."""

from .codec import GeminiCodec

codec = GeminiCodec()

__all__ = ["GeminiCodec", "codec"]
