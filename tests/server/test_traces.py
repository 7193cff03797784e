"""OpenTelemetry traces of a real gateway, received by a real OTLP/HTTP collector in the test:
what arrives is decoded and each request's spans and their GenAI attributes are checked, as a
user would read them in their tracing backend."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from test_observe import HEADERS, PROVIDER_KEY, ROUTES, message, post
from tests.conftest import GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import Usage, free_port

from babelgate.server import otlp_proto
from babelgate.server.otlp import OtlpConfig

pytestmark = [pytest.mark.gateway]

COLLECTOR_TOKEN = "collector-SECRET-token"


class Collector:
    """An OTLP/HTTP receiver: POST /v1/traces with an OTLP protobuf body (decoded by
    opentelemetry-proto's generated classes, the reference for the wire format) or an OTLP
    JSON one, kept decoded in the JSON spelling either way."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.content_types: list[str] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def traces(self, request: web.Request) -> web.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.content_types.append(request.content_type)
        raw = await request.read()
        if request.content_type == "application/x-protobuf":
            self.requests.append((headers, from_protobuf(raw)))
            return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                                content_type="application/x-protobuf")
        assert request.content_type == "application/json"
        self.requests.append((headers, orjson.loads(raw)))
        return web.json_response({"partialSuccess": {}})

    def spans(self) -> list[dict[str, Any]]:
        return [span for _, body in self.requests for span in each_span(body)]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.spans()


def from_protobuf(raw: bytes) -> dict[str, Any]:
    """An ExportTraceServiceRequest in OTLP JSON's spelling: protobuf's JSON mapping writes
    bytes in base64 where OTLP JSON writes ids in hex."""
    message = ExportTraceServiceRequest.FromString(raw)
    assert message.SerializeToString() == raw  # nothing unknown, nothing out of order
    body = MessageToDict(message, use_integers_for_enums=True)
    for span in each_span(body):
        for name in ("traceId", "spanId", "parentSpanId"):
            if name in span:
                span[name] = base64.b64decode(span[name]).hex()
    return body


def each_span(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The spans of an OTLP export (ExportTraceServiceRequest in JSON), in order."""
    for resource in body["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            yield from scope["spans"]


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with Collector() as running:
        yield running


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    """OTLP's typed attribute values as plain ones (intValue arrives as a string)."""
    found: dict[str, Any] = {}
    for item in span["attributes"]:
        (kind, raw), = item["value"].items()
        found[item["key"]] = int(raw) if kind == "intValue" else raw
    return found


@pytest.mark.parametrize("protocol", [None, "http/json", "http/protobuf"])
async def test_each_request_is_a_trace_with_genai_attributes(
        gateway_factory: GatewayFactory, collector: Collector, protocol: str | None) -> None:
    """The same spans in either encoding; without OTEL_EXPORTER_OTLP_PROTOCOL, protobuf
    (the specification's default)."""
    chosen = {} if protocol is None else {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa, FakeAnthropic() as an:
        gw = await gateway_factory(
            {"oa": oa, "an": an}, routes=ROUTES,  # type: ignore[arg-type]
            env={**chosen, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
                 "OTEL_SERVICE_NAME": "team-gateway",
                 "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{COLLECTOR_TOKEN},"
                                               "x-tenant=platform",
                 "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
                 "OTEL_BSP_SCHEDULE_DELAY": "100"})
        oa.queue(Reply(text="whole", usage=Usage(input_tokens=10, output_tokens=20)))
        assert (await post(gw, message("claude-x")))[0] == 200
        # A fallback: the first target fails, the second answers: one trace, two attempts.
        oa.queue(Reply(status=500, error="down"))
        an.queue(Reply(text="from anthropic", usage=Usage(input_tokens=4, output_tokens=2)))
        assert (await post(gw, message("fallback-x")))[0] == 200
        assert (await post(gw, message("no-such-model")))[0] == 404
        spans = await collector.wait_for(6)
    assert len(spans) == 6, spans
    wire = "application/json" if protocol == "http/json" else "application/x-protobuf"
    assert set(collector.content_types) == {wire}

    headers, body = collector.requests[0]
    assert headers["authorization"] == f"Bearer {COLLECTOR_TOKEN}"
    assert headers["x-tenant"] == "platform"
    resource = attributes(body["resourceSpans"][0]["resource"])
    assert resource == {"service.name": "team-gateway", "deployment.environment": "test"}

    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0
        traces.setdefault(span["traceId"], []).append(span)
    assert sorted(len(t) for t in traces.values()) == [1, 2, 3]
    by_size = {len(t): t for t in traces.values()}

    # A whole request: the SERVER span of the request, one CLIENT span of its attempt.
    request, attempt = sorted(by_size[2], key=lambda s: s["kind"])
    assert request["kind"] == 2 and attempt["kind"] == 3
    assert "parentSpanId" not in request and attempt["parentSpanId"] == request["spanId"]
    assert request["name"] == "chat claude-x" and attempt["name"] == "chat gpt-up"
    upstream = urlsplit(oa.url)
    assert attributes(attempt) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "oa", "gen_ai.system": "oa",
        "gen_ai.request.model": "gpt-up", "gen_ai.response.model": "gpt-up",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 20,
        "http.response.status_code": 200,
        "babelgate.request_id": attributes(request)["babelgate.request_id"],
        "server.address": upstream.hostname, "server.port": upstream.port,
    }
    wanted = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x",
              "gen_ai.response.model": "gpt-up", "gen_ai.provider.name": "oa",
              "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 20,
              "http.response.status_code": 200, "url.path": "/v1/messages",
              "babelgate.client": "claude-code", "babelgate.protocol": "anthropic",
              "babelgate.route": "claude-x"}
    assert {k: attributes(request).get(k) for k in wanted} == wanted
    assert "status" not in request and "status" not in attempt

    check_fallback_and_refused(by_size[3], by_size[1][0])

    # No key in anything sent, nor the collector's token in the gateway's log.
    for _, sent in collector.requests:
        text = orjson.dumps(sent).decode()
        assert PROVIDER_KEY not in text and HEADERS["x-api-key"] not in text
    assert COLLECTOR_TOKEN not in gw.log()
    assert f"OpenTelemetry traces to http://127.0.0.1:{collector.port}/v1/traces as " \
           "service team-gateway" in gw.log()


async def test_no_endpoint_no_traces(gateway_factory: GatewayFactory,
                                     collector: Collector) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is sent (and the service name alone
    turns nothing on)."""
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa:
        gw = await gateway_factory({"oa": oa}, routes={"claude-x": "oa/gpt-up"},  # type: ignore[arg-type]
                                   env={"OTEL_SERVICE_NAME": "x",
                                        "OTEL_BSP_SCHEDULE_DELAY": "50"})
        oa.queue(Reply(text="whole", usage=Usage(input_tokens=1, output_tokens=1)))
        assert (await post(gw, message("claude-x")))[0] == 200
        await asyncio.sleep(0.5)
    assert collector.requests == []
    assert "OpenTelemetry" not in gw.log()


def check_fallback_and_refused(fallback: list[dict[str, Any]], refused: dict[str, Any]
                               ) -> None:
    """The fallback: both attempts are children of the one request span; the failed one has
    error.type and the ERROR status, the request ends as the second answered. Refused before
    any upstream: a request span alone, with the error."""
    root = next(s for s in fallback if "parentSpanId" not in s)
    children = sorted((s for s in fallback if s is not root),
                      key=lambda s: int(s["startTimeUnixNano"]))
    assert all(c["parentSpanId"] == root["spanId"] for c in children)
    failed, answered = (attributes(c) for c in children)
    assert failed["gen_ai.provider.name"] == "oa" and failed["error.type"] == "api_error"
    assert failed["http.response.status_code"] == 500
    assert children[0]["status"]["code"] == 2
    assert answered["gen_ai.provider.name"] == "an"
    assert answered["gen_ai.usage.output_tokens"] == 2 and "error.type" not in answered
    assert attributes(root)["gen_ai.response.model"] == "claude-up"
    assert int(root["startTimeUnixNano"]) <= int(children[0]["startTimeUnixNano"])
    assert int(root["endTimeUnixNano"]) >= int(children[1]["endTimeUnixNano"])

    assert refused["kind"] == 2 and refused["status"]["code"] == 2
    assert attributes(refused)["error.type"] == "not_found"
    assert attributes(refused)["http.response.status_code"] == 404
    assert attributes(refused)["gen_ai.request.model"] == "no-such-model"


def test_the_standard_variables() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
           "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%3D%3D, x-team = ops",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=traces",
           "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-resource,region=eu",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_BSP_SCHEDULE_DELAY": "250",
           "OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "not a number"}
    config = OtlpConfig.from_environ(env)
    assert config is not None
    assert config.url == "http://collector:4318/v1/traces"
    assert dict(config.headers) == {"api-key": "abc==", "x-team": "traces"}
    assert config.resource == (("service.name", "from-resource"), ("region", "eu"))
    assert (config.timeout, config.delay, config.max_queue, config.max_batch) == (
        2.5, 0.25, 10, 512)
    named = OtlpConfig.from_environ({**env, "OTEL_SERVICE_NAME": "gw"})
    assert named is not None and named.service == "gw"
    exact = OtlpConfig.from_environ(
        {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t.example/otlp/traces"})
    assert exact is not None and exact.url == "https://t.example/otlp/traces"
    for off in ({}, {"OTEL_SERVICE_NAME": "gw"}, {**env, "OTEL_SDK_DISABLED": "true"},
                {**env, "OTEL_TRACES_EXPORTER": "none"},
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}):
        assert OtlpConfig.from_environ(off) is None, off
    # The protocol: http/protobuf unless told http/json; the traces' own variable first.
    assert config.protocol == "http/protobuf"
    for protocols, wanted in (({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
                              ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
                               "http/protobuf"),
                              ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf")):
        chosen = OtlpConfig.from_environ({**env, **protocols})
        assert chosen is not None and chosen.protocol == wanted, protocols


async def test_a_collector_that_is_down_costs_a_warning_not_a_request(
        gateway_factory: GatewayFactory) -> None:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa:
        gw = await gateway_factory({"oa": oa}, routes={"claude-x": "oa/gpt-up"},  # type: ignore[arg-type]
                                   env={"OTEL_EXPORTER_OTLP_ENDPOINT":
                                        f"http://127.0.0.1:{free_port()}",
                                        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=secret-9",
                                        "OTEL_BSP_SCHEDULE_DELAY": "50"})
        for _ in range(3):
            oa.queue(Reply(text="whole", usage=Usage(input_tokens=1, output_tokens=1)))
            assert (await post(gw, message("claude-x")))[0] == 200
        deadline = time.monotonic() + 10
        while "cannot send traces" not in gw.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    log = gw.log()
    assert "WARNING babelgate OpenTelemetry: cannot send traces to http://127.0.0.1:" in log
    assert "secret-9" not in log


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER_HEADERS = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}  # a sampled caller


async def test_a_callers_traceparent_is_joined_and_passed_upstream(
        gateway_factory: GatewayFactory, collector: Collector) -> None:
    """W3C Trace Context as OpenTelemetry users expect of a proxy: the request's span is a
    child of the caller's span in the caller's trace; the upstream request carries a
    traceparent naming the attempt's span (and the caller's tracestate), so the upstream's
    spans join the same trace. A request without one starts a trace the upstream joins; a
    malformed one is ignored (a new trace, no error); "not sampled" sends no span."""
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa, FakeAnthropic() as an:
        gw = await gateway_factory(
            {"oa": oa, "an": an}, routes=ROUTES,  # type: ignore[arg-type]
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
                 "OTEL_BSP_SCHEDULE_DELAY": "100"})
        sent = [
            {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
             "tracestate": "vendor=abc,other=x"},  # joined, through the translated path
            {},  # no caller trace
            {"traceparent": f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01"},  # malformed
            {"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},  # all-zero trace id
            {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"},  # not sampled
        ]
        for extra in sent:
            oa.queue(Reply(text="hi", usage=Usage(input_tokens=3, output_tokens=1)))
            status, answer = await post(gw, message("claude-x"), headers=extra)
            assert status == 200, answer
        # A pass-through request (Anthropic to Anthropic) carries it as well.
        an.queue(Reply(text="hi", usage=Usage(input_tokens=3, output_tokens=1)))
        assert (await post(gw, message("claude-pass"), headers=CALLER_HEADERS))[0] == 200
        spans = await collector.wait_for(10)
        await asyncio.sleep(0.4)  # the not-sampled request's spans would have come by now
        spans = collector.spans()
    assert len(spans) == 10, [s["name"] for s in spans]  # 5 sampled requests, 2 spans each
    upstream = [parse_traceparent(r.headers["traceparent"]) for r in oa.requests]
    assert [(r.headers.get("tracestate")) for r in oa.requests] == [
        "vendor=abc,other=x", None, None, None, None]
    by_span = {s["spanId"]: s for s in spans}

    # Joined: the caller's trace id; the request span's parent is the caller's span; the
    # upstream's parent is the attempt span, a child of the request span.
    trace_id, parent, flags = upstream[0]
    assert trace_id == CALLER_TRACE and flags == "01"
    attempt = by_span[parent]
    assert attempt["kind"] == 3 and attempt["traceId"] == CALLER_TRACE
    request = by_span[attempt["parentSpanId"]]
    assert request["kind"] == 2 and request["traceId"] == CALLER_TRACE
    assert request["parentSpanId"] == CALLER_SPAN
    assert request["traceState"] == "vendor=abc,other=x"

    # Without a (valid) traceparent: a new trace, a root request span, and the upstream in it.
    for trace_id, parent, flags in upstream[1:4]:
        assert trace_id != CALLER_TRACE and flags == "01"
        attempt = by_span[parent]
        assert attempt["traceId"] == trace_id
        assert "parentSpanId" not in by_span[attempt["parentSpanId"]]

    # Not sampled: passed on as such, and none of its spans sent.
    trace_id, parent, flags = upstream[4]
    assert (trace_id, flags) == (CALLER_TRACE, "00")
    assert parent not in by_span

    # Pass-through: the same.
    [passed] = an.requests
    trace_id, parent, flags = parse_traceparent(passed.headers["traceparent"])
    assert trace_id == CALLER_TRACE and by_span[parent]["name"] == "chat claude-up"
    assert by_span[by_span[parent]["parentSpanId"]]["parentSpanId"] == CALLER_SPAN


def parse_traceparent(header: str) -> tuple[str, str, str]:
    version, trace_id, parent, flags = header.split("-")
    assert version == "00" and len(trace_id) == 32 and len(parent) == 16
    return trace_id, parent, flags


async def test_no_traces_no_traceparent_upstream(gateway_factory: GatewayFactory) -> None:
    """Traces off: the upstream request carries no traceparent of ours (and the caller's is
    not forwarded: babelgate adds nothing it was not asked to)."""
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa:
        gw = await gateway_factory({"oa": oa}, routes={"claude-x": "oa/gpt-up"})  # type: ignore[arg-type]
        oa.queue(Reply(text="hi", usage=Usage(input_tokens=3, output_tokens=1)))
        assert (await post(gw, message("claude-x"), headers=CALLER_HEADERS))[0] == 200
    assert "traceparent" not in oa.requests[0].headers


def test_every_attribute_kind_in_protobuf() -> None:
    """Each kind of value a span may carry, decoded by opentelemetry-proto as it was meant:
    a double (cost), a negative and a large int, a bool, text beyond ASCII, a status."""
    span = {"traceId": CALLER_TRACE, "spanId": CALLER_SPAN, "parentSpanId": "0123456789abcdef",
            "traceState": "k=v", "name": "chat modèle", "kind": 3,
            "start": 1796617551272803800, "end": 1796617552000000000,
            "attributes": [("cost", 0.00012), ("minus", -5), ("big", 2**62), ("flag", False),
                           ("text", "ünï"), ("http.response.status_code", 429)],
            "status": {"code": 2, "message": "rate_limit"}}
    encoder = otlp_proto.Encoder()
    for _ in range(2):  # the second time from what the encoder remembers
        raw = encoder.encode([("service.name", "gw")], "babelgate", [span])
        decoded = from_protobuf(raw)
        [resource] = decoded["resourceSpans"]
        assert attributes(resource["resource"]) == {"service.name": "gw"}
        assert resource["scopeSpans"][0]["scope"] == {"name": "babelgate"}
        [got] = resource["scopeSpans"][0]["spans"]
        assert attributes(got) == {"cost": 0.00012, "minus": -5, "big": 2**62, "flag": False,
                                   "text": "ünï", "http.response.status_code": 429}
        assert {k: got[k] for k in ("traceId", "spanId", "parentSpanId", "traceState", "name",
                                    "kind", "status")} == {
            k: span[k] for k in ("traceId", "spanId", "parentSpanId", "traceState", "name",
                                 "kind", "status")}
        assert (got["startTimeUnixNano"], got["endTimeUnixNano"]) == (
            "1796617551272803800", "1796617552000000000")
