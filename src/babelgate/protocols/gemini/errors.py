"""Google API errors <-> GatewayError.

Google's body is `{"error": {"code", "message", "status", "details"}}`, sometimes wrapped in
a JSON array. The kind comes from the canonical `status` name (a table, not the message
text); three structured details refine it: an `ErrorInfo` with reason `API_KEY_INVALID` (Google
answers a bad key with 400 INVALID_ARGUMENT) means authentication, a `RetryInfo`'s
`retryDelay` becomes `retry_after`, and a `QuotaFailure` naming a per-day quota marks the
error `exhausted` (used up until the day turns, routing/quota.py).
"""

from __future__ import annotations

import math
from typing import Any

from babelgate.canonical import ErrorKind, GatewayError
from babelgate.canonical.errors import kind_for_status

from ..error_body import error_text, load_error_json
from .parts import ORIGIN

JSON = dict[str, Any]

KIND_BY_GOOGLE_STATUS: dict[str, ErrorKind] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
    "INTERNAL": "api_error",
    "UNKNOWN": "api_error",
    "CANCELLED": "api_error",
}
# What a Gemini-SDK client expects to read for each kind (code, status).
GOOGLE_BY_KIND: dict[ErrorKind, tuple[int, str]] = {
    "invalid_request": (400, "INVALID_ARGUMENT"),
    "authentication": (401, "UNAUTHENTICATED"),
    "billing": (403, "PERMISSION_DENIED"),
    "permission": (403, "PERMISSION_DENIED"),
    "not_found": (404, "NOT_FOUND"),
    "request_too_large": (400, "INVALID_ARGUMENT"),
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "budget": (429, "RESOURCE_EXHAUSTED"),
    "api_error": (500, "INTERNAL"),
    "overloaded": (503, "UNAVAILABLE"),
    "timeout": (504, "DEADLINE_EXCEEDED"),
    "connection": (502, "UNAVAILABLE"),
}
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})


def parse_error(status: int, body: bytes) -> GatewayError:
    data = load_error_json(body, first_of_list=True)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return error_from_body(data, status)
    text = error_text(body, 500, f"HTTP {status} from Gemini")
    return GatewayError(kind_for_status(status), text, status=status, upstream=ORIGIN)


def error_from_body(data: JSON, status: int | None) -> GatewayError:
    """`{"error": {...}}` -> GatewayError. `status` is the HTTP status when there was one
    (None for an error chunk inside a 200 stream)."""
    error = data.get("error")
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    http = status if status is not None and status >= 400 else code
    http = http if isinstance(http, int) and http >= 400 else None
    kind = KIND_BY_GOOGLE_STATUS.get(str(error.get("status") or ""))
    if kind is None:
        kind = kind_for_status(http) if http is not None else "api_error"
    details = error.get("details")
    details = details if isinstance(details, list) else []
    if any(_detail_reason(d) in _AUTH_REASONS for d in details):
        kind, http = "authentication", 401
    message = str(error.get("message") or error.get("status") or "Gemini error")
    return GatewayError(
        kind, message, status=http, upstream=ORIGIN, retry_after=_retry_after(details),
        exhausted=kind == "rate_limit" and _per_day(details),
    )


def render_error(error: GatewayError) -> JSON:
    code, status = GOOGLE_BY_KIND.get(error.kind, (500, "INTERNAL"))
    return {"error": {"code": error.status or code, "message": error.message, "status": status}}


def _detail_reason(detail: Any) -> str | None:
    return detail.get("reason") if isinstance(detail, dict) else None


def _per_day(details: list[Any]) -> bool:
    """Whether a QuotaFailure names a per-day quota (quotaId such as
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier"): used up until the day turns, not a
    rate to back off from."""
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
                "QuotaFailure"):
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                return True
    return False


def _retry_after(details: list[Any]) -> float | None:
    for detail in details:
        if not isinstance(detail, dict):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if 0 <= seconds < math.inf else None  # not "infs", "nans", "-1s"
    return None
