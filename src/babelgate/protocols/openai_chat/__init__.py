"""OpenAI Chat Completions (`/v1/chat/completions`), both directions: the wire format most
OpenAI-compatible upstreams speak (DeepSeek, Kimi, GLM, Qwen, Grok, OpenRouter, Ollama, vLLM)
and many clients send. Differences between upstreams come in as `Quirks`."""

from .codec import OpenAIChatCodec

codec = OpenAIChatCodec()

__all__ = ["OpenAIChatCodec", "codec"]
