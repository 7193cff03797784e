"""Providers: where an upstream lives, how to authenticate, and which codec it speaks.

A provider is small: base URL, credentials, quirks, and the endpoint shape of its protocol
family. Families register in `PROVIDER_TYPES`; adding one is a class and a line there.
Keys live only in the provider's credential source (credentials.py) and in the outgoing
headers built from them: nothing logs or echoes them, and `redact` masks every value the
source has served. `send` is the one place a request leaves with a key: a key the upstream
refuses is swapped for the next one (or read anew) before any answer goes back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import quote

from babelgate.canonical import GatewayError
from babelgate.protocols import Codec, Quirks, get_codec

from .credentials import REFUSED_STATUSES, Credentials, Key, StaticKeys
from .http import HttpClient, Route, UpstreamResponse

# An Anthropic upstream sees the client's `anthropic-version` and `anthropic-beta`
# (AnthropicProvider.headers), this version when it sent none, and nothing else of the
# client's headers (its credentials above all).
_DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# A Claude subscription's OAuth access token (what `claude setup-token` and Claude Code's own
# login hold) is not an API key: Anthropic takes it only as `Authorization: Bearer` with this
# beta among the request's `anthropic-beta` values (without it, a 401 "OAuth authentication is
# currently not supported"; as x-api-key, "invalid x-api-key"). The SDKs' `auth_token`
# sends the Bearer header; the beta is what every client of these tokens adds.
_OAUTH_TOKEN_PREFIX = "sk-ant-oat"
_OAUTH_BETA = "oauth-2025-04-20"


# Routing's ear for a provider with several `api_keys`: (key index, its error answer) ->
# whether that key's quota is used up (routing/plan.py, key_used_up).
KeyJudge = Callable[[int, GatewayError], bool]


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
        *,
        credentials: Credentials | None = None,
        route: Route | None = None,
    ) -> None:
        self.name = name
        self.preset = preset
        self.base_url = base_url.rstrip("/")
        self.quirks = quirks
        self.timeout = timeout
        self.codec: Codec = get_codec(self.type)
        self.route = route  # a proxy and/or TLS context; None: direct, default TLS
        self._extra_headers = dict(headers or {})
        # `api_key` is the plain case; a configured source (api_keys, a file, a command) wins.
        self.keys = credentials if credentials is not None else StaticKeys((api_key or "",))
        # Each key's header dict is built once, here or when the key changes; the
        # per-request dict is a copy of it plus a few client values.
        self.keys.bind(name, self._build_headers)

    def _build_headers(self, api_key: str) -> dict[str, str]:
        built = {"content-type": "application/json", **self.auth_headers(api_key)}
        built.update(self._extra_headers)
        return built

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def headers(self, client_headers: Mapping[str, str] | None = None,
                key: Key | None = None) -> dict[str, str]:
        """Headers for one upstream request carrying `key` (default: the source's next one).
        `client_headers`: the inbound request's, lower-case names; only what this protocol
        needs is taken from them."""
        return dict(self._key_headers(key))

    def _key_headers(self, key: Key | None) -> Mapping[str, str]:
        if key is None:
            key = self.keys.pick()
        return key.headers if key is not None else self._build_headers("")

    async def send(self, http: HttpClient, url: str, body: bytes,
                   client_headers: Mapping[str, str] | None = None,
                   judge: KeyJudge | None = None,
                   conversation: str | None = None,
                   extra: Mapping[str, str] | None = None) -> UpstreamResponse:
        """POST `body` to `url` with one of this provider's keys and return the answer, whatever
        its status. A key refused with 401/402/403/429 is swapped for the one its source
        offers (another of `api_keys`; a file or command read anew after a 401) and the same
        request is sent again: nothing has reached the client yet. The answer's `key_index`
        says which key it came back for.
        `judge` (routing's, for a provider with several `api_keys`, each with its own quota)
        hears every error answer, read, with the key it came back for, and says whether it
        used up that key's quota: such a key is marked by routing and the next key serves,
        whatever the status. With a judge the last error is raised (`refusal`), not
        returned. `conversation` (a digest naming the client's conversation, when the
        provider has several `api_keys`) keeps a conversation on the key that served it.
        `extra`: headers the gateway adds (a traceparent), over the provider's."""
        keys = self.keys
        key = keys.pick_for(conversation) or await keys.wait()
        sends = keys.most_sends
        while True:
            headers = self.headers(client_headers, key)
            if extra:
                headers.update(extra)
            response = await http.post(url, body, headers,
                                       timeout=self.timeout, upstream=self.name,
                                       route=self.route)
            response.key_index = key.index
            sends -= 1
            if judge is not None and response.status >= 400:
                other = await self._judged(response, key, sends, judge)
            elif response.status not in REFUSED_STATUSES or sends <= 0:
                if conversation is not None and response.status < 400:
                    keys.served(key, conversation)
                return response
            else:
                swapped = await keys.refused(key, response.status,
                                             retry_after(response.headers))
                if swapped is None:
                    return response
                await _drain(response)
                other = swapped
            key = other

    async def _judged(self, response: UpstreamResponse, key: Key, sends: int,
                      judge: KeyJudge) -> Key:
        """The key to send again with after an error answer `judge` heard; raises the error
        when no other key is worth a try."""
        error = await self.refusal(response)
        used_up = judge(key.index, error)
        if sends <= 0 or not (used_up or response.status in REFUSED_STATUSES):
            raise error
        other = await self.keys.refused(key, response.status, error.retry_after)
        if other is None:
            raise error
        return other

    async def refusal(self, response: UpstreamResponse) -> GatewayError:
        """An error answer read whole, as the error the client and routing see: in the
        protocol's terms, named after this provider, its key masked, with the upstream's
        headers (a used-up quota's reset: routing/quota.py) and Retry-After."""
        raw = await response.read()
        error = self.own_error(self.codec.parse_error(response.status, raw))
        if error.retry_after is None:
            error.retry_after = retry_after(response.headers)
        error.headers = response.headers
        return error

    def url(self, model: str, stream: bool) -> str:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        """`text` with every key of this provider masked (upstreams sometimes quote one
        back): all of `api_keys`, and each value a file or command has given so far."""
        for secret in self.keys.secrets():
            if len(secret) >= 8 and secret in text:
                text = text.replace(secret, "***")
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
        for value in self.keys.secrets():
            secret = value.encode()
            if len(secret) >= 8 and secret in data:
                data = data.replace(secret, b"***")
        return data

    def count_tokens_url(self, model: str) -> str | None:
        """The upstream's own token-counting endpoint, if its protocol has one."""
        return None

    def describe(self) -> dict[str, str]:
        """What /health shows: never a key, nor a proxy's password."""
        shown = {"name": self.name, "type": self.type, "base_url": self.base_url,
                 "credentials": self.keys.describe()}
        if self.route is not None and self.route.proxy is not None:
            shown["proxy"] = self.route.proxy.shown
        return shown

    def close(self) -> None:
        """Stop what the provider runs in the background (a key command's refresh): called
        when its provider set is discarded (shutdown, a reload)."""
        self.keys.close()


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
        if api_key.startswith(_OAUTH_TOKEN_PREFIX):  # a subscription's token (see above)
            return {"authorization": f"Bearer {api_key}", "anthropic-beta": _OAUTH_BETA,
                    "anthropic-version": _DEFAULT_ANTHROPIC_VERSION}
        return {"x-api-key": api_key, "anthropic-version": _DEFAULT_ANTHROPIC_VERSION}

    def headers(self, client_headers: Mapping[str, str] | None = None,
                key: Key | None = None) -> dict[str, str]:
        headers = dict(self._key_headers(key))
        if client_headers:
            version = client_headers.get("anthropic-version")
            if version:
                headers["anthropic-version"] = version
            betas = client_headers.get("anthropic-beta")
            if betas:
                ours = headers.get("anthropic-beta")
                headers["anthropic-beta"] = _merged_betas(betas, ours) if ours else betas
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


def _merged_betas(client: str, ours: str) -> str:
    """The client's `anthropic-beta` values, then those of ours (the OAuth beta, the
    provider's configured `headers`) it did not name: a client's betas never drop ours."""
    named = {beta.strip() for beta in client.split(",")}
    extra = [beta for beta in ours.split(",") if beta.strip() and beta.strip() not in named]
    return ",".join([client, *extra]) if extra else client


def retry_after(headers: Mapping[str, str]) -> float | None:
    """An answer's `retry-after` in seconds (the delay form; the HTTP-date form is rare on
    APIs and ignored; so are "inf" and "nan", which float() reads)."""
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < math.inf else None


async def _drain(response: UpstreamResponse) -> None:
    """Read a refusal's body so that its connection can serve the retry; a body that fails
    to arrive only costs that connection."""
    with contextlib.suppress(GatewayError):
        await response.read()
