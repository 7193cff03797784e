"""Wire-protocol codecs, one package per protocol, no I/O. `get_codec(name)` is the registry:
each protocol package exposes a module-level `codec` instance."""

from __future__ import annotations

import importlib

from .base import Codec, Quirks, StreamDecoder, StreamEncoder

_MODULES = {
    "anthropic": "babelgate.protocols.anthropic",
    "openai": "babelgate.protocols.openai_chat",
    "gemini": "babelgate.protocols.gemini",
    "openai-responses": "babelgate.protocols.openai_responses",
}
_loaded: dict[str, Codec] = {}

PROTOCOL_NAMES = tuple(_MODULES)


def get_codec(name: str) -> Codec:
    """The codec for a wire protocol name (`anthropic`, `openai`, `gemini`,
    `openai-responses`). Raises KeyError for an unknown name."""
    codec = _loaded.get(name)
    if codec is None:
        module = importlib.import_module(_MODULES[name])
        codec = _loaded[name] = module.codec
    return codec


__all__ = ["PROTOCOL_NAMES", "Codec", "Quirks", "StreamDecoder", "StreamEncoder", "get_codec"]
