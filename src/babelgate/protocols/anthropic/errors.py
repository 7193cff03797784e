"""Anthropic error bodies, both ways, from two tables.

`render_error` gives a client the `{"type":"error","error":{type, message}}` body its SDK
expects; `parse_error` turns an upstream's error body (Anthropic's own, or the OpenAI-style
body some Anthropic-compatible endpoints send) into a GatewayError, trusting the body's
error type over the HTTP status.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import ErrorKind, GatewayError
from babelgate.canonical.errors import STATUS_BY_KIND, kind_for_status

from ..error_body import error_text, load_error_json

JSON = dict[str, Any]

TYPE_BY_KIND: dict[ErrorKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "billing": "billing_error",
    # Claude Code shows a rate_limit_error's message, which says when the budget resets.
    "budget": "rate_limit_error",
    "api_error": "api_error",
    "overloaded": "overloaded_error",
    # Anthropic has no public type for these; the SDKs retry an api_error, which is what a
    # client should do after a gateway timeout or a dropped upstream connection.
    "timeout": "api_error",
    "connection": "api_error",
}

KIND_BY_TYPE: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit",
    "billing_error": "billing",
    "api_error": "api_error",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}

_MAX_RAW_MESSAGE = 500


def render_error(error: GatewayError) -> JSON:
    return {
        "type": "error",
        "error": {"type": TYPE_BY_KIND.get(error.kind, "api_error"), "message": error.message},
    }


def error_from_object(error: JSON, status: int | None = None) -> GatewayError:
    """An `error` object (`{type, message}`) -> GatewayError; `status` is the HTTP status
    when there was one (a mid-stream error event has none)."""
    kind = KIND_BY_TYPE.get(str(error.get("type")))
    if kind is None:
        kind = kind_for_status(status) if status else "api_error"
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"upstream error ({error.get('type') or status})"
    if status is None or status < 400:
        status = STATUS_BY_KIND[kind]
    return GatewayError(kind, message, status=status)


def parse_error(status: int, body: bytes) -> GatewayError:
    data = load_error_json(body)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return error_from_object(error, status)
        if isinstance(error, str):  # {"error": "message"}, seen from some compatible hosts
            return error_from_object({"message": error}, status)
        if isinstance(data.get("message"), str):
            return error_from_object({"message": data["message"]}, status)
    text = error_text(body, _MAX_RAW_MESSAGE, f"upstream returned HTTP {status}")
    return error_from_object({"message": text}, status)
