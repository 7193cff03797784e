"""`POST /v1/messages/count_tokens` (and Gemini's `:countTokens`, server/gemini_api.py): the
upstream's own count where it has one, otherwise a local estimate. Never a made-up zero:
Claude Code decides when to compact from this number.

- Anthropic upstreams: their count_tokens endpoint (an Anthropic client's body passed through,
  model rewritten; any other client's translated).
- Gemini upstreams: `:countTokens`, over the translated request.
- Everyone else, or when the upstream's counter fails: the local tokenizer (babelgate.tokens),
  reported to the caller as an estimate.
Rules apply as they do to the request being counted (routing/rules.py): the first that
matches picks the target and its edits (a system prompt added) are counted.
Two steps, so that the endpoints can say which rule and route counted (x-babelgate-route on
the answer, and on an error once a route was chosen, as generation does): `route_count`
parses and routes, `count_tokens` counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from msgspec.structs import replace

from babelgate import tokens
from babelgate.canonical import GatewayError, Request
from babelgate.protocols import Codec, get_codec
from babelgate.protocols.reuse import Reuse
from babelgate.providers.provider import Provider
from babelgate.routing import Route

from .gateway import Gateway
from .http import header_text
from .passthrough import can_pass_through

log = logging.getLogger("babelgate")


@dataclass(frozen=True, slots=True)
class Counting:
    """A request to count, as the rules left it, and the route that counts it."""

    request: Request
    route: Route
    body: dict[str, Any] | None  # an Anthropic client's body, unedited: it may pass through


def route_count(
    gateway: Gateway, data: dict[str, Any], headers: Mapping[str, str], reuse: Reuse,
    codec: Codec | None = None,
) -> Counting:
    """The client's body read (`codec`: Anthropic's by default) and routed; raises the
    client's GatewayError."""
    codec = codec or get_codec("anthropic")
    request = codec.parse_count_tokens_request(data, reuse)
    request, route, rule = gateway.rules.decide(request, headers, reuse, gateway.router)
    # An Anthropic client's body may pass through. An edited one is rendered from the edited
    # request instead: the counting endpoint refuses fields a rule may `set` (temperature).
    edited = rule is not None and bool(rule.edits)
    return Counting(request, route, data if codec.name == "anthropic" and not edited else None)


def route_headers(route: Route | None) -> tuple[tuple[bytes, bytes], ...]:
    """x-babelgate-route (which rule and route counted) once a `route` was chosen; before,
    nothing: the request failed before routing."""
    return () if route is None else ((b"x-babelgate-route", header_text(route.header)),)


async def count_tokens(
    gateway: Gateway, counting: Counting, headers: Mapping[str, str], reuse: Reuse,
) -> tuple[int, bool]:
    """(input tokens, whether the number is a local estimate)."""
    request, route, body = counting.request, counting.route, counting.body
    target = route.targets[0]
    provider = gateway.provider(target)
    try:
        counted = await _upstream_count(
            gateway, provider, request, body, target.model, headers, reuse)
    except GatewayError as error:
        log.info("count_tokens on %s failed (%s); using the local estimate",
                 provider.name, error.message[:200])
        counted = None
    if counted is not None:
        return counted, False
    # In a thread: the first call loads the tokenizer (~0.3 s, 40 MB, so not at start-up for
    # gateways whose clients never count), and a long prompt takes milliseconds to encode.
    return await asyncio.to_thread(tokens.count_request, request), True


async def _upstream_count(
    gateway: Gateway,
    provider: Provider,
    request: Request,
    data: dict[str, Any] | None,  # an Anthropic client's body, which may pass through
    model: str,
    headers: Mapping[str, str],
    reuse: Reuse,
) -> int | None:
    url = provider.count_tokens_url(model)
    if url is None:
        return None
    raw = orjson.dumps(data) if data is not None else b""
    if data is not None and provider.type == "anthropic" and can_pass_through(
            "anthropic", provider.type, raw):
        body = orjson.dumps({**data, "model": model})
        answer = await _post_json(gateway, provider, url, body, headers)
        value = answer.get("input_tokens")
    else:
        rendered = provider.codec.render_count_tokens(replace(request, model=model),
                                                      provider.quirks, reuse)
        if rendered is None:
            return None
        answer = await _post_json(gateway, provider, url, orjson.dumps(rendered), headers)
        value = provider.codec.parse_count_tokens(answer)
    return value if isinstance(value, int) and value > 0 else None


async def _post_json(
    gateway: Gateway, provider: Provider, url: str, body: bytes, headers: Mapping[str, str]
) -> dict[str, Any]:
    response = await gateway.post(provider, url, body, headers)
    raw = await response.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError("api_error", f"{provider.name} count_tokens returned non-JSON") from None
    return value if isinstance(value, dict) else {}
