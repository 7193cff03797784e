"""An OTLP/HTTP trace exporter of our own: spans sent as OTLP protobuf or JSON, in batches,
from a thread.

Why not the OpenTelemetry SDK: under callgrind, a request's two spans (the request and its
upstream attempt, a dozen attributes) cost ~0.47 M instructions through the SDK
(opentelemetry-sdk 1.45: span objects, attribute validation under a lock, the batch
processor's queue and condition), +40% on a 1.2 M-instruction Claude Code turn. Here the
request path appends its usage record to a list (server/traces.py builds the spans from the
records later, in the export thread), so tracing costs the request what the daily log does.

What this module promises:
- `OtlpConfig.from_environ(env)` reads the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT
  (`/v1/traces` appended) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is),
  OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_TRACES_HEADERS (`k=v,k2=v2`, values
  URL-decoded), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_TIMEOUT and
  OTEL_BSP_SCHEDULE_DELAY / OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BSP_MAX_EXPORT_BATCH_SIZE (both
  in the SDK's units: milliseconds, spans). None (tracing off) when no endpoint is set, or
  OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none.
- OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL: `http/protobuf` (the
  default, as in the specification; otlp_proto.py) or `http/json`. `grpc` is not spoken:
  a WARNING at start-up says so, and the spans go as http/protobuf to the same URL.
- `post(config, body)` sends one batch: True when the collector took it (2xx). Errors
  (refused, timeout, a 4xx or 5xx) return False: a batch is dropped, never retried forever,
  and serving goes on.
- No header value reaches a log line: they are often keys.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

log = logging.getLogger("babelgate")

PROTOBUF, JSON = "http/protobuf", "http/json"
CONTENT_TYPES = {PROTOBUF: "application/x-protobuf", JSON: "application/json"}


def _pairs(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (the OTEL_*_HEADERS and OTEL_RESOURCE_ATTRIBUTES form)."""
    found: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            found[unquote(name.strip())] = unquote(value.strip())
    return found


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else default


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    url: str  # the traces endpoint, e.g. http://collector:4318/v1/traces
    headers: tuple[tuple[str, str], ...]
    resource: tuple[tuple[str, str], ...]  # service.name first
    timeout: float = 10.0  # seconds
    delay: float = 5.0  # seconds between batches
    max_queue: int = 2048  # spans waiting; more are dropped (and counted)
    max_batch: int = 512
    protocol: str = PROTOBUF  # PROTOBUF or JSON

    @property
    def service(self) -> str:
        return self.resource[0][1]

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> OtlpConfig | None:
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
            return None
        url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not url:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not base:
                return None
            url = base.rstrip("/") + "/v1/traces"
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            log.warning("OpenTelemetry: not an http(s) URL, traces are off: %s", url)
            return None
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or PROTOBUF)
        if protocol not in (PROTOBUF, JSON):
            log.warning("OpenTelemetry: babelgate sends OTLP over HTTP (http/protobuf or "
                        "http/json), not %s: sending http/protobuf to %s", protocol, url)
            protocol = PROTOBUF
        headers = _pairs(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        headers.update(_pairs(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")))
        resource = _pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        service = (env.get("OTEL_SERVICE_NAME", "").strip() or resource.pop("service.name", "")
                   or "babelgate")
        resource.pop("service.name", None)
        return cls(
            url=url, headers=tuple(headers.items()),
            resource=(("service.name", service), *resource.items()),
            timeout=_number(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000) / 1000,
            delay=_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5_000) / 1000,
            max_queue=_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
            max_batch=_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
            protocol=protocol,
        )

    def where(self) -> str:
        """The endpoint without credentials, for the log."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def post(config: OtlpConfig, body: bytes) -> bool:
    """One export request (in the export thread). True when the collector took it."""
    parts = urlsplit(config.url)
    connection_type = (http.client.HTTPSConnection if parts.scheme == "https"
                       else http.client.HTTPConnection)
    connection = connection_type(parts.hostname or "", parts.port, timeout=config.timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {"Content-Type": CONTENT_TYPES[config.protocol], "User-Agent": "babelgate",
               **dict(config.headers)}
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
    except (OSError, http.client.HTTPException) as exc:
        log.warning("OpenTelemetry: cannot send traces to %s: %s", config.where(),
                    type(exc).__name__)
        return False
    finally:
        connection.close()
    if 200 <= answer.status < 300:
        return True
    log.warning("OpenTelemetry: %s answered %d: a batch of traces was dropped",
                config.where(), answer.status)
    return False
