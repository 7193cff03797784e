"""The Gemini API as a Gemini client calls it, beyond the bodies: which call a URL names, the
codec bound to that call, the JSON-array stream framing, and the model resources.

What this module promises (no I/O, as every codec module):
- `parse_path` reads `/v1beta/models/{model}:{action}` (also `/v1/` and `/v1alpha/`), the
  path already URL-decoded by the server. The model is everything between `models/` and a
  last `:` that names an action babelgate serves, so a target such as `ollama/qwen3:8b`
  survives; a doubled `models/` prefix (a client that kept the resource name) is dropped.
- `GeminiCall` is the Gemini codec with the URL's model and streaming filled in: a Gemini
  body names neither, and the gateway re-parses bodies (a fallback) through the call's codec.
- `ArrayFraming` turns the Gemini SSE stream (what every path of the gateway produces) into
  the JSON array `:streamGenerateContent` answers without `alt=sse`: `[` chunk `,\\r\\n`
  chunk ... `]`, as Google's servers frame it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from msgspec.structs import replace

from babelgate.canonical import Request
from babelgate.protocols.reuse import Reuse
from babelgate.protocols.sse import SSEDecoder

from . import client
from .codec import GeminiCodec

JSON = dict[str, Any]

VERSIONS = ("/v1beta/", "/v1/", "/v1alpha/")
GENERATE = "generateContent"
STREAM = "streamGenerateContent"
COUNT = "countTokens"
ACTIONS = frozenset({GENERATE, STREAM, COUNT})
METHODS = [GENERATE, STREAM, COUNT]


@dataclass(frozen=True, slots=True)
class GeminiPath:
    """A Gemini API path: `model` ("" for the collection) and `action` (one of ACTIONS; None
    when the path names a model or the collection, or a method babelgate does not serve)."""

    model: str
    action: str | None


def parse_path(path: str) -> GeminiPath | None:
    """The call a path names, or None when it is not a Gemini models path."""
    for version in VERSIONS:
        if path.startswith(version):
            rest = path[len(version):]
            break
    else:
        return None
    if rest == "models":
        return GeminiPath("", None)
    if not rest.startswith("models/"):
        return None
    name = rest[7:]
    while name.startswith("models/"):
        name = name[7:]
    model, colon, action = name.rpartition(":")
    if colon and model and action in ACTIONS:
        return GeminiPath(model, action)
    return GeminiPath(name, None)


class GeminiCall(GeminiCodec):
    """The Gemini codec for one call: the model and streaming come from its URL."""

    def __init__(self, model: str, stream: bool) -> None:
        self.model = model
        self.stream = stream

    def parse_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        parsed = client.parse_request(body, reuse)
        return replace(parsed, model=self.model, stream=self.stream)

    def parse_count_tokens_request(self, body: JSON, reuse: Reuse | None = None) -> Request:
        return replace(client.parse_count_tokens_request(body, reuse), model=self.model)


class ArrayFraming:
    """Gemini SSE bytes -> the same chunks as one JSON array, fed as they come."""

    __slots__ = ("_decoder", "_opened")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._opened = False

    def feed(self, data: bytes) -> bytes:
        return self._frame([event.data for event in self._decoder.feed(data)])

    def close(self) -> bytes:
        tail = self._frame([event.data for event in self._decoder.flush()])
        return tail + (b"\n]" if self._opened else b"[]")

    def _frame(self, chunks: list[str]) -> bytes:
        out: list[bytes] = []
        for chunk in chunks:
            out.append(b",\r\n" if self._opened else b"[")
            self._opened = True
            out.append(chunk.encode())
        return b"".join(out)


def model_resource(name: str) -> JSON:
    """A `Model` resource for a routable name (what `models.get` and `models.list` return).
    The token limits are the upstream's business; these are Gemini's own, which clients use
    to size their context."""
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "babelgate",
        "displayName": name,
        "description": "served by babelgate",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": METHODS,
        "thinking": True,
    }
