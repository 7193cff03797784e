"""The application: a route table and one handler per endpoint, served by our own HTTP server
(server/http.py) or by an ASGI server (server/asgi.py) through the same `Response` interface
(server/exchange.py).

`create_app(settings)` builds everything once (router, providers, HTTP client, tokenizer);
nothing happens at import time; `start` and `stop` run around serving. Every error reaches the
client in the format of the protocol it spoke, with the status the error carries.

Hot reload (server/reload.py): everything a configuration decides lives in one Gateway, and a
reload swaps `App.gateway` for a new one. A request reads that attribute once, at its start,
and keeps the Gateway it got to its end: requests and streams in flight finish on the
configuration they began with, new ones take the new one, and the request path takes no lock.
What outlives a configuration stays with the app or is handed from one Gateway to the next:
the HTTP client's connections, the access log, unchanged providers, the reuse tables, the
stored conversations, the start time.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson

from babelgate import __version__, tokens
from babelgate.books.clients import Clients
from babelgate.books.ledger import Books, Origin, RequestIds
from babelgate.books.prices import prices_for
from babelgate.books.store import UsageSink
from babelgate.books.trace_context import TraceContext
from babelgate.canonical import GatewayError, StreamError, invalid
from babelgate.canonical.errors import ErrorKind
from babelgate.canonical.nesting import TOO_DEEP, too_deep
from babelgate.claude_code.pool import ProcessPool
from babelgate.claude_code.provider import ClaudeCodeProvider
from babelgate.claude_code.runtime import ClaudeCode
from babelgate.config import ConfigError, Settings, load_settings
from babelgate.limits import Limited, Limiter, Permit, Refusal
from babelgate.limits.periods import bounds
from babelgate.protocols import Codec, get_codec
from babelgate.protocols.reuse import ReuseTables, loads_object
from babelgate.routing import Route, RoutingState, Target, iso_time
from babelgate.routing.quota import QuotaMark
from babelgate.routing.state import KeyStatus, ProviderStatus
from babelgate.server.conversations import Conversations, Recorder
from babelgate.storage.database import Database, open_database
from babelgate.storage.keys import KeyRecord
from babelgate.storage.quota_marks import QuotaStore
from babelgate.storage.responses import ResponseStore
from babelgate.storage.spend import spend_since
from babelgate.storage.url import StorageURL, default_db_path
from babelgate.storage.usage import UsageWriter

from .admin_api import AdminApi
from .auth import OPEN_PATHS, Auth, check_scope
from .catalog import capabilities_listing, models_listing, providers_listing
from .count_tokens import count_tokens, route_count, route_headers
from .daily_log import DailyLog, Redactor
from .dashboard import Dashboard
from .exchange import Headers, Response
from .gateway import Call, Gateway
from .gemini_api import GeminiApi, gemini_path
from .http import Request, header_text
from .keepalive import KeepAlive, KeepAlives
from .memory import Collector, HeapTrimmer
from .metrics import Metrics
from .metrics_peers import MetricsPeers, merge
from .otlp import OtlpConfig
from .owner import owner_of
from .reload import (
    FileWatch,
    ReloadStatus,
    Signature,
    apply_live,
    config_file,
    file_signature,
)
from .rule_edits import edit_body
from .sessions_api import PREFIXES as SESSION_PREFIXES
from .sessions_api import SessionsApi
from .shared_routing import SharedRouting
from .traces import Traces

log = logging.getLogger("babelgate")

Handler = Callable[[Request, Response], Awaitable[None]]
T = TypeVar("T")
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # keep reverse proxies from buffering the stream
]

# GET/DELETE of a stored response: /v1/responses/{id}
STORED_RESPONSE_PREFIXES = ("/v1/responses/", "/responses/")

# Inbound protocol by path.
GENERATE_PATHS = {
    "/v1/messages": "anthropic",
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/responses": "openai-responses",
    "/responses": "openai-responses",
}


class App:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 limits_socket: str | None = None,
                 metrics_peers: MetricsPeers | None = None) -> None:
        storage = settings.storage
        # The books: one usage record per upstream attempt, to each sink (books/); a row
        # per record in the usage table, written in batches off the request path.
        # One database for everything the gateway keeps (storage/database.py). On SQLite
        # nothing creates the file before something is stored in it.
        self.db: Database = open_database(storage_url(settings))
        self.usage = UsageSink(UsageWriter(
            self.db, flush_interval=storage.usage_flush_interval_s,
            max_queue=storage.usage_max_queue,
        ))
        self.clients = Clients()
        self.request_ids = RequestIds()
        # What routing learns (cooldowns, used-up quotas) lives as long as the process, in one
        # object: every Gateway, the first and each one a reload builds, gets this same one.
        # Used-up quotas are kept in the database too (SQLite or PostgreSQL), so they also
        # outlive a restart: read back at start.
        self.quota_store = QuotaStore(self.db)
        self.routing = RoutingState()  # its sink: SharedRouting, below
        # Sessions and projects of claude-code providers (claude_code/): one for the process.
        self.claude_code = ClaudeCode(self.db, settings.claude_code, default_db_path().parent)
        # The running configuration: swapped whole by a reload, read once per request.
        self.gateway = Gateway(settings, books=Books(prices_for(settings), (self.usage,)),
                               routing=self.routing, claude_code=self.claude_code)
        self._observe(settings)
        # Under `serve --workers`: the other workers, whose counts /metrics adds up.
        self.metrics_peers = metrics_peers if self.metrics is not None else None
        self.trimmer = HeapTrimmer()
        self.collector = Collector()  # the cycles reference counting leaves: memory.py
        self.keepalives = KeepAlives(settings.server.stream_keepalive)
        self.started = time.time()
        self.clock = clock  # wall time, for when a configuration was loaded
        self.reload_status = ReloadStatus(loaded_at=clock())
        self.watch = FileWatch(self._file_changed)  # the configuration file's edits
        self._reloading = asyncio.Lock()  # one reload at a time; requests never take it
        self._reload_tasks: set[asyncio.Task[object]] = set()
        # Called after POST /admin/reload applied a configuration: under `serve --workers`
        # it has the supervisor reload the other workers (server/run.py).
        self.reloaded_on_request: Callable[[], None] | None = None
        # Request pieces found again, per caller (see reuse_for).
        self.reuse = ReuseTables(int(settings.server.reuse_mb * 2**20),
                                 shared=settings.server.reuse_shared)
        self.auth = Auth(self.db, required=settings.auth.required,
                         refresh_every=settings.auth.refresh_interval_s)
        # The keys' limits and budgets: in this process, shared through Redis, or under
        # `serve --workers` by the supervisor (limits/); with metrics on, each paid settlement
        # sets the key's budget-remaining gauge.
        self.limits = Limiter(settings.redis, workers_socket=limits_socket,
                              on_spent=self._budget_left if self.metrics is not None else None)
        # What routing learns, shared with the other processes on this database: the marks
        # written there and read back every second; with Redis, rests too (its client is the
        # limits').
        self.shared = SharedRouting(self.routing, self.quota_store, self.limits,
                                    _deployment(self.db.url),
                                    interval=storage.routing_refresh_interval_s)
        # Responses clients' conversations (previous_response_id).
        self.conversations = Conversations(ResponseStore(
            self.db, storage.responses_ttl_days,
            prune_every=storage.responses_prune_interval_s,
        ))
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
            ("GET", "/v1/models"): self.models,
            ("GET", "/models"): self.models,
            ("GET", "/health"): self.health,
            ("GET", "/"): self.health,
            ("POST", "/api/event_logging/batch"): self.drop_telemetry,
            # Administration: every /admin/* route is registered here, where a guard (admin
            # keys) can wrap them all.
            ("POST", "/admin/reload"): self.admin_reload,
            ("GET", "/v1/quota"): self.quota,
            ("POST", "/v1/quota/reset"): self.quota_reset,
            # The doctor's checks (server/doctor.py): administration too, under the same guard.
            ("POST", "/v1/test-connection"): self.test_connection,
            # What is configured and what each model can do (server/catalog.py).
            ("GET", "/v1/providers"): self.providers,
            ("GET", "/v1/models/capabilities"): self.capabilities,
        }
        # The admin JSON API (/admin/api/...: usage, requests, keys) and the dashboard's
        # files (/ui), each in a module of its own.
        self.routes.update(AdminApi(self.db, self.auth).routes())
        self.dashboard = Dashboard(self.auth)
        self.routes.update(self.dashboard.routes())
        # The dashboard's files hold no data: a browser loads them before it has a key.
        self.open_paths = OPEN_PATHS | self.dashboard.paths()
        for path, protocol in GENERATE_PATHS.items():
            self.routes[("POST", path)] = self._generate_for(protocol)
        if self.metrics is not None:
            self.routes[("GET", "/metrics")] = self.serve_metrics
        self.gemini = GeminiApi(self)  # /v1beta/models/...: paths that carry the model
        # /v1/sessions and /v1/projects, with or without an id (claude_code/api.py).
        self.sessions = SessionsApi(lambda: self.claude_code, owner_of, self._process_pools)
        for path in ("/v1/sessions", "/v1/projects"):
            self.routes[("GET", path)] = self.routes[("POST", path)] = self.sessions

    def _observe(self, settings: Settings) -> None:
        """The daily log file and the metrics, when configured: each takes every attempt's
        record (a sink of the books) and every request refused before routing (here).
        Both are opened once: a reload keeps them (server/reload.py)."""
        logs = settings.logs
        self.daily_log: DailyLog | None = None
        if logs.dir is not None:
            self.daily_log = DailyLog(
                logs.dir, keep_days=logs.keep_days, format=logs.format,
                max_bytes=int(logs.max_mb * 2**20), backups=logs.backups, bodies=logs.bodies,
                redactor=Redactor(_provider_secrets(settings)),
            )
        # Limits set the budget gauge through `metrics.budget_remaining(key, usd)`.
        self.metrics: Metrics | None = Metrics() if settings.metrics else None
        # OpenTelemetry traces when OTEL_EXPORTER_OTLP_ENDPOINT is set (server/traces.py).
        otlp = OtlpConfig.from_environ(os.environ)
        self.traces = (Traces(otlp, lambda: self.gateway.providers) if otlp is not None
                       else None)
        if otlp is not None:
            log.info("OpenTelemetry traces to %s as service %s", otlp.where(), otlp.service)
        self.log_sinks = tuple(s for s in (self.daily_log, self.metrics, self.traces)
                               if s is not None)
        for sink in self.log_sinks:
            self.gateway.books.add_sink(sink)

    async def __call__(self, request: Request, response: Response) -> None:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        method = "GET" if request.method == "HEAD" else request.method
        if self.auth.active and path not in self.open_paths:
            try:
                request.caller = self.auth.authenticate(request)
            except GatewayError as error:
                send_error(response, error_codec(request), error)
                return
        handler = self.routes.get((method, path))
        if handler is None:
            if path.startswith(STORED_RESPONSE_PREFIXES):
                handler = self.stored_response
            elif gemini_path(path):
                handler = self.gemini
            elif path.startswith(SESSION_PREFIXES):
                handler = self.sessions
            else:
                handler = self.not_found
        await handler(request, response)

    def refusal(self, path: str, status: int, message: str) -> tuple[bytes, Headers]:
        """The body of a request the HTTP server refused before any handler ran (malformed,
        too large), in the error format of the protocol its path belongs to."""
        kind: ErrorKind = "invalid_request"
        if status in (413, 431):
            kind = "request_too_large"
        elif status >= 500:
            kind = "api_error"
        error = GatewayError(kind, message)
        return orjson.dumps(_codec_for(path).render_error(error)), JSON_HEADERS

    @property
    def settings(self) -> Settings:
        """The running configuration (the current Gateway's)."""
        return self.gateway.settings

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:
            await self.db.open()  # PostgreSQL: connect and migrate (SQLite: on first use)
            await self.auth.start()  # raises AuthRequired when keys are required, none exist
            await self.limits.start()
            await self._seed_budgets()
            self.routing.quota.load(await _stored_marks(self.quota_store))
            await self.claude_code.start()
            self.shared.start()
        except self.db.errors as exc:
            raise StorageUnavailable(f"cannot use the database {self.db.url}: {exc}") from None
        await self.gateway.start()
        if self.metrics_peers is not None and self.metrics is not None:
            await self.metrics_peers.start(self.metrics.dump)
        path = config_file(self.settings)
        self._watch(path, await asyncio.to_thread(file_signature, path) if path else None)
        await self.conversations.store.start()  # prunes expired responses, now and hourly
        # Everything built so far lives as long as the process: keep the collector from
        # scanning it again on every full collection of the request path.
        gc.freeze()
        # A 50 KB request is a few thousand objects; with the default threshold (700) the
        # collector ran ~3,400 times in 8 s under load and took 8% of the core, re-scanning
        # requests in flight. Nearly all of it is freed by reference counting anyway; collect
        # young objects every 20,000 allocations instead, and everything every few seconds
        # (memory.Collector), so that cyclic garbage does not wait for the counts.
        gc.set_threshold(20_000, 20, 20)
        self.trimmer.start()
        self.collector.start()

    async def stop(self) -> None:
        await self.watch.stop()
        if self.metrics_peers is not None:
            await self.metrics_peers.stop()
        for task in list(self._reload_tasks):
            task.cancel()
        self.trimmer.stop()
        self.collector.stop()
        await self.gateway.stop()
        await self.auth.stop()
        await self.conversations.store.close()  # finishes queued writes
        # Writes the records still queued (on PostgreSQL through the loop: off it, then).
        await asyncio.to_thread(self.usage.close)
        if self.daily_log is not None:
            await self.daily_log.close()  # writes the lines still queued
        if self.traces is not None:
            await self.traces.close()  # sends the spans still queued
        await self.shared.stop()  # its last writes, before the database and Redis go
        await self.limits.stop()
        await self.db.close()

    async def _seed_budgets(self) -> None:
        """Each budgeted key's spend so far in its period, from the usage table (a restart
        must not forget what was spent today)."""
        keys = [key for key in self.auth.keys.values()
                if key.budget is not None and key.budget_period is not None
                and key.revoked_at is None]
        if not keys:
            return
        now = time.time()
        for period in ("day", "month"):
            wanted = [key.id for key in keys if key.budget_period == period]
            if not wanted:
                continue
            start, _ = bounds(period, now)
            spent = await spend_since(self.db, start)
            for key_id in wanted:
                await self.limits.seed(key_id, period, spent.get(key_id, 0.0))
        if self.metrics is not None:  # the gauges from the start, not the first settlement
            for key in keys:
                self._budget_left(key, await self.limits.spent(key))

    def _budget_left(self, key: Limited, spent: float) -> None:
        """The budget-remaining gauge of `key` (its name), never below 0: the request that
        crosses a budget is served."""
        if self.metrics is not None and key.budget is not None:
            self.metrics.budget_remaining(key.name, max(0.0, key.budget - spent))

    # ------------------------------------------------------------------ generation
    def _generate_for(self, protocol: str) -> Handler:
        async def handler(request: Request, response: Response) -> None:
            # get_codec is a dict lookup once loaded; loading on first use keeps start-up
            # independent of protocols nobody calls.
            await self.generate(get_codec(protocol), request, response)

        return handler

    async def generate(self, codec: Codec, http: Request, response: Response) -> None:
        gateway = self.gateway  # this request's configuration, to its end (hot reload)
        recorder: Recorder | None = None
        owner = owner_of(http)
        origin = Origin(self.request_ids.next(), owner, self.clients.of(
            http.headers.get("user-agent")), codec.name, http.path,
            # With traces on: the caller's trace joined, or a new one (books/trace_context).
            None if self.traces is None else TraceContext.of(http.headers))
        model = ""  # for the books, once known
        try:
            raw = http.body
            if self.daily_log is not None and self.daily_log.bodies:
                self.daily_log.body(origin.request_id, "request", raw,
                                    _credentials(http.headers))
            reuse = self.reuse.table_for(owner)
            data = original = reuse.lookup(raw)
            # A body the table found nothing of: the codec's typed reader takes the usual
            # shape straight from the bytes (protocols/anthropic/typed_request.py); the
            # decoded body (`data`) is then made only if something needs it (Call.body).
            request = codec.read_request(raw, reuse) if data is None else None
            if request is None:
                if data is None:
                    data = original = loads_object(raw)
                if codec.name == "openai-responses":  # stored conversations: conversations.py
                    data, recorder = await self.conversations.prepare(data, owner)
                request = codec.parse_request(data, reuse)
            check_scope(http.caller, request.model)  # the model the client asked for
            model = request.model
            # Rules first (routing/rules.py), then the routes: the request as the first rule
            # that matches edits it, and where it goes.
            request, route, rule, estimate = gateway.rules.choose(
                request, http.headers, reuse, gateway.router)
        except GatewayError as error:
            _refuse_early(gateway, origin, model, response, codec, error)
            return
        except TOO_DEEP as exc:  # a walker's stack ended in a deep value: canonical.nesting
            _refuse_early(gateway, origin, model, response, codec, too_deep(exc))
            return
        edited = passes = False
        if rule is not None and rule.edits:
            # A body that passes through carries the edits too (rule_edits.py); one whose
            # edits have no form in its protocol is translated from the edited request.
            edited = True
            if data is None:
                data = original = loads_object(raw)
            body = edit_body(codec.name, data, rule.edits)
            passes = body is not None
            data = body if body is not None else data
        call = Call(codec, request, data, raw, http.headers, reuse, origin,
                    # `restore` would parse the client's bytes again, without the edits.
                    releasable=data is original and not edited,
                    passthrough=passes or not edited, route_log=route.log,
                    estimated_input=estimate, owner=owner)
        # From here the body lives only in `call`, which lets go of it while upstreams are
        # awaited and once a stream settles; locals of this frame would keep it for the whole
        # stream (~150 KB for Claude Code).
        http.body = b""
        del raw, data, original, request, reuse
        refused = self._admit(call, http.caller)
        # Never reached an upstream: a record like the others.
        if refused is not None and (refused := await _settled(refused)) is not None:
            _refuse_early(gateway, origin, model, response, codec, refused, route)
            return
        # A client that disconnects cancels this task (server/http.py, server/asgi.py), and
        # with it the upstream request it awaits.
        try:
            await self._serve(gateway, call, route, response, recorder)
        finally:
            # The stream ended, the answer went out, or the client left (cancelled): the
            # concurrency slot is free and the estimate replaced by what the attempts used
            # (each charged it where its usage record was built: gateway.log_attempt).
            if call.permit is not None:
                self.limits.finish(call.permit)

    async def _serve(
        self, gateway: Gateway, call: Call, route: Route, response: Response,
        recorder: Recorder | None,
    ) -> None:
        """The answer or the stream of an admitted request."""
        if not call.request.stream:
            await self._complete(gateway, call, route, response, recorder)
            return
        metrics = self.metrics
        if metrics is None:
            await self._stream(gateway, call, route, response, recorder)
            return
        metrics.open_streams += 1  # from the request's arrival to its stream's end
        try:
            await self._stream(gateway, call, route, response, recorder)
        finally:
            metrics.open_streams -= 1

    def _admit(
        self, call: Call, caller: KeyRecord | None
    ) -> GatewayError | Awaitable[GatewayError | None] | None:
        """Takes what `caller`'s limits allow for `call` (None), or says why not; counted in
        this process that is decided at once, without a coroutine (most gateways: no Redis,
        one process), else the awaitable that asks the shared store."""
        if caller is None or not caller.limited:  # has_limits, decided once per key record
            return None
        # The body's size says roughly how many tokens it holds, at no cost whatever its
        # length (walking a long conversation's messages does not); what the request really
        # used replaces it when it ends.
        estimate = tokens.estimate_chars(len(call.raw)) if caller.tpm else 0
        admitted = self.limits.admit_here(caller, estimate)
        if admitted is None:
            return self._admit_shared(call, caller, estimate)
        if isinstance(admitted, Refusal):
            return admitted.error()
        call.permit = admitted
        return None

    async def _admit_shared(
        self, call: Call, caller: KeyRecord, estimate: int
    ) -> GatewayError | None:
        return self._admitted(call, await self.limits.admit(caller, estimate))

    @staticmethod
    def _admitted(call: Call, admitted: Permit | Refusal) -> GatewayError | None:
        if isinstance(admitted, Refusal):
            return admitted.error()
        call.permit = admitted
        return None

    async def _complete(
        self, gateway: Gateway, call: Call, route: Route, response: Response,
        recorder: Recorder | None = None,
    ) -> None:
        answer = await self._answer(call, route, response,
                                    gateway.complete(call, list(route.targets)))
        if answer is None:
            return
        body, target = answer
        if recorder is not None:  # before sending: the client's next turn must find it
            recorder.whole(body)
        response.send(200, body, _json_headers(target, route, call.origin))
        if self.daily_log is not None and self.daily_log.bodies:
            self.daily_log.body(call.origin.request_id, "response", body,
                                _credentials(call.headers))

    async def _answer(
        self, call: Call, route: Route, response: Response, upstream: Awaitable[T]
    ) -> T | None:
        """What `upstream` gives (an answer, or the opening of a stream); if it fails, the
        client is answered with the error instead (naming the `route` that failed) and None
        returned."""
        try:
            return await upstream
        except GatewayError as error:
            _refuse(response, call, error, route)
        except asyncio.CancelledError:
            if response.client_gone:
                raise
            # The server is stopping and its grace period ran out: an error to retry on.
            _refuse(response, call, SHUTTING_DOWN, route)
        except Exception as exc:  # a bug of ours: tell the client, keep the server up
            log.exception("internal error serving %s", call.request.model)
            _refuse(response, call, internal_error(exc), route)
        return None

    async def _stream(
        self, gateway: Gateway, call: Call, route: Route, response: Response,
        recorder: Recorder | None = None,
    ) -> None:
        # The route is known before any upstream answers: a head sent early (keep-alive)
        # carries it too.
        head = [*SSE_HEADERS, _route_header(route), _id_header(call.origin)]
        keepalive = self.keepalives.watch(response, head, call.codec.keepalive)
        opened = await self._answer(
            call, route, response, _opening(gateway.stream(call, list(route.targets)), keepalive))
        if opened is None:
            return
        first, rest, target = opened
        if recorder is not None:  # keeps the final response object before it is sent
            recorder.feed(first)
        try:
            try:
                if keepalive.opened:  # the head went out with the first keep-alive
                    await response.write(first)
                else:
                    response.start(200, [*head, _target_header(target)], first)
                async for chunk in rest:
                    if recorder is not None:
                        recorder.feed(chunk)
                    await response.write(chunk)
            except asyncio.CancelledError:
                if response.client_gone:
                    raise
                # The server is stopping and its grace period ran out: end the stream with an
                # error the client retries on, not a silent cut, and let the task finish.
                encoder = call.codec.stream_encoder(call.request, call.reuse)
                response.end(encoder.encode(StreamError(SHUTTING_DOWN)))
                return
            except Exception as exc:
                log.exception("internal error while streaming %s", call.request.model)
                encoder = call.codec.stream_encoder(call.request, call.reuse)
                tail = encoder.encode(StreamError(internal_error(exc)))
                response.end(tail)
                return
            response.end()
        finally:
            # A stream cut off (the client left, the server's grace ran out) is closed now,
            # so that its usage record is written before anything else happens.
            await _close(rest)

    # ------------------------------------------------------------------ hot reload
    def request_reload(self, why: str) -> None:
        """Reload soon (from a signal handler, which cannot await)."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self.reload(why))
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    async def _file_changed(self) -> None:
        await self.reload(f"{self.watch.path} changed")

    async def reload(self, why: str) -> GatewayError | None:
        """Read the configuration again (the same file; without one, the same discovery as at
        start: ./babelgate.yaml if it now exists, else the environment) and apply it to the
        requests that start from now on. A configuration that cannot be loaded is refused:
        the running one stays, and the error is logged, kept for /health and returned."""
        async with self._reloading:
            running = self.settings
            path = config_file(running)
            seen = await asyncio.to_thread(file_signature, path) if path else None
            if path is not None:
                self.watch.seen = seen  # this version is read now: the watch need not
            try:
                loaded = await asyncio.to_thread(load_settings, path)
                settings, pending = apply_live(running, loaded)
                gateway = self._successor(settings)
            except ConfigError as exc:
                return self._refused(why, str(exc))
            except Exception as exc:  # e.g. a provider that cannot be built from its settings
                log.exception("configuration reload (%s): cannot build the gateway", why)
                return self._refused(why, f"cannot apply the configuration: "
                                          f"{type(exc).__name__}: {exc}")
            old, self.gateway = self.gateway, gateway  # new requests see it from here on
            if settings.server.stream_keepalive != running.server.stream_keepalive:
                # Streams waiting already keep the old timer; new ones take the new interval.
                self.keepalives = KeepAlives(settings.server.stream_keepalive)
            status = self.reload_status
            self.reload_status = ReloadStatus(self.clock(), None, status.reloads + 1, pending)
            if settings.source != running.source:  # discovery found a file: watch it now
                seen = await asyncio.to_thread(file_signature, settings.source)
            self._watch(config_file(settings), seen)
            _log_reload(why, settings, pending)
            await _close_discarded(old, gateway)
            return None

    def _successor(self, settings: Settings) -> Gateway:
        """A Gateway for `settings` that takes over what outlives a configuration from the
        running one: the HTTP client (connections under open streams stay theirs), the access
        log, and every provider whose settings did not change, with its credentials' state."""
        old = self.gateway
        kept = {name: old.providers[name] for name, config in settings.providers.items()
                if name in old.providers and old.settings.providers.get(name) == config}
        return Gateway(settings, http=old.http, access_log=old.access_log, providers=kept,
                       books=old.books.repriced(prices_for(settings)),
                       routing=old.routing, claude_code=self.claude_code)

    def _refused(self, why: str, message: str) -> GatewayError:
        status = self.reload_status
        log.error("configuration reload (%s) refused; still serving the configuration loaded "
                  "at %s: %s", why, status.loaded_at_text(), message)
        self.reload_status = ReloadStatus(status.loaded_at, message, status.reloads,
                                          status.restart_pending)
        return GatewayError("invalid_request", message, status=422)

    def _watch(self, path: str | None, seen: Signature | None) -> None:
        """Watch `path` (the configuration's file; None: none) as the settings say."""
        watch = self.watch
        watch.path, watch.interval = path, self.settings.server.reload_poll
        if path is not None:
            watch.seen = seen
        watch.start()

    # ------------------------------------------------------------------ other endpoints
    async def count_tokens(self, request: Request, response: Response) -> None:
        codec = get_codec("anthropic")
        gateway = self.gateway
        route: Route | None = None  # once known, every answer names it, errors included
        try:
            reuse = self.reuse.table_for(owner_of(request))
            data = reuse.loads(request.body)
            model = data.get("model")
            if isinstance(model, str):
                check_scope(request.caller, model)
            counting = route_count(gateway, data, request.headers, reuse)
            route = counting.route
            count, estimated = await count_tokens(gateway, counting, request.headers, reuse)
        except GatewayError as error:
            send_error(response, codec, error, *route_headers(route))
            return
        except TOO_DEEP as exc:
            send_error(response, codec, too_deep(exc), *route_headers(route))
            return
        extra = [(b"x-babelgate-token-count", b"estimate" if estimated else b"upstream"),
                 _route_header(route)]
        send_json(response, 200, {"input_tokens": count}, extra)

    async def models(self, request: Request, response: Response) -> None:
        if "x-goog-api-key" in request.headers or "key=" in request.query:
            self.gemini.list_models(response)  # a Gemini SDK set to the `v1` API version
            return
        send_json(response, 200, models_listing(
            self.gateway, anthropic="anthropic-version" in request.headers,
            created=int(self.started)))

    async def health(self, request: Request, response: Response) -> None:
        gateway = self.gateway
        send_json(response, 200, {
            "status": "ok",
            "version": __version__,
            "config": gateway.settings.source,
            # When it was loaded, the last reload's error (null once one succeeds), ...
            **self.reload_status.describe(),
            "providers": [p.describe() for p in gateway.providers.values()],
            "uptime_s": round(time.time() - self.started, 1),
            "pid": os.getpid(),  # which process answered (serve --workers N)
            "reuse": self.reuse.stats(),  # request pieces decoded once and found again
            # "ok", or "unreachable, local limits" while it is away; null without `redis:`.
            "redis": self.limits.status,
            # Where the keys' limits are counted now: "redis", "workers" (the supervisor of
            # serve --workers) or "process" (this one alone).
            "limits": self.limits.counted,
            "claude_code": self._claude_code_health(),
            # Whether requests need a gateway key: the dashboard asks for one before it
            # calls anything that would refuse it (a 401 is no secret: any request shows it).
            "keys_required": self.auth.active,
        })

    async def providers(self, request: Request, response: Response) -> None:
        """GET /v1/providers: each configured provider, its health and routed models."""
        send_json(response, 200, providers_listing(self.gateway, self._quota_status()))

    async def capabilities(self, request: Request, response: Response) -> None:
        """GET /v1/models/capabilities: what each model /v1/models lists can do."""
        send_json(response, 200, capabilities_listing(self.gateway))

    def _process_pools(self) -> list[ProcessPool]:
        """The CLI processes of the running claude-code providers."""
        return [p.pool for p in self.gateway.providers.values()
                if isinstance(p, ClaudeCodeProvider)]

    def _claude_code_health(self) -> dict[str, int]:
        """The CLI processes of every claude-code provider, and the sessions kept."""
        pools = self._process_pools()
        return {"active_processes": sum(len(pool.live) for pool in pools),
                "busy_processes": sum(pool.busy for pool in pools),
                "sessions": self.claude_code.session_count,
                "reaped": sum(pool.reaped for pool in pools)}

    async def quota(self, request: Request, response: Response) -> None:
        """GET /v1/quota: each provider's state (ok, exhausted, cooling) with ISO 8601 UTC
        times (null when they do not apply) and the reason."""
        send_json(response, 200, {"providers": self._quota_status()})

    async def quota_reset(self, request: Request, response: Response) -> None:
        """POST /v1/quota/reset, optionally {"provider": name}: bring one provider (or all)
        back from used-up or resting at once."""
        codec = get_codec("openai")
        provider: object = None
        if request.body.strip():
            try:
                data = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                send_error(response, codec, invalid("the body is not valid JSON"))
                return
            if not isinstance(data, dict):
                send_error(response, codec, invalid("the body must be a JSON object"))
                return
            provider = data.get("provider")
            if provider is not None and not isinstance(provider, str):
                send_error(response, codec, invalid("`provider` must be a string", "provider"))
                return
        providers = self.gateway.providers
        if provider is not None and provider not in providers:
            send_error(response, codec, GatewayError(
                "not_found", f"no provider {provider!r}; configured: {', '.join(providers)}",
                param="provider"))
            return
        self.routing.reset(provider)
        send_json(response, 200, {
            "reset": [provider] if provider is not None else list(providers),
            "providers": self._quota_status(),
        })

    def _quota_status(self) -> list[dict[str, Any]]:
        shown = []
        for status in self.routing.status(self.gateway.providers, self.gateway.policy.keys):
            entry = _state_json(status.name, status)
            if status.keys is not None:  # several api_keys: each key by its place, `#0`...
                entry["keys"] = [_state_json(None, key) for key in status.keys]
            shown.append(entry)
        return shown

    async def stored_response(self, request: Request, response: Response) -> None:
        """GET or DELETE /v1/responses/{id}: a response kept for previous_response_id."""
        rid = request.path.rstrip("/").rsplit("/", 1)[-1]
        store = self.conversations.store
        owner = owner_of(request)  # another owner's id is answered as unknown
        if request.method in ("GET", "HEAD"):
            stored = await store.get(rid, owner)
            if stored is not None:
                send_json(response, 200, stored.response)
                return
        elif request.method == "DELETE":
            if await store.delete(rid, owner):
                send_json(response, 200, {"id": rid, "object": "response", "deleted": True})
                return
        else:
            await self.not_found(request, response)
            return
        send_error(response, get_codec("openai-responses"), GatewayError(
            "not_found", f"Response with id '{rid}' not found.", param="response_id"
        ))

    async def admin_reload(self, request: Request, response: Response) -> None:
        """POST /admin/reload: read the configuration again, whether or not it changed."""
        error = await self.reload("POST /admin/reload")
        if error is not None:
            body = get_codec("openai").render_error(error)
            body["error"]["code"] = "config_invalid"
            send_json(response, error.status, body)
            return
        if self.reloaded_on_request is not None:
            self.reloaded_on_request()
        status = self.reload_status
        send_json(response, 200, {
            "reloaded": True,
            "config": self.settings.source,
            "loaded_at": status.loaded_at_text(),
            "restart_pending": list(status.restart_pending),
        })

    async def serve_metrics(self, request: Request, response: Response) -> None:
        """GET /metrics (`metrics: true`): the Prometheus text format; under `serve
        --workers`, every worker's counts together (metrics_peers.py)."""
        assert self.metrics is not None  # the route exists only with metrics on
        peers = self.metrics_peers
        if peers is None:
            body = self.metrics.render()
        else:
            own = (peers.worker, self.metrics.dump())
            # Pure Python, ~2 N times the single process's render (N workers): in a thread,
            # so the requests this worker serves meanwhile are slowed, not stopped.
            body = await asyncio.to_thread(merge, own, await peers.gather())
        response.send(200, body, [(b"content-type", self.metrics.content_type.encode())])

    async def test_connection(self, request: Request, response: Response) -> None:
        """POST /v1/test-connection [{"provider": NAME, "deep": bool, "timeout": S}]: what
        `babelgate doctor` checks, run from this server, as its JSON report (200 whether or
        not the checks pass: `ok` says)."""
        from .doctor import DEFAULT_TIMEOUT, diagnose

        try:
            options = orjson.loads(request.body) if request.body.strip() else {}
            if not isinstance(options, dict):
                raise TypeError("not an object")
            provider = options.get("provider")
            if provider is not None and not isinstance(provider, str):
                raise TypeError("provider")
            deep = bool(options.get("deep", False))
            timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
            # A timeout of 1e308 overflows the event loop's clock (a 500), and one of hours
            # holds the checks' connections that long: seconds, up to MAX_CHECK_TIMEOUT.
            if not 0 < timeout <= MAX_CHECK_TIMEOUT:
                raise ValueError("timeout")
        except (orjson.JSONDecodeError, TypeError, ValueError):
            send_error(response, get_codec("openai"), GatewayError(
                "invalid_request", 'the body must be a JSON object: {"provider": NAME, '
                '"deep": true|false, "timeout": SECONDS (above 0, at most '
                f'{MAX_CHECK_TIMEOUT:g})}}, each optional'))
            return
        report = await diagnose(self.gateway.settings, provider, deep=deep, timeout=timeout)
        send_json(response, 200, report.to_json())

    async def drop_telemetry(self, request: Request, response: Response) -> None:
        """Claude Code posts its telemetry here when pointed at a gateway: accept, drop."""
        send_json(response, 200, {})

    async def not_found(self, request: Request, response: Response) -> None:
        known = sorted({p for _, p in self.routes})
        send_error(response, _codec_for(request.path), GatewayError(
            "not_found",
            f"no endpoint {request.method} {request.path}; babelgate serves: {', '.join(known)}",
        ))


def create_app(settings: Settings, *, limits_socket: str | None = None,
               metrics_peers: MetricsPeers | None = None) -> App:
    return App(settings, limits_socket=limits_socket, metrics_peers=metrics_peers)


def _log_reload(why: str, settings: Settings, pending: tuple[str, ...]) -> None:
    log.info("configuration reloaded from %s (%s): providers %s; %d routes",
             settings.source, why, ", ".join(settings.providers) or "none", len(settings.routes))
    if pending:
        log.warning("configuration reload: %s changed in %s but can only change at a restart; "
                    "the running values stay until then", ", ".join(pending), settings.source)


async def _close_discarded(old: Gateway, new: Gateway) -> None:
    """Let the providers a reload replaced stop what they run in the background (a provider
    with a `close` or `stop` method: credential refreshers). Requests still on the old
    configuration keep the provider object and the credentials it already has."""
    kept = {id(provider) for provider in new.providers.values()}
    for provider in old.providers.values():
        if id(provider) in kept:
            continue
        close = getattr(provider, "close", None) or getattr(provider, "stop", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:  # one provider failing to stop must not undo the reload
            log.exception("stopping provider %s after a reload", provider.name)

def _deployment(url: StorageURL) -> str:
    """What names the processes that share routing state: their database."""
    return str(url.path.resolve()) if url.path is not None else url.display


def _state_json(name: str | None, status: ProviderStatus | KeyStatus) -> dict[str, Any]:
    """A provider's (`name`) or a key's state as /v1/quota shows it."""
    head: dict[str, Any] = {"key": status.key} if isinstance(status, KeyStatus) else {
        "name": name}
    return {**head, "state": status.state,
            "since": iso_time(status.since) if status.since is not None else None,
            "resets_at": iso_time(status.resets_at) if status.resets_at is not None else None,
            "reason": status.reason}


async def _stored_marks(store: QuotaStore) -> list[QuotaMark]:
    """The used-up quotas a previous run (or another gateway on the database) left."""
    try:
        rows = await store.load()
    except store.db.errors as exc:  # a damaged file must not keep the gateway from serving
        log.error("could not read quota marks from %s: %s", store.db.url, exc)
        return []
    return [QuotaMark(provider, since, resets_at, reason, key)
            for provider, key, since, resets_at, reason in rows]


# The longest `timeout` POST /v1/test-connection takes, in seconds.
MAX_CHECK_TIMEOUT = 300.0

# What a request cut off by the server stopping gets: an error its client retries on.
SHUTTING_DOWN = GatewayError("overloaded", "babelgate is shutting down; retry the request")


def _provider_secrets(settings: Settings) -> list[str]:
    """Every provider key and header value of the configuration: never in a logged body."""
    secrets = []
    for provider in settings.providers.values():
        for key in (provider.api_key, *(provider.api_keys or ())):
            if key:
                secrets.append(key)
        secrets.extend(provider.headers.values())
    return secrets


def _credentials(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The caller's own key, as its headers carry it: redacted from its logged bodies."""
    found = []
    for name in ("authorization", "x-api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            found.append(value)
            found.append(value.removeprefix("Bearer ").removeprefix("bearer "))
    return tuple(found)


class StorageUnavailable(Exception):
    """The database cannot be reached or read at start-up."""


def storage_url(settings: Settings) -> StorageURL:
    storage = settings.storage
    try:
        return StorageURL.from_settings(storage.url, storage.path)
    except ValueError as exc:
        raise ConfigError(f"storage.url: {exc} in {settings.source}") from None


def error_codec(request: Request) -> Codec:
    """The error format a request's client reads, from its path (and, for paths every
    protocol shares, its headers)."""
    path = request.path
    if path.startswith(STORED_RESPONSE_PREFIXES) or GENERATE_PATHS.get(path) == (
            "openai-responses"):
        return get_codec("openai-responses")
    if path.startswith(("/v1beta/", "/v1alpha/")) or "x-goog-api-key" in request.headers:
        return get_codec("gemini")
    if path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        return get_codec("anthropic")
    return get_codec("openai")


def _codec_for(path: str) -> Codec:
    """The error format for a path no handler took: Anthropic's under /v1/messages, Gemini's
    under its models paths, else OpenAI's."""
    if gemini_path(path):
        return get_codec("gemini")
    return get_codec("anthropic" if path.startswith("/v1/messages") else "openai")


def send_json(
    response: Response, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    response.send(status, orjson.dumps(data), [*JSON_HEADERS, *extra] if extra else JSON_HEADERS)


async def _close(rest: AsyncIterator[bytes]) -> None:
    close = getattr(rest, "aclose", None)  # the gateway's streams are async generators
    if close is not None:
        await close()


async def _settled(
    refused: GatewayError | Awaitable[GatewayError | None],
) -> GatewayError | None:
    """What `App._admit` decided: at once, or once the shared store answered (Redis, the
    supervisor of `serve --workers`)."""
    return refused if isinstance(refused, GatewayError) else await refused


async def _opening(stream: Awaitable[T], keepalive: KeepAlive) -> T:
    """A stream's opening (or its error), once known: the keep-alives stop first."""
    try:
        return await stream
    finally:
        keepalive.stop()


def _refuse_early(gateway: Gateway, origin: Origin, model: str, response: Response,
                  codec: Codec, error: GatewayError, route: Route | None = None) -> None:
    """A request refused before any upstream was tried (a body the gateway cannot use, a
    model no route serves, a key over its limits): the client's error (naming its `route`
    when one was chosen), and its usage record (no provider)."""
    record = gateway.books.refused(origin, model, error.status, error.kind)
    if gateway.access_log.enabled:  # the stderr line (the file and metrics have the record)
        gateway.access_log.refused(record, error.message)
    extra = [_id_header(origin)] if route is None else [_route_header(route), _id_header(origin)]
    send_error(response, codec, error, *extra)


def _refuse(response: Response, call: Call, error: GatewayError, route: Route) -> None:
    """Tell the client `error`: with its HTTP status and the route that failed it (which
    rule and route chose the targets matters most when none answered), or, when a stream
    kept alive is already open (server/keepalive.py; its head named the route), as the
    protocol's error event that ends it."""
    if response.started:
        response.end(call.codec.stream_encoder(call.request).encode(StreamError(error)))
    else:
        send_error(response, call.codec, error, _route_header(route), _id_header(call.origin))


def send_error(
    response: Response, codec: Codec, error: GatewayError, *extra: tuple[bytes, bytes],
) -> None:
    headers = JSON_HEADERS
    if error.retry_after is not None:
        # Clients' SDKs wait as long as this says before retrying a 429 or 5xx.
        headers = [*JSON_HEADERS, (b"retry-after", f"{error.retry_after:g}".encode())]
    if extra:
        headers = [*headers, *extra]
    if error.kind == "budget":
        # The Anthropic and OpenAI SDKs read this before retrying a 429 themselves: a spent
        # budget comes back at the end of its period, not in a few seconds.
        headers = [*headers, (b"x-should-retry", b"false")]
    response.send(error.status, orjson.dumps(codec.render_error(error)), headers)


def internal_error(exc: Exception) -> GatewayError:
    return GatewayError("api_error", f"internal gateway error: {type(exc).__name__}: {exc}")


def _target_header(target: Target) -> tuple[bytes, bytes]:
    # The model part can be the client's own text (`provider/anything` routes straight).
    return (b"x-babelgate-target", header_text(f"{target.provider}/{target.model}"))


def _route_header(route: Route) -> tuple[bytes, bytes]:
    # Which rule and/or route chose the targets (routing.Route.header).
    return (b"x-babelgate-route", header_text(route.header))


def _id_header(origin: Origin) -> tuple[bytes, bytes]:
    # Our own id (hex): the key to this request's usage record and log lines.
    return (b"x-request-id", origin.request_id.encode())


def _json_headers(target: Target, route: Route, origin: Origin) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), _target_header(target), _route_header(route),
            _id_header(origin)]
