"""The Anthropic Messages API (`POST /v1/messages`), both directions. `codec` is the shared
instance the protocol registry loads."""

from .codec import AnthropicCodec

codec = AnthropicCodec()

__all__ = ["AnthropicCodec", "codec"]
