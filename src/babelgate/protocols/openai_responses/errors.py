"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Codex reads the `code` of a streamed failure (`response.failed`) to decide what to do:
`rate_limit_exceeded` is retried after the delay named in "try again in Ns",
`server_is_overloaded` backs off, `insufficient_quota` stops, `context_length_exceeded`
triggers compaction, `invalid_prompt` is reported as a bad request, anything else is retried.
The tables below give each GatewayError kind the type and code that make Codex do the right
thing, and read an upstream's codes back into kinds.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import JSON, ErrorKind, GatewayError
from babelgate.canonical.errors import kind_for_status

from ..error_body import error_text, load_error_json

# kind -> (error.type, error.code)
_WIRE: dict[ErrorKind, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", "permission_denied"),
    "not_found": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "billing": ("insufficient_quota", "insufficient_quota"),
    "budget": ("insufficient_quota", "insufficient_quota"),
    "api_error": ("server_error", "server_error"),
    "overloaded": ("server_error", "server_is_overloaded"),
    "timeout": ("server_error", "timeout"),
    "connection": ("server_error", "upstream_unavailable"),
}

_NOT_RETRIED: frozenset[ErrorKind] = frozenset(
    {"invalid_request", "not_found", "request_too_large", "permission"}
)

# An upstream's error code or type -> kind, checked before the HTTP status.
_KIND_BY_CODE: dict[str, ErrorKind] = {
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "billing",
    "server_is_overloaded": "overloaded",
    "slow_down": "overloaded",
    "server_error": "api_error",
    "invalid_api_key": "authentication",
    "context_length_exceeded": "invalid_request",
    "invalid_prompt": "invalid_request",
    "model_not_found": "not_found",
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
}


def render_error(error: GatewayError) -> JSON:
    kind, code = _WIRE.get(error.kind, ("server_error", None))
    return {"error": {"message": error.message, "type": kind, "param": error.param,
                      "code": error.code or code}}


def stream_error(error: GatewayError) -> JSON:
    """The `error` of a failed response object in a stream. A rate limit's retry hint goes
    into the message in the form Codex parses ("try again in 2.5s")."""
    if error.code:
        code = error.code  # e.g. context_length_exceeded, on which Codex compacts its history
    elif error.kind in _NOT_RETRIED:
        code = "invalid_prompt"  # Codex reports this code instead of retrying
    else:
        code = _WIRE.get(error.kind, ("", None))[1] or "server_error"
    message = error.message
    if error.retry_after is not None and "try again in" not in message.lower():
        message = f"{message} Please try again in {error.retry_after:g}s."
    return {"code": code, "message": message}


def parse_error(status: int, body: bytes) -> GatewayError:
    err = _error_object(body)
    message = err.get("message") if isinstance(err.get("message"), str) else None
    if not message:
        message = error_text(body, 500, f"upstream returned HTTP {status}")
    kind = error_kind(err.get("code"), err.get("type")) or kind_for_status(status)
    param = err.get("param") if isinstance(err.get("param"), str) else None
    code = err.get("code") if isinstance(err.get("code"), str) else None
    return GatewayError(kind, message, status=status, param=param, code=code)


def error_from_event(err: Any) -> GatewayError:
    """A streamed error (`response.failed`'s error, or an `error` event) -> GatewayError."""
    err = err if isinstance(err, dict) else {}
    message = err.get("message") if isinstance(err.get("message"), str) else None
    kind = error_kind(err.get("code"), err.get("type")) or "api_error"
    return GatewayError(kind, message or "upstream response failed")


def error_kind(code: Any, kind: Any) -> ErrorKind | None:
    for value in (code, kind):
        if isinstance(value, str) and value in _KIND_BY_CODE:
            return _KIND_BY_CODE[value]
    return None


def _error_object(body: bytes) -> JSON:
    data = load_error_json(body)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error: JSON = data["error"]
        return error
    return {}
