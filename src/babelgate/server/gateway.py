"""The request path: route, translate, call the upstream, translate back, fall back.

One `Gateway` per app holds what start-up builds once (router, providers, HTTP client) and
serves every inbound protocol the same way:
1. the inbound codec parses the client's body into a canonical Request;
2. the router gives an ordered list of targets;
3. routing plans the attempts (routing/plan.py: order, retries with backoff, cooldowns, used-up
   quotas skipped) and learns from each outcome; the gateway carries out one attempt at a
   time: the provider's codec renders the upstream body and the answer is translated back;
   nothing is retried once a byte of the answer has reached the client;
4. same protocol in and out goes through `passthrough` instead: bytes forwarded, usage tapped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
from msgspec.structs import replace

from babelgate import tokens
from babelgate.books.ledger import Books, Origin
from babelgate.books.prices import catalogue_model_ids
from babelgate.canonical import (
    NO_USAGE,
    Event,
    GatewayError,
    MessageDelta,
    MessageStart,
    ReasoningDelta,
    Request,
    Response,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    Usage,
    invalid,
)
from babelgate.canonical.errors import STATUS_BY_KIND
from babelgate.canonical.nesting import TOO_DEEP, too_deep
from babelgate.canonical.stream import Accumulator, response_events
from babelgate.claude_code.prompt import tools_refused
from babelgate.claude_code.provider import ClaudeCodeProvider
from babelgate.claude_code.runtime import ClaudeCode, TurnCost, session_of
from babelgate.config import Settings
from babelgate.limits import Permit
from babelgate.protocols import Codec, StreamDecoder, StreamEncoder
from babelgate.protocols.anthropic.billing_header import without_billing_header
from babelgate.protocols.reuse import Reuse, loads_object
from babelgate.providers.credentials import StaticKeys, credentials_from
from babelgate.providers.http import HttpClient, UpstreamResponse, make_route
from babelgate.providers.presets import provider_quirks
from babelgate.providers.provider import PROVIDER_TYPES, KeyJudge, Provider
from babelgate.routing import Plan, Router, RoutingPolicy, RoutingState, Target
from babelgate.routing.plan import RoutedKeys, key_used_up
from babelgate.routing.rules import Rules

from .access_log import AccessLog
from .passthrough import (
    EventCut,
    UsageTap,
    body_usage,
    can_pass_through,
    rewrite_body,
    whole_events,
)
from .sticky_key import conversation_key

log = logging.getLogger("babelgate")

_Answer = TypeVar("_Answer")
# One attempt on one target: (call, provider, target, attempt) -> the answer.
_AttemptOn = Callable[["Call", Provider, Target, "Attempt"], Awaitable[_Answer]]


def build_providers(
    settings: Settings,
    kept: Mapping[str, Provider] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Provider]:
    """A Provider per configured provider; those in `kept` (a reload's unchanged ones) are
    taken as they are. `env` (default os.environ) gives the proxies (HTTPS_PROXY, NO_PROXY...)
    of providers without a `proxy:` of their own. Providers own background work (a key
    command's refresh): `Provider.close()` each one when it is discarded."""
    env = os.environ if env is None else env
    providers: dict[str, Provider] = {}
    for name, cfg in settings.providers.items():
        if kept and name in kept:
            providers[name] = kept[name]
            continue
        if cfg.type == "claude-code":  # a local program, not an HTTP upstream
            providers[name] = ClaudeCodeProvider(name, cfg)
            continue
        cls = PROVIDER_TYPES[cfg.type]
        providers[name] = cls(
            name,
            cfg.base_url,
            cfg.api_key,
            provider_quirks(cfg.type, cfg.preset, cfg.max_tokens, cfg.base_url),
            headers=cfg.headers,
            timeout=cfg.timeout,
            preset=cfg.preset,
            credentials=credentials_from(cfg.api_key, cfg.api_keys, cfg.api_key_file,
                                         cfg.api_key_command, cfg.api_key_ttl),
            route=make_route(cfg.base_url, cfg.proxy, cfg.ca_file, env),
        )
    return providers


@dataclass(slots=True)
class Attempt:
    """What one call to one target produced, for the books (books/ledger.py)."""

    target: Target
    started: float  # perf_counter
    usage: Usage | None = None
    error: GatewayError | None = None
    estimated_input: int = 0  # what a stream start told the client, when the upstream did not
    provider: Provider | None = None  # a translated stream's: its error events are redacted
    route: str = ""  # the access log's `rule=... route=...` (Call.route_log)
    wall: float = 0.0  # time.time() at the start, for the record
    first: float = 0.0  # perf_counter when the first content went to the client (streams)
    ended: bool = False  # the upstream's answer ended (not cut off by the client leaving)
    out_chars: int = 0  # text streamed so far: the output estimate if the client leaves
    body_bytes: int = 0  # a passed stream's request size: its input estimate, likewise
    opening: Usage | None = None  # the usage a translated stream's start reported
    turn: TurnCost | None = None  # a claude-code turn: the cost the CLI reported
    estimated: bool = False  # some token count of `usage` is our estimate (UsageRecord)
    # With traces on: this attempt's span, and the headers that tell its upstream so.
    span_id: str | None = None
    trace_headers: Mapping[str, str] | None = None


class Gateway:
    """Everything one configuration decides. A hot reload (server/app.py) makes a new one and
    hands it what outlives a configuration: the HTTP client, the access log, the providers
    whose settings did not change, the books' sinks (`http`, `access_log`, `providers`,
    `books`: its prices are the new configuration's, its sinks the running ones) and
    `routing`, the process's one RoutingState (cooldowns, used-up quotas: routing/state.py),
    so that what the previous Gateway learnt holds for the new one. Without one, a Gateway
    has its own."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: HttpClient | None = None,
        access_log: AccessLog | None = None,
        providers: Mapping[str, Provider] | None = None,
        books: Books | None = None,
        routing: RoutingState | None = None,
        claude_code: ClaudeCode | None = None,
    ) -> None:
        self.settings = settings
        # Sessions and projects of claude-code providers (the app's; outlives a reload).
        self.claude_code = claude_code
        # Each finished attempt becomes one usage record, handed to every sink.
        self.books = books or Books()
        # /v1/models offers, for each glob route, the catalogue's model ids it decides.
        self.router = Router(settings, offered=catalogue_model_ids())
        self.rules = Rules(settings.rules)  # checked before the routes (server/app.py)
        self.routing = routing if routing is not None else RoutingState()
        self.policy = RoutingPolicy.from_settings(settings)
        self.providers = build_providers(settings, providers)
        # Providers with several `api_keys`: each key's quota is routing's to mark (a refusal
        # heard by `key_used_up`), and routing keeps which keys rest or are used up, under
        # ids that a reload keeps (the credentials ask it before picking a key).
        self._judges: dict[str, KeyJudge] = {}
        for name, ids in self.policy.keys.items():
            self._judges[name] = partial(key_used_up, self.routing, self.policy, name)
            keys = self.providers[name].keys
            if isinstance(keys, StaticKeys):
                keys.states = RoutedKeys(self.routing, name, ids)
        self._http: HttpClient | None = http
        # Bytes of upstream answer held at once: a whole body (the HTTP client's limit), or
        # the unfinished event of a stream (a decoder keeps it until its blank line).
        self.max_held = int(settings.server.upstream_body_mb * 2**20)
        self.access_log = access_log or AccessLog(enabled=log.isEnabledFor(logging.INFO))
        # Call.route_log -> the record's rule and route (_rule_and_route): the logs name the
        # configuration's routes and rules, a handful, each split once (capped all the same).
        self._rule_routes: dict[str, tuple[str | None, str | None]] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._http is None:
            self._http = self._new_client()

    async def stop(self) -> None:
        for provider in self.providers.values():
            if isinstance(provider, ClaudeCodeProvider):
                await provider.shutdown()  # its processes have exited when this returns
            provider.close()
        self.access_log.flush()
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> HttpClient:
        if self._http is None:  # started lazily when the server gave us no lifespan
            self._http = self._new_client()
        return self._http

    def _new_client(self) -> HttpClient:
        return HttpClient(max_body=self.max_held)

    def provider(self, target: Target) -> Provider:
        return self.providers[target.provider]

    # ------------------------------------------------------------------ upstream calls
    async def send(
        self,
        provider: Provider,
        request: Request,
        client_headers: Mapping[str, str] | None,
        reuse: Reuse,
        conversation: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """Render `request` for `provider`, POST it, and raise a GatewayError for an upstream
        error status."""
        body = _rendered(provider, request, reuse)
        return await self.post(provider, provider.url(request.model, request.stream), body,
                               client_headers, conversation, extra)

    async def post(
        self,
        provider: Provider,
        url: str,
        body: bytes,
        client_headers: Mapping[str, str] | None,
        conversation: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """`extra`: headers of ours for the upstream (a traceparent), beside the provider's."""
        # The provider picks the key (the one that served `conversation` before, with several
        # `api_keys`), and swaps a refused one before answering (credentials); with several
        # `api_keys`, routing hears each refusal (a key's quota used up).
        judge = self._judges.get(provider.name) if self._judges else None
        response = await provider.send(self.http, url, body, client_headers, judge,
                                       conversation, extra)
        if response.status >= 400:
            raise await provider.refusal(response)
        return response

    async def complete(
        self, call: Call, targets: list[Target]
    ) -> tuple[bytes, Target]:
        """The client's response body from the first target that gives one."""
        body, target, attempt = await self._fall_back(
            call, targets, self._pass_complete, self._translate_complete, self._local_complete
        )
        self.log_attempt(call, attempt)
        return body, target

    async def _fall_back(
        self,
        call: Call,
        targets: list[Target],
        passing: _AttemptOn[_Answer],
        translating: _AttemptOn[_Answer],
        local: _AttemptOn[_Answer],
    ) -> tuple[_Answer, Target, Attempt]:
        """Carry out the attempts routing plans (routing/plan.py decides the order, the
        retries and what is skipped, and learns from each outcome): `passing` for a target
        that speaks the client's protocol, `translating` for the others. Returns the first
        answer, its target and its attempt (logged by the caller once the answer is
        complete); a failed attempt is logged here. Raises what the plan says the client
        should hear when no target answered."""
        key = None
        policy = self.policy
        if policy.weights or (policy.keys and any(t.provider in policy.keys for t in targets)):
            # A route or a provider's `api_keys` may spread: which conversation this is, so
            # that it stays where it started (the provider's prompt cache).
            key = conversation_key(call.headers, call.body(), call.request)
        call.conversation = key
        plan = Plan(self.routing, policy, targets, key)
        async for target in plan:
            provider = self.provider(target)
            call.restore()  # a fallback after an attempt let go of the parsed body
            if isinstance(provider, ClaudeCodeProvider) and call.request.tools:
                # The CLI runs only its own tools: the next target may take the client's.
                plan.unfit(tools_refused())
                continue
            attempt = Attempt(target, time.perf_counter(), route=call.route_log,
                              wall=time.time())
            trace = call.origin.trace
            if trace is not None:  # OpenTelemetry traces on: the upstream joins the trace
                attempt.span_id = os.urandom(8).hex()
                attempt.trace_headers = trace.upstream(attempt.span_id)
            try:
                if isinstance(provider, ClaudeCodeProvider):
                    attempt_on = local
                else:
                    attempt_on = passing if _passes(call, provider) else translating
                answer = await attempt_on(call, provider, target, attempt)
            except GatewayError as exc:
                error = exc
            except TOO_DEEP as exc:
                # Past the rendering of the request (_rendered: the client's 400), a value too
                # deep to read or translate is in the answer: the upstream's, a 502, unless the
                # answer echoes one of the client's (a Responses object holds its tools).
                error = _too_deep_answer(call, provider, exc)
            except asyncio.CancelledError:
                # The client left (or the server's grace ran out) while the upstream was
                # awaited: what was sent may still be charged.
                self.log_attempt(call, attempt)
                raise
            else:
                plan.succeeded()
                return answer, target, attempt
            attempt.error = error
            plan.failed(error)
            self.log_attempt(call, attempt, final=plan.finished)
        raise plan.error()

    async def _translate_complete(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> bytes:
        upstream_request = _upstream_request(call, provider, target.model, False)
        upstream = await self.send(provider, upstream_request, call.headers, call.reuse,
                                   call.conversation,
                                   attempt.trace_headers)
        response = _parse_whole(provider, await upstream.read(), upstream_request, call.reuse)
        response = _counted(response, call, attempt)
        attempt.usage = response.usage
        attempt.ended = True
        response = replace(response, model=call.request.model)
        return orjson.dumps(call.codec.render_response(response, call.request, call.reuse))

    async def _pass_complete(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> bytes:
        body = _rewritten(call, target, provider)
        upstream = await self.post(provider, provider.url(target.model, False), body,
                                   call.headers, call.conversation,
                                   attempt.trace_headers)
        raw = await upstream.read()
        attempt.ended = True
        data = _load_upstream_json(raw, provider)
        try:
            usage = body_usage(call.codec.name, data)
        except MISREAD:
            # The body goes to the client as the upstream sent it (this is pass-through);
            # only its usage, for the log, could not be read.
            usage = NO_USAGE
        if not usage.prompt_tokens or not usage.output_tokens:
            # No usage (or part of it) in the answer: the books estimate what is missing
            # from the request and from the answer's own text, read as the client will.
            attempt.out_chars = _answer_chars(provider, raw, call)
            usage = _estimated(call, attempt, usage)
        attempt.usage = usage
        return raw

    # ------------------------------------------------------------------ local providers
    def _turn(self, call: Call, provider: Provider, target: Target,
              attempt: Attempt) -> AsyncGenerator[Event, None]:
        """A claude-code target's canonical events for this call (claude_code/runtime.py)."""
        assert isinstance(provider, ClaudeCodeProvider)
        if self.claude_code is None:
            raise GatewayError("api_error", "claude-code providers need the app's runtime")
        attempt.provider = provider
        attempt.estimated_input = tokens.quick_estimate(call.request, call.reuse)
        attempt.turn = TurnCost()
        return self.claude_code.turn(provider, call.request, target.model,
                                     session_of(call.headers, call.body()), call.owner,
                                     attempt.turn)

    async def _local_complete(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> bytes:
        folded = Accumulator()
        turn = self._turn(call, provider, target, attempt)
        try:
            async for event in turn:
                folded.feed(event)
        finally:
            await turn.aclose()
        response = replace(folded.response(), model=call.request.model)
        attempt.usage = response.usage
        attempt.ended = True
        return orjson.dumps(call.codec.render_response(response, call.request, call.reuse))

    async def _local_stream(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        encoder = call.codec.stream_encoder(call.request, call.reuse)
        turn = self._turn(call, provider, target, attempt)
        opening: list[Event] = []
        try:  # until the content begins: a failure before it may still fall back
            while not opening or type(opening[-1]) is MessageStart:
                opening.append(await anext(turn))
        except BaseException:
            await turn.aclose()
            raise
        first = _encode(encoder, opening, attempt, call.request)
        attempt.first = time.perf_counter()
        return first, self._local_rest(call, attempt, turn, encoder)

    async def _local_rest(
        self, call: Call, attempt: Attempt, turn: AsyncGenerator[Event, None],
        encoder: StreamEncoder,
    ) -> AsyncIterator[bytes]:
        try:
            try:
                async for event in turn:
                    yield _encode(encoder, [event], attempt, call.request)
                attempt.ended = True
            except GatewayError as error:
                yield _encode(encoder, [StreamError(error)], attempt, call.request)
        finally:
            await turn.aclose()  # a client that left: the CLI's turn is stopped
            self.log_attempt(call, attempt)

    async def stream(
        self, call: Call, targets: list[Target]
    ) -> tuple[bytes, AsyncIterator[bytes], Target]:
        """Open a stream on the first target that starts one. Returns the first bytes for the
        client (already received from the upstream, so a failure before them could still fall
        back), the rest of the stream, and the target serving it."""
        (first, rest), target, _ = await self._fall_back(
            call, targets, self._pass_stream, self._translate_stream, self._local_stream
        )
        call.settle()
        return first, rest, target

    async def _translate_stream(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        upstream_request = _upstream_request(call, provider, target.model, True)
        reuse = call.reuse
        body = _rendered(provider, upstream_request, reuse)
        encoder = call.codec.stream_encoder(call.request, reuse)
        decoder = provider.codec.stream_decoder(upstream_request, reuse)
        attempt.provider = provider
        # OpenAI-style upstreams report input tokens at the end only; the client still needs
        # a count at the start. Made now, while the request is whole (it is let go of below).
        # Upstreams that count them at the start are estimated for only when they say 0 (some
        # Anthropic-compatible ones do): see _late_estimate.
        estimate = call.estimated_input  # a `long_context` rule's, when one made it
        if estimate is None and not decoder.input_at_start:
            estimate = _estimate(call)
        attempt.estimated_input = estimate or 0
        # Waiting on the upstream can take seconds, and a burst of new streams waits together:
        # let go of the parsed body meanwhile (the raw bytes stay, for a fallback).
        del upstream_request
        call.release()
        upstream = await self.post(provider, provider.url(target.model, True), body,
                                   call.headers, call.conversation, attempt.trace_headers)
        del body
        if not upstream.is_event_stream:
            # Some upstreams answer a stream request with a whole body.
            call.restore()
            upstream_request = _upstream_request(call, provider, target.model, True)
            whole = _parse_whole(provider, await upstream.read(), upstream_request, reuse)
            whole = _counted(replace(whole, model=call.request.model), call, attempt)
            attempt.usage = whole.usage
            attempt.ended = True
            attempt.first = time.perf_counter()
            self.log_attempt(call, attempt)
            return _encode(encoder, response_events(whole), attempt, call.request), _nothing()
        chunks = upstream.iter_chunks()
        problem: GatewayError | None = None
        try:
            first = await _opening_events(chunks, decoder, self.max_held, provider)
        except MISREAD as exc:
            problem = _misread(provider, exc)
        if problem is not None:  # raised here, so that it holds nothing of the failed read
            await chunks.aclose()
            raise problem
        failed = _leading_error(first)
        if failed is not None:
            await chunks.aclose()
            raise provider.own_error(failed)
        if not attempt.estimated_input and _without_input(first):
            attempt.estimated_input = _late_estimate(call)
        first_bytes = _encode(encoder, first, attempt, call.request)
        if len(first) > 1 or not isinstance(first[0], MessageStart):
            attempt.first = time.perf_counter()  # content came with the opening
        rest = self._translated_rest(call, provider, attempt, chunks, decoder, encoder)
        return first_bytes, rest

    async def _translated_rest(
        self,
        call: Call,  # read as the stream goes: its body is let go once the stream settles
        provider: Provider,
        attempt: Attempt,
        chunks: AsyncGenerator[bytes, None],
        decoder: StreamDecoder,
        encoder: StreamEncoder,
    ) -> AsyncIterator[bytes]:
        try:
            failure: GatewayError | None = None
            held, limit = 0, self.max_held
            untimed = True  # the time to first token is not taken yet
            try:
                async for chunk in chunks:
                    events = decoder.feed(chunk)
                    if events:
                        held = 0
                        data = _encode(encoder, events, attempt, call.request)
                        if untimed:  # a local: cheaper per chunk than the attempt's field
                            untimed = False
                            if not attempt.first:
                                attempt.first = time.perf_counter()
                        yield data
                    else:  # what the decoder holds back grows: an unfinished event
                        held += len(chunk)
                        if held > limit:
                            raise _event_too_large(provider, limit)
                events = decoder.close()
                attempt.ended = True
            except GatewayError as error:
                failure = error
            except MISREAD as exc:
                failure = _misread(provider, exc)
            if failure is not None:
                # Close what the decoder still had open, then report the cut-off in-stream.
                events = _closing(decoder)
                events.append(StreamError(failure))
            if events:
                yield _encode(encoder, events, attempt, call.request)
        finally:  # after the last events, so the log has the final usage
            self.log_attempt(call, attempt)

    async def _pass_stream(
        self, call: Call, provider: Provider, target: Target, attempt: Attempt
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        body = _rewritten(call, target, provider)
        upstream = await self.post(provider, provider.url(target.model, True), body,
                                   call.headers, call.conversation,
                                   attempt.trace_headers)
        chunks = upstream.iter_chunks()
        tap = UsageTap(call.codec.name)
        # Hold back the bytes until the content begins: an `error` event (Anthropic's
        # overloaded_error in a 200 stream) or a cut before it can still go to the next target,
        # which then serves the client one clean stream.
        held = []
        size = 0
        try:
            while not tap.content and tap.error_data is None:
                chunk = await anext(chunks, None)
                if chunk is None:
                    break
                tap.feed(chunk)
                held.append(chunk)
                size += len(chunk)
                if size > self.max_held:
                    raise _event_too_large(provider, self.max_held)
        except GatewayError:
            await chunks.aclose()
            raise
        if not tap.events:  # an empty 200 stream: nothing sent yet, so try the next target
            raise GatewayError(
                "connection", f"upstream {provider.name} ended the stream before any event",
                upstream=provider.name,
            )
        if tap.error_data is not None and not tap.content:
            await chunks.aclose()
            error = provider.codec.parse_error(200, tap.error_data.encode())
            if error.status < 400:  # the stream's 200 is not the error's status
                error.status = STATUS_BY_KIND[error.kind]
            raise provider.own_error(error)
        first = b"".join(held)
        attempt.body_bytes = len(call.raw)  # before the stream settles and lets go of it
        if tap.events > 1:  # more than the opening event: content came with it
            attempt.first = time.perf_counter()
        if tap.error_data is not None:  # the stream began, and its error came with it
            first = provider.redact_bytes(first)
        whole = whole_events(first)
        rest = self._passed_rest(call, provider, attempt, chunks, tap, first[whole:])
        return first[:whole], rest

    async def _passed_rest(
        self,
        call: Call,
        provider: Provider,
        attempt: Attempt,
        chunks: AsyncGenerator[bytes, None],
        tap: UsageTap,
        carry: bytes,
    ) -> AsyncIterator[bytes]:
        """The upstream's bytes as they come, cut at event boundaries: a partial event stays
        behind (`carry`) until it completes, so a stream cut inside an event ends with our
        error event rather than a broken one."""
        cut = EventCut(carry)
        try:
            async for chunk in chunks:
                tap.feed(chunk)
                # After the upstream's error event, every byte that goes out is redacted.
                data = cut.take(chunk, provider.redact_bytes if tap.error_data is not None
                                else None)
                if data:
                    if not attempt.first:
                        attempt.first = time.perf_counter()
                    yield data
                elif cut.size > self.max_held:
                    raise _event_too_large(provider, self.max_held)
            carry = cut.rest()
            if carry:
                # The upstream ended without a blank line: its last event.
                yield provider.redact_bytes(carry) if tap.error_data is not None else carry
            attempt.ended = True
        except GatewayError as error:
            attempt.error = error
            tail = tap.failure(error)  # in the upstream's terms when the client needs them
            if tail is None:
                encoder = call.codec.stream_encoder(call.request, call.reuse)
                tail = encoder.encode(StreamError(error))
            yield tail
        finally:
            attempt.usage = tap.usage
            attempt.out_chars = tap.text_chars
            if attempt.error is None and tap.error_data is not None:
                # The upstream's own in-stream error event: log the attempt as failed.
                attempt.error = provider.own_error(
                    call.codec.parse_error(200, tap.error_data.encode()))
            elif attempt.ended and attempt.error is None:
                # A whole stream without usage (an OpenAI-compatible server that ignores
                # stream_options.include_usage): the counts it left out are estimated.
                attempt.usage = _estimated(call, attempt, tap.usage)
            self.log_attempt(call, attempt)

    # ------------------------------------------------------------------ the books
    def log_attempt(self, call: Call, attempt: Attempt, final: bool = True) -> None:
        """One usage record for a finished attempt, to every sink (books/ledger.py)."""
        now = time.perf_counter()
        request, target, error = call.request, attempt.target, attempt.error
        stream = request.stream
        usage = attempt.usage
        kind: str | None
        if error is not None:
            status, kind = error.status, error.kind
        elif attempt.ended:
            status, kind = 200, None
        else:  # cut off by the client leaving (or by the server's grace running out)
            status, kind = CLIENT_CLOSED, "cancelled"
            usage = _used_so_far(call, attempt, usage)
        ttft = (attempt.first - attempt.started) * 1000 if stream and attempt.first else None
        split = self._rule_routes.get(attempt.route)
        if split is None:
            split = self._split_route(attempt.route)
        rule, route = split
        record = self.books.attempt(
            call.origin, request.model, target.provider, target.model, stream,
            usage or NO_USAGE, time=attempt.wall, status=status, error_kind=kind,
            latency_ms=(now - attempt.started) * 1000, ttft_ms=ttft, final=final,
            rule=rule, route=route,
            cost=attempt.turn.usd if attempt.turn is not None else None,
            estimated=attempt.estimated, span_id=attempt.span_id,
        )
        if self.access_log.enabled:  # endpoint, status and request id come with the record
            self.access_log.attempt(record, attempt.route,
                                    None if error is None else error.message)
        if call.permit is not None:  # the key's tokens per minute and budget (limits/)
            call.permit.charge(record.input_tokens + record.cache_read_tokens
                               + record.cache_write_tokens + record.output_tokens, record.cost)


    def _split_route(self, route_log: str) -> tuple[str | None, str | None]:
        split = _rule_and_route(route_log)
        if len(self._rule_routes) >= ROUTES_SPLIT_KEPT:
            self._rule_routes.clear()
        self._rule_routes[route_log] = split
        return split


ROUTES_SPLIT_KEPT = 1024
CLIENT_CLOSED = 499  # the status nginx made the convention for a client that left


def _rule_and_route(route_log: str) -> tuple[str | None, str | None]:
    """The rule and the route out of `rule=NAME route=PATTERN` (Call.route_log; `-`: none),
    for the record."""
    rule, _, route = route_log.partition(" route=")
    rule = rule.removeprefix("rule=")
    return (None if rule in ("-", "") else rule), (None if route in ("-", "") else route)


def _used_so_far(call: Call, attempt: Attempt, usage: Usage | None) -> Usage:
    """What an attempt cut off before its usage was reported most likely used: the input
    estimate (the one a stream's start carried, else one made now, else the body's size)
    and the output counted from the text streamed so far (babelgate.tokens)."""
    usage = usage or attempt.opening or NO_USAGE
    if not usage.prompt_tokens:
        usage = replace(usage, input_tokens=_input_estimate(call, attempt))
        attempt.estimated = True
    counted = tokens.estimate_chars(attempt.out_chars)
    if counted > usage.output_tokens:
        usage = replace(usage, output_tokens=counted)
        attempt.estimated = True
    return usage


def _input_estimate(call: Call, attempt: Attempt) -> int:
    """The input tokens of the attempt's request, estimated: the estimate a stream's start
    carried, else one made now from the request, else (the body let go of) its size."""
    estimate = attempt.estimated_input
    if not estimate and call.request.messages:  # not yet let go of: estimate it now
        estimate = tokens.quick_estimate(call.request, call.reuse)
    if not estimate:
        estimate = tokens.estimate_chars(attempt.body_bytes or len(call.raw))
    return estimate


def _estimated(call: Call, attempt: Attempt, usage: Usage) -> Usage:
    """A finished answer's `usage` with the counts its upstream left out (0) estimated, as
    the translated paths do (_counted, _reported_end): input from the request, output from
    the `attempt.out_chars` characters of text it wrote. Marks the attempt when it did."""
    if not usage.prompt_tokens:
        usage = replace(usage, input_tokens=_input_estimate(call, attempt))
        attempt.estimated = True
    if not usage.output_tokens:
        counted = tokens.estimate_chars(attempt.out_chars)
        if counted:  # nothing written: the upstream's 0 may well be true
            usage = replace(usage, output_tokens=counted)
            attempt.estimated = True
    return usage


def _answer_chars(provider: Provider, raw: bytes, call: Call) -> int:
    """The characters of text (and tool calls, reasoning) in a passed-through whole answer,
    read with the protocol's codec: only for an answer without usage."""
    try:
        response = _parse_whole(provider, raw, call.request, call.reuse)
    except (*MISREAD, *TOO_DEEP, GatewayError):  # not readable: no output estimate
        return 0
    chars, _ = tokens.part_chars(response.parts)
    return chars


def _counted(response: Response, call: Call, attempt: Attempt) -> Response:
    """`response` with the counts its upstream left out estimated (llama.cpp's server sends
    no `usage` object): input from the request, output from the characters of its parts.
    Marks the attempt's usage as an estimate when it is one."""
    usage = response.usage
    if usage.prompt_tokens and usage.output_tokens:
        return response
    if not usage.prompt_tokens:
        usage = replace(usage, input_tokens=tokens.quick_estimate(call.request, call.reuse))
        attempt.estimated = True
    if not usage.output_tokens:
        chars, _ = tokens.part_chars(response.parts)
        counted = tokens.estimate_chars(chars)
        if counted:
            usage = replace(usage, output_tokens=counted)
            attempt.estimated = True
    return replace(response, usage=usage)


def _passes(call: Call, provider: Provider) -> bool:
    return call.passthrough and can_pass_through(
        call.codec.name, provider.type, call.raw, preset=provider.preset, data=call.data
    )


def _upstream_request(call: Call, provider: Provider, model: str, stream: bool) -> Request:
    """The client's request as one target gets it. `previous_response_id` is dropped: the
    gateway resolved it into the history already (server/conversations.py), and no upstream
    knows our ids. The client's Request keeps it, so its response echoes it. Claude Code's
    billing line leaves the system prompt of any upstream but an Anthropic one
    (protocols/anthropic/billing_header.py).
    Several choices (`n` > 1) cannot be translated: every codec carries one answer, so say so
    rather than silently return one."""
    request = call.request
    if request.n is not None and request.n > 1:
        raise invalid(
            f"`n` = {request.n} (several choices) needs an OpenAI Chat upstream without a "
            f"preset; model {request.model!r} is served by translation, which returns one "
            "choice: send n=1 or omit it", "n",
        )
    system = request.system
    if provider.codec.name != "anthropic":
        system = without_billing_header(system, call.reuse)
    return replace(request, model=model, stream=stream, previous_response_id=None,
                   system=system)


async def _opening_events(
    chunks: AsyncGenerator[bytes, None], decoder: StreamDecoder, limit: int, provider: Provider
) -> list[Event]:
    """Read until the stream's content begins (an event other than MessageStart: a part, an
    error, the end), or the body ends. Nothing is sent to the client before this returns, so
    a stream that fails before its first content can still go to the next target whole."""
    held = 0
    opening: list[Event] = []
    async for chunk in chunks:
        events = decoder.feed(chunk)
        if not events:
            held += len(chunk)
            if held > limit:
                raise _event_too_large(provider, limit)
            continue
        held = 0
        if opening:
            opening.extend(events)
        else:
            opening = events
        if type(opening[-1]) is not MessageStart:
            return opening
    return [*opening, *decoder.close()]


def _estimate(call: Call) -> int:
    """The input-token estimate of the call's request (tokens.quick_estimate)."""
    try:
        return tokens.quick_estimate(call.request, call.reuse)
    except TOO_DEEP as exc:  # the client's value
        raise too_deep(exc) from None


def _late_estimate(call: Call) -> int:
    """The estimate for a stream whose start did not count the input, made from the body
    while the stream can still fall back (the call still holds the raw bytes); the parsed
    body is let go of again afterwards."""
    call.restore()
    try:
        return _estimate(call)
    finally:
        call.release()


def _without_input(events: list[Event]) -> bool:
    """Whether the stream's opening events leave out the input count that the client is
    given at the start and at the end: its start, or the end of a whole short stream (the
    MessageDelta, last but for the MessageStop), says 0. A later end that says 0 is given
    the start's count (_reported_end)."""
    for event in (events[0], *events[-2:]):
        if (type(event) is MessageStart or type(event) is MessageDelta) and (
            not event.usage.prompt_tokens
        ):
            return True
    return False


def _event_too_large(provider: Provider, limit: int) -> GatewayError:
    """More than `limit` bytes of a stream without one whole event (a stream's gzip bomb
    looks so): the upstream's fault, ended before it fills our memory."""
    return GatewayError("connection", f"upstream {provider.name} sent a stream event larger "
                        f"than babelgate accepts ({limit} bytes)", upstream=provider.name)


def _leading_error(events: list[Event]) -> GatewayError | None:
    """The error if the stream failed before producing any content (only its start)."""
    for event in events:
        if isinstance(event, StreamError):
            return event.error
        if not isinstance(event, MessageStart):
            return None
    return None


def _encode(
    encoder: StreamEncoder, events: list[Event], attempt: Attempt, request: Request
) -> bytes:
    """Client bytes for a batch of events, noting usage and errors for the access log."""
    if len(events) == 1 and type(events[0]) is TextDelta:
        attempt.out_chars += len(events[0].text)
        return encoder.encode(events[0])  # a paced upstream's chunk: one piece of text
    batch = events  # a copy once an event is replaced for the client
    chars = attempt.out_chars
    for at, event in enumerate(events):
        if type(event) is TextDelta:  # most events: only their length to note
            chars += len(event.text)
            continue
        # What else the model wrote: the output estimate when the upstream reports none.
        if type(event) is ToolArgsDelta:
            chars += len(event.json)
        elif type(event) is ReasoningDelta:
            chars += len(event.text)
        elif isinstance(event, MessageStart):
            batch = batch if batch is not events else events.copy()
            batch[at] = _client_start(event, attempt, request)
        elif isinstance(event, MessageDelta):
            attempt.out_chars = chars  # what the end's output estimate counts
            batch = batch if batch is not events else events.copy()
            batch[at] = end = _reported_end(event, attempt)
            attempt.usage = end.usage
        elif isinstance(event, StreamError):
            if attempt.provider is not None:  # the upstream's own error event, maybe
                attempt.provider.own_error(event.error)
            attempt.error = event.error
    attempt.out_chars = chars
    return encoder.encode_batch(batch)


def _reported_end(event: MessageDelta, attempt: Attempt) -> MessageDelta:
    """The stream's end with the counts the upstream left out filled in: the input estimate
    the start carried, and the output estimated from the characters streamed (llama.cpp's
    server, for one, ignores `stream_options.include_usage` and never reports usage)."""
    usage = event.usage
    if usage.prompt_tokens and usage.output_tokens:
        return event
    if not usage.prompt_tokens:
        opening = attempt.opening
        if not attempt.estimated_input and opening is not None:
            # No estimate was made, since the start counted the input: that count, then.
            usage = replace(usage, input_tokens=opening.input_tokens,
                            cache_read_tokens=opening.cache_read_tokens,
                            cache_write_tokens=opening.cache_write_tokens)
        else:
            usage = replace(usage, input_tokens=attempt.estimated_input)
            attempt.estimated = True
    if not usage.output_tokens:
        counted = tokens.estimate_chars(attempt.out_chars)
        if counted:
            usage = replace(usage, output_tokens=counted)
            attempt.estimated = True
    return replace(event, usage=usage)


def _client_start(event: MessageStart, attempt: Attempt, request: Request) -> MessageStart:
    """The stream's start as the client sees it: the model name it asked for, and a non-zero
    input count, which clients such as Claude Code need at the start. The estimate was made
    before the request was let go of (`request` may be a stub by now)."""
    usage = event.usage
    if not usage.prompt_tokens:
        usage = replace(usage, input_tokens=attempt.estimated_input)
    else:  # the upstream's own count: what a stream cut off early records
        attempt.opening = usage
    return MessageStart(event.id, request.model, usage)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # makes this an (empty) async generator


# What a codec raises when an upstream's JSON is not the shape its protocol defines (a
# string where a list belongs, a missing key): the upstream's fault, never a 500 of ours.
MISREAD = (AttributeError, IndexError, KeyError, TypeError, ValueError)


def _bad_upstream(provider: Provider, what: str) -> GatewayError:
    """An upstream that answered 200 with something that is not an answer: a 502 (the
    status a gateway gives for a bad upstream answer), worth trying the next target."""
    return GatewayError("api_error", provider.redact(f"upstream {provider.name} {what}"),
                        status=502, upstream=provider.name)


def _misread(provider: Provider, exc: Exception) -> GatewayError:
    return _bad_upstream(provider, f"answered in a shape its protocol does not define "
                                   f"({type(exc).__name__}: {str(exc)[:200]})")


def _load_upstream_json(raw: bytes, provider: Provider) -> dict[str, object]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
        what = f"returned a body that is not JSON ({len(raw)} bytes: {raw[:100]!r})"
    else:
        what = "returned JSON that is not an object"
    if not isinstance(data, dict):
        raise _bad_upstream(provider, what)
    return data


def _rendered(provider: Provider, request: Request, reuse: Reuse) -> bytes:
    """The upstream's body for `request`; a value of the client's too deep to render (orjson
    encodes 254 levels) or to walk (Python's stack) is the client's 400, caught here rather
    than checked on every request (canonical.nesting)."""
    try:
        return orjson.dumps(provider.codec.render_request(request, provider.quirks, reuse))
    except TOO_DEEP as exc:
        raise too_deep(exc) from None


def _too_deep_answer(call: Call, provider: Provider, error: BaseException) -> GatewayError:
    """Whose value it is that was too deep to translate in an answer: the client's 400 when
    its own body is too deep to write out (then the answer echoed it), else the upstream's
    502. Only on this error's path: nothing measures depth in advance (canonical.nesting)."""
    call.restore()
    try:
        orjson.dumps(call.body())
    except TOO_DEEP:
        return too_deep(error)
    return _bad_upstream(provider, f"answered with a value the gateway cannot translate "
                                   f"(nested too deep?): {error}")


def _rewritten(call: Call, target: Target, provider: Provider) -> bytes:
    """The client's body for an upstream of its own protocol (`_rendered`'s 400 likewise)."""
    try:
        return rewrite_body(call.codec.name, call.body(), target.model, provider.quirks)
    except TOO_DEEP as exc:
        raise too_deep(exc) from None


def _parse_whole(provider: Provider, raw: bytes, request: Request, reuse: Reuse) -> Response:
    """The upstream's whole answer as a Response, or the 502 saying it is not one."""
    data = _load_upstream_json(raw, provider)
    del raw
    try:
        return provider.codec.parse_response(data, request, reuse)
    except MISREAD as exc:
        problem = _misread(provider, exc)
    raise problem  # outside the handler: the error keeps no frame that holds the body


def _closing(decoder: StreamDecoder) -> list[Event]:
    """What a decoder still had open, when its stream failed (its own StreamError left out:
    the caller says what failed)."""
    try:
        return [e for e in decoder.close() if not isinstance(e, StreamError)]
    except MISREAD:  # the decoder read garbage: it has nothing sound to close
        return []


@dataclass(slots=True)
class Call:
    """One inbound call: the client's codec, its parsed request, and its body (raw and as a
    dict, for pass-through), and the reuse table of the caller (the same for every codec call
    the request makes). `data` is None when the request was read straight from the bytes
    (Codec.read_request) and nothing has needed the dict yet: `body()` decodes it then."""

    codec: Codec
    request: Request
    data: dict[str, Any] | None
    raw: bytes
    headers: Mapping[str, str]
    reuse: Reuse
    origin: Origin  # who asked, for the books
    releasable: bool = True  # False when `data` is not `raw` parsed (a history expanded)
    released: bool = False
    passthrough: bool = True  # False: a rule's edits have no pass-through form (rule_edits.py)
    route_log: str = "rule=- route=-"  # what chose the targets, for the access log
    permit: Permit | None = None  # what the calling key's limits admitted (limits/)
    # The input-token estimate a rule's `long_context` check made of `request`, if any: the
    # same number a translated stream's start needs (routing/rules.py, Rules.choose).
    estimated_input: int | None = None
    owner: str | None = None  # the calling key's id (server/owner.py), for sessions
    # A digest naming the client's conversation (server/sticky_key.py), when a route or a
    # provider's `api_keys` spreads requests: it stays on the target and key it started on.
    conversation: str | None = None

    def body(self) -> dict[str, Any]:
        """The client's body as a dict (decoded now if it was not yet)."""
        if self.data is None:
            self.data = loads_object(self.raw)
        return self.data

    def release(self) -> None:
        """Let go of the parsed body while an upstream is awaited; `restore` rebuilds it from
        the raw bytes if a fallback, or an upstream answering a stream with a whole body,
        needs it."""
        if self.releasable and not self.released:
            self.released = True
            self.data = {}
            self.request = Request(model=self.request.model, messages=(),
                                   stream=self.request.stream)

    def restore(self) -> None:
        if self.released:
            self.released = False
            self.data = self.reuse.loads(self.raw)
            self.request = self.codec.parse_request(self.data, self.reuse)

    def settle(self) -> None:
        """The stream is committed to one target and cannot fall back any more: let go of the
        body (raw, parsed and canonical). An open stream then holds kilobytes, not the
        request's tens of kilobytes; only the model name is still needed (for the log)."""
        self.raw = b""
        self.data = {}
        self.request = Request(model=self.request.model, messages=(), stream=True)
        self.releasable = self.released = False
