"""One error hierarchy for the whole gateway.

Upstream failures, bad client input and routing problems all become a `GatewayError` at the
boundary where they are detected (a codec parsing an upstream error body, the HTTP client
mapping a connection failure, a codec rejecting a request). Each inbound codec renders a
GatewayError in its own wire format, including as a mid-stream error event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "request_too_large",
    "rate_limit",
    "billing",
    # A gateway key spent its budget for the day or month (limits/): the protocols' quota
    # error, 429, not retried on another target.
    "budget",
    "api_error",
    "overloaded",
    "timeout",
    "connection",
]

# The HTTP status a client sees for each kind, unless the upstream said otherwise.
STATUS_BY_KIND: dict[ErrorKind, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "billing": 402,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limit": 429,
    "budget": 429,
    "api_error": 500,
    "connection": 502,
    "overloaded": 529,
    "timeout": 504,
}

# The kind for an upstream HTTP status, when the upstream's body does not say better.
KIND_BY_STATUS: dict[int, ErrorKind] = {
    400: "invalid_request",
    401: "authentication",
    402: "billing",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limit",
    500: "api_error",
    502: "connection",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}

# Failures after which the next target in a fallback list is worth trying.
RETRYABLE_KINDS: frozenset[ErrorKind] = frozenset(
    {"rate_limit", "api_error", "overloaded", "timeout", "connection"}
)


def kind_for_status(status: int) -> ErrorKind:
    if status in KIND_BY_STATUS:
        return KIND_BY_STATUS[status]
    return "api_error" if status >= 500 else "invalid_request"


class GatewayError(Exception):
    """A failure a client should hear about, with the status it should get.

    `param` names the offending field for request errors; `upstream` names the provider
    when the failure came from one; `retry_after` keeps the upstream's hint, in seconds;
    `code` is a machine-readable reason clients act on, e.g. `context_length_exceeded`
    (Codex compacts its history on it). `exhausted` says the upstream's quota is used up
    for its period, when its error body says so in a structured way (Gemini's per-day
    QuotaFailure); `headers` are the upstream's response headers of an error status, where
    routing reads when a quota comes back. Neither is ever shown to a client.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        upstream: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        exhausted: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status if status is not None else STATUS_BY_KIND[kind]
        self.param = param
        self.upstream = upstream
        self.retry_after = retry_after
        self.code = code
        self.exhausted = exhausted
        self.headers: Mapping[str, str] | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r}, status={self.status})"


def invalid(message: str, param: str | None = None) -> GatewayError:
    """Shorthand for the most common error: the client sent something we cannot use."""
    return GatewayError("invalid_request", message, param=param)
