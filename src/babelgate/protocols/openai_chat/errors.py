"""Chat Completions error bodies <-> GatewayError.

Upstream side: `{"error":{"message","type","param","code"}}` is the standard shape; vLLM and
other FastAPI servers send `{"object":"error","message","type","code"}`, some send
`{"error":"text"}`, a list around the object, or plain text from a proxy. The upstream's
message is always kept. The kind comes from the error type when it is one we know (a 429
`insufficient_quota` is a billing problem, not a rate limit), else from the HTTP status.
"""

from __future__ import annotations

from typing import Any

import orjson

from babelgate.canonical import JSON, ErrorKind, GatewayError
from babelgate.canonical.errors import kind_for_status

from ..error_body import error_text, load_error_json

_MAX_TEXT = 2000

_KIND_BY_TYPE: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "context_length_exceeded": "invalid_request",
    "authentication_error": "authentication",
    "invalid_api_key": "authentication",
    "permission_error": "permission",
    "permission_denied": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "billing",
    "billing_error": "billing",
    "server_error": "api_error",
    "api_error": "api_error",
    "overloaded_error": "overloaded",
    "service_unavailable": "overloaded",
    "timeout": "timeout",
}

_TYPE_BY_KIND: dict[ErrorKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "billing": "insufficient_quota",
    "budget": "insufficient_quota",
    "api_error": "server_error",
    "overloaded": "server_error",
    "timeout": "server_error",
    "connection": "server_error",
}

_CODE_BY_KIND: dict[ErrorKind, str] = {
    "authentication": "invalid_api_key",
    "not_found": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit": "rate_limit_exceeded",
    "billing": "insufficient_quota",
    "budget": "insufficient_quota",
    "overloaded": "overloaded",
    "timeout": "timeout",
    "connection": "upstream_unreachable",
}


def parse_error(status: int, body: bytes) -> GatewayError:
    data = load_error_json(body, first_of_list=True)
    if isinstance(data, dict):
        return error_from_json(data, status)
    text = error_text(body, _MAX_TEXT, f"upstream returned HTTP {status}")
    return GatewayError(kind_for_status(status), text, status=status)


def error_from_json(data: JSON, status: int | None = None) -> GatewayError:
    """An error object (a body, or a mid-stream `{"error":...}` chunk) -> GatewayError.
    Without an HTTP status (mid-stream), a numeric `code` that looks like one stands in."""
    error = data.get("error")
    detail: JSON = error if isinstance(error, dict) else data
    message = _message(error, detail)
    code = detail.get("code")
    if status is None and isinstance(code, int) and 400 <= code < 600:
        status = code
    kind = _kind(detail, status)
    param = detail.get("param")
    return GatewayError(
        kind,
        message,
        status=status if status is not None and status >= 400 else None,
        param=param if isinstance(param, str) else None,
        # A string code is the upstream's machine-readable reason (context_length_exceeded
        # makes Codex compact); clients get it back as it was.
        code=code if isinstance(code, str) else None,
    )


def _message(error: Any, detail: JSON) -> str:
    if isinstance(error, str) and error:
        return error
    for key in ("message", "detail", "msg", "error_msg"):
        value = detail.get(key)
        if isinstance(value, str) and value:
            return value
    return orjson.dumps(detail).decode()[:_MAX_TEXT]


def _kind(detail: JSON, status: int | None) -> ErrorKind:
    for key in ("type", "code"):
        value = detail.get(key)
        if isinstance(value, str) and value in _KIND_BY_TYPE:
            return _KIND_BY_TYPE[value]
    return kind_for_status(status) if status is not None else "api_error"


def render_error(error: GatewayError) -> JSON:
    return {
        "error": {
            "message": error.message,
            "type": _TYPE_BY_KIND.get(error.kind, "server_error"),
            "param": error.param,
            "code": _CODE_BY_KIND.get(error.kind),
        }
    }
