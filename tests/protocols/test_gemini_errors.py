"""Google error bodies -> GatewayError: kind from the status name, structured details."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from babelgate.protocols.gemini import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"


def test_quota_error_keeps_message_and_retry_delay() -> None:
    error = codec.parse_error(429, (FIXTURES / "error_429.json").read_bytes())
    assert error.kind == "rate_limit"
    assert error.status == 429
    assert error.retryable
    assert error.retry_after == 37.0
    assert error.message.startswith("You exceeded your current quota")
    assert error.upstream == "gemini"


def test_invalid_api_key_in_an_array_is_an_authentication_error() -> None:
    error = codec.parse_error(400, (FIXTURES / "error_api_key_array.json").read_bytes())
    assert error.kind == "authentication"
    assert error.status == 401
    assert error.message == "API key not valid. Please pass a valid API key."
    assert not error.retryable


def test_schema_rejection_is_a_request_error() -> None:
    error = codec.parse_error(400, (FIXTURES / "error_400_schema.json").read_bytes())
    assert error.kind == "invalid_request"
    assert error.status == 400
    assert "additionalProperties" in error.message


def test_overloaded() -> None:
    error = codec.parse_error(503, (FIXTURES / "error_503.json").read_bytes())
    assert (error.kind, error.status, error.retryable) == ("overloaded", 503, True)


@pytest.mark.parametrize(
    ("status", "google", "kind"),
    [
        (403, "PERMISSION_DENIED", "permission"),
        (404, "NOT_FOUND", "not_found"),
        (504, "DEADLINE_EXCEEDED", "timeout"),
        (500, "INTERNAL", "api_error"),
        (400, "FAILED_PRECONDITION", "invalid_request"),
        (401, "UNAUTHENTICATED", "authentication"),
    ],
)
def test_status_names(status: int, google: str, kind: str) -> None:
    body = f'{{"error": {{"code": {status}, "message": "m", "status": "{google}"}}}}'.encode()
    error = codec.parse_error(status, body)
    assert (error.kind, error.status, error.message) == (kind, status, "m")


def test_body_that_is_not_json() -> None:
    error = codec.parse_error(502, b"<html><body>Bad Gateway</body></html>")
    assert error.kind == "connection"
    assert error.status == 502
    assert "Bad Gateway" in error.message
    empty = codec.parse_error(500, b"")
    assert empty.kind == "api_error" and "500" in empty.message


def _quota_body(quota_id: str) -> bytes:
    return orjson.dumps({"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
             "quotaId": quota_id}]}],
    }})


def test_a_per_day_quota_failure_is_marked_used_up() -> None:
    error = codec.parse_error(429, _quota_body("GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    assert error.kind == "rate_limit" and error.exhausted


def test_a_per_minute_quota_failure_is_a_rate_limit_only() -> None:
    minute = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    error = codec.parse_error(429, _quota_body(minute))
    assert error.kind == "rate_limit" and not error.exhausted
