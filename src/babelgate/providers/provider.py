"""Providers: where an upstream lives, how to authenticate, and which codec it speaks.

A provider is small: base URL, credentials, quirks, and the endpoint shape of its protocol
family. Families register in `PROVIDER_TYPES`; adding one is a class and a line there.
Keys live only here and in the outgoing headers: nothing logs or echoes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

from babelgate.canonical import GatewayError
from babelgate.protocols import Codec, Quirks, get_codec

# Client headers an Anthropic upstream needs to see; everything else from the client (its
# credentials above all) stays behind.
_ANTHROPIC_FORWARDED = ("anthropic-beta", "anthropic-version")
_DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class Provider:
    """One configured upstream. Subclasses know their protocol's URLs and auth headers."""

    type: ClassVar[str]

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        quirks: Quirks,
        headers: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        preset: str | None = None,
    ) -> None:
        self.name = name
        self.preset = preset
        self.base_url = base_url.rstrip("/")
        self.quirks = quirks
        self.timeout = timeout
        self.codec: Codec = get_codec(self.type)
        self._secret = api_key or ""
        # Built once: the per-request header dict is a copy of this plus a few client values.
        self._headers = {"content-type": "application/json", **self.auth_headers(api_key or "")}
        self._headers.update(headers or {})

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def headers(self, client_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Headers for one upstream request (`client_headers`: the inbound request's, lower-case
        names; only what this protocol needs is taken from them)."""
        return dict(self._headers)

    def url(self, model: str, stream: bool) -> str:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        """`text` with this provider's key masked (upstreams sometimes quote it back)."""
        if len(self._secret) >= 8 and self._secret in text:
            return text.replace(self._secret, "***")
        return text

    def own_error(self, error: GatewayError) -> GatewayError:
        """`error`, reported by this provider (an error status, an error event in a 200
        stream), made fit for a client and the log: named after the provider, its key masked.
        Every path that hands on an upstream's own error goes through here."""
        error.upstream = self.name
        error.message = self.redact(error.message)
        return error

    def redact_bytes(self, data: bytes) -> bytes:
        """Upstream bytes passed through (an error event of a stream), the key masked."""
        secret = self._secret.encode()
        if len(secret) >= 8 and secret in data:
            return data.replace(secret, b"***")
        return data

    def count_tokens_url(self, model: str) -> str | None:
        """The upstream's own token-counting endpoint, if its protocol has one."""
        return None

    def describe(self) -> dict[str, str]:
        """What /health shows: never the key."""
        return {"name": self.name, "type": self.type, "base_url": self.base_url}


class OpenAIChatProvider(Provider):
    type = "openai"

    def url(self, model: str, stream: bool) -> str:
        return f"{self.base_url}/chat/completions"


class OpenAIResponsesProvider(Provider):
    type = "openai-responses"

    def url(self, model: str, stream: bool) -> str:
        return f"{self.base_url}/responses"


class AnthropicProvider(Provider):
    type = "anthropic"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": _DEFAULT_ANTHROPIC_VERSION}

    def headers(self, client_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(self._headers)
        if client_headers:
            for name in _ANTHROPIC_FORWARDED:
                value = client_headers.get(name)
                if value:
                    headers[name] = value
        return headers

    def url(self, model: str, stream: bool) -> str:
        return f"{self.base_url}/v1/messages"

    def count_tokens_url(self, model: str) -> str | None:
        return f"{self.base_url}/v1/messages/count_tokens"


class GeminiProvider(Provider):
    type = "gemini"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def url(self, model: str, stream: bool) -> str:
        model_path = quote(model, safe="-._~")
        if stream:
            return f"{self.base_url}/v1beta/models/{model_path}:streamGenerateContent?alt=sse"
        return f"{self.base_url}/v1beta/models/{model_path}:generateContent"

    def count_tokens_url(self, model: str) -> str | None:
        return f"{self.base_url}/v1beta/models/{quote(model, safe='-._~')}:countTokens"


PROVIDER_TYPES: dict[str, type[Provider]] = {
    cls.type: cls
    for cls in (OpenAIChatProvider, OpenAIResponsesProvider, AnthropicProvider, GeminiProvider)
}
