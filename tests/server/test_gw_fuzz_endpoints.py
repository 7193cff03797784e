"""The endpoints besides generation, tried as an attacker and as a careless client would,
over real HTTP against a real gateway process with gateway keys, metrics, a daily log and
`claude_code.roots`: whatever the query string, body, path id or header, the answer is a
success or a 4xx with a JSON error body (502-504 only where an upstream is at fault), the
process stays up, no Traceback reaches its log, and no key (gateway or provider) appears in
an answer, the process's log or the daily log.

Targeted probes first (each a case found or feared), then a property-based fuzz over every
endpoint with a fixed seed and a CI-sized budget; to hunt for more:
    BABELGATE_FUZZ_EXAMPLES=3000 .venv/bin/pytest -q tests/server/test_gw_fuzz_endpoints.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.admin_support import wait_for_key
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI
from tests.keys_support import create

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

EXAMPLES = int(os.environ.get("BABELGATE_FUZZ_EXAMPLES", "60"))  # per endpoint
PROVIDER_KEY = "sk-edge-SECRET-3e3e"


@dataclass
class Edge:
    gw: Gateway
    admin: str
    user: str
    root: Path  # claude_code.roots' one directory
    outside: Path  # a directory next to it, not allowed
    logs: Path  # the daily log's directory


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    work = tmp_path_factory.mktemp("edge")
    root, outside, logs = work / "root", work / "outside", work / "logs"
    for directory in (root, outside, logs, root / "inner"):
        directory.mkdir()
    (root / "escape").symlink_to(outside)  # a link out of the root
    fake = FakeOpenAI(api_key=PROVIDER_KEY)
    await fake.start()
    factory = GatewayFactory(work)
    try:
        gw = await factory(
            {"oa": fake.provider_config()}, routes={"gpt-test": "oa/gpt-test"},
            extra={"metrics": True, "logs": {"dir": str(logs), "bodies": True},
                   "claude_code": {"roots": [str(root)],
                                   "projects_dir": str(work / "projects")}})
        admin = create(gw.config_path, "ops", "--admin")
        user = create(gw.config_path, "alice")
        await wait_for_key(gw, user)
        yield Edge(gw, admin, user, root, outside, logs)
        await asyncio.sleep(0.3)  # the daily log's writes
        everything = gw.log() + "".join(
            p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())
        assert "Traceback" not in gw.log(), gw.log()[-4000:]
        for secret in (admin, user, PROVIDER_KEY):
            assert secret not in everything, "a key in the gateway's log or daily log"
    finally:
        await factory.close()
        await fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# Every endpoint: (method, path, needs an admin key).
ENDPOINTS = [
    ("GET", "/v1/sessions", False),
    ("POST", "/v1/sessions", False),
    ("GET", "/v1/sessions/sess_x", False),
    ("DELETE", "/v1/sessions/sess_x", False),
    ("GET", "/v1/projects", False),
    ("POST", "/v1/projects", False),
    ("GET", "/v1/projects/proj_x", False),
    ("DELETE", "/v1/projects/proj_x", False),
    ("GET", "/admin/api/usage", True),
    ("GET", "/admin/api/usage/series", True),
    ("GET", "/admin/api/requests", True),
    ("GET", "/admin/api/keys", True),
    ("POST", "/admin/api/keys", True),
    ("POST", "/admin/api/keys/revoke", True),
    ("GET", "/v1/providers", False),
    ("GET", "/v1/models/capabilities", False),
    ("GET", "/v1/quota", False),
    ("POST", "/v1/quota/reset", True),
    ("POST", "/admin/reload", True),
    ("POST", "/v1/test-connection", True),
    ("GET", "/metrics", False),
    ("POST", "/v1/messages/count_tokens", False),
    ("POST", "/v1beta/models/gpt-test:countTokens", False),
    ("GET", "/v1beta/models", False),
    ("GET", "/v1beta/models/gpt-test", False),
]


async def call(edge: Edge, session: aiohttp.ClientSession, method: str, path: str, *,
               key: str | None = None, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    sent = {**(auth(key) if key is not None else {}), **(headers or {})}
    if body is not None:
        sent.setdefault("content-type", "application/json")
    async with session.request(method, edge.gw.url + path, data=body, headers=sent) as resp:
        return resp.status, await resp.read()


def well_answered(edge: Edge, status: int, raw: bytes, where: str) -> Any:
    """The checks every answer must pass; the parsed body."""
    assert status < 500 or status in (502, 503, 504), f"{where}: {status} {raw[:400]!r}"
    for secret in (edge.admin, edge.user, PROVIDER_KEY):
        assert secret.encode() not in raw, f"{where}: a key in the answer"
    assert edge.gw.process.poll() is None, f"{where}: the gateway died"
    if status >= 400:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{where}: {status} not JSON: {raw[:300]!r}") from None
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), f"{where}: {body}"
        assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body}"
        return body
    return None


# ------------------------------------------------------------------ auth


@pytest.mark.parametrize(("method", "path", "admin"), ENDPOINTS)
async def test_every_endpoint_refuses_a_missing_or_wrong_key(
        edge: Edge, session: aiohttp.ClientSession, method: str, path: str,
        admin: bool) -> None:
    for key in (None, "bg-wrong", edge.admin + "x", "", "\u00e9\u00e9"):
        headers = {} if key is None else {"x-api-key": key} if key.isascii() else {}
        status, raw = await call(edge, session, method, path, headers=headers,
                                 body=b"{}" if method == "POST" else None)
        well_answered(edge, status, raw, f"{method} {path} key={key!r}")
        assert status == 401, (method, path, key, status, raw[:300])


@pytest.mark.parametrize(("method", "path", "admin"), [e for e in ENDPOINTS if e[2]])
async def test_admin_endpoints_refuse_a_key_that_is_not_an_admin_key(
        edge: Edge, session: aiohttp.ClientSession, method: str, path: str,
        admin: bool) -> None:
    status, raw = await call(edge, session, method, path, key=edge.user,
                             body=b"{}" if method == "POST" else None)
    body = well_answered(edge, status, raw, f"{method} {path}")
    assert status == 403, (method, path, status, raw[:300])
    assert body["error"]["type"] == "permission_error", body


# ------------------------------------------------------------------ targeted probes


def deep(n: int) -> bytes:
    return b'{"name":' + b"[" * n + b"]" * n + b"}"


BODIES = [b"not json", b"[]", b'"text"', b"12", b"null", b"true", b"{", b"\xff\xfe",
          b'{"name": null}', b'{"name": 12}', b'{"name": ["a"]}', b'{"name": {"a": 1}}',
          deep(2000), b"[" * 2000 + b"]" * 2000, b'{"name": "' + b"a" * 200_000 + b'"}',
          b'{"provider": 12}', b'{"provider": "\\u0000"}', b'{"deep": "yes", "timeout": "x"}',
          b'{"timeout": 1e308}', b'{"timeout": -1}', b'{"timeout": NaN}', b'{"timeout": null}',
          b'{"model": 12, "messages": "x"}', b'{"contents": 12}', b'{"id": 12}',
          b'{"id": "' + b"x" * 5000 + b'"}', b'{"id": "../../etc"}', b'{"project_id": []}',
          b'{"project_id": "' + b"p" * 5000 + b'"}', b'{"rpm": "fast", "name": "k"}',
          b'{"name": "k2", "models": "gpt"}', b'{"name": "k3", "expires": 1e308}',
          b'{"name": "k4", "budget": -1}', b'{"name": "k5", "admin": "yes"}',
          b'{"name": "k6", "rpm": 1e400}', b'{"name": "k7", "rpm": -5}',
          b'{"name": "k8", "budget": "NaN"}', b'{"name": "k9", "budget_period": 7}',
          b'{"name": "\\u0000\\r\\n"}', b'{"name": "' + "\u00e9\U0001f600".encode() * 50 + b'"}']
QUERIES = ["since=abc", "since=-1d", "since=99999999999999999999d", "since=1e308h",
           "since=%00", "since=\u00e9", "since=", "since=0s", "by=nope", "by=", "by=%00",
           "limit=-1", "limit=0", "limit=1e9", "limit=99999999999999999999999",
           "limit=abc", "limit=%00", "buckets=0", "buckets=-3", "buckets=100000000000",
           "buckets=1e3", "buckets=99999999999999999999999999", "all=%ff", "all=true",
           "a=1&" * 100, "since=7d&since=1h", "%zz=%zz", "key=" + "k" * 5000,
           "limit=" + "9" * 5000, "since=" + "9" * 5000 + "d", "buckets=" + "9" * 5000]


async def probe(edge: Edge, session: aiohttp.ClientSession, method: str, path: str,
                **kwargs: Any) -> str | None:
    """None if the answer passes the checks, else what went wrong."""
    where = f"{method} {path} {str(kwargs)[:120]}"
    try:
        status, raw = await call(edge, session, method, path, key=edge.admin, **kwargs)
        well_answered(edge, status, raw, where)
    except AssertionError as exc:
        return str(exc)[:500]
    return None


async def test_bodies_of_every_kind_are_a_4xx_in_json(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    failures = []
    for method, path, _ in ENDPOINTS:
        for body in BODIES:
            if method != "POST" and len(body) > 100:
                continue
            if path == "/v1/test-connection" and b"timeout" not in body:
                continue  # its checks take the provider's time; the timeouts are the point
            failure = await probe(edge, session, method, path, body=body)
            if failure:
                failures.append(failure)
    assert not failures, "\n".join(failures)


async def test_query_strings_of_every_kind_are_a_4xx_in_json(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    failures = []
    for method, path, _ in ENDPOINTS:
        if path == "/v1/test-connection" or method == "DELETE":
            continue
        for query in QUERIES:
            failure = await probe(edge, session, method, f"{path}?{query}",
                                  body=b"{}" if method == "POST" else None)
            if failure:
                failures.append(failure)
    assert not failures, "\n".join(failures)


IDS = ["..", "%2e%2e", "%2e%2e%2f%2e%2e%2fetc", "..%2f..%2fetc%2fpasswd", "%00", "a%00b",
       "x" * 10_000, "%ff%fe", "\u00e9", "%0d%0aSet-Cookie:%20a=b", "sess_x/..", "./.",
       "%2f", "a/b/c", "null", "-1", "99999999999999999999"]


async def test_path_ids_of_every_kind_are_a_4xx_in_json(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    failures = []
    for prefix in ("/v1/sessions/", "/v1/projects/", "/v1beta/models/", "/ui/", "/v1/responses/",
                   "/admin/api/", "/admin/api/keys/"):
        for ident in IDS:
            for method in ("GET", "DELETE", "POST"):
                failure = await probe(edge, session, method, prefix + ident,
                                      body=b"{}" if method == "POST" else None)
                if failure:
                    failures.append(failure)
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------ each defect found


@pytest.mark.parametrize("since", ["99999999999999999999d", "9" * 400 + "w", "0001-01-01"])
@pytest.mark.parametrize("path", ["/admin/api/usage", "/admin/api/usage/series"])
async def test_a_period_longer_than_any_clock_means_everything(
        edge: Edge, session: aiohttp.ClientSession, path: str, since: str) -> None:
    """Was a 500 (OverflowError: timestamp out of range): the start of the period is clamped
    to 1970, before which no record exists."""
    status, raw = await call(edge, session, "GET", f"{path}?since={since}", key=edge.admin)
    assert status == 200, raw[:300]
    # 1970-01-01 in UTC (the summary shows local time: 1969-12-31 west of Greenwich)
    assert orjson.loads(raw)["since"][:4] in ("1969", "1970"), raw[:300]


@pytest.mark.parametrize("timeout", [1e308, -1, 0, 301, "20"])
async def test_a_check_timeout_out_of_range_is_a_400(
        edge: Edge, session: aiohttp.ClientSession, timeout: object) -> None:
    """Was a 500 for 1e308 (OverflowError in the event loop's clock); hours held every check's
    connection that long."""
    status, raw = await call(edge, session, "POST", "/v1/test-connection", key=edge.admin,
                             body=orjson.dumps({"provider": "oa", "timeout": timeout}))
    if timeout == "20":  # a number in a string is read as one, as before
        assert status == 200, raw[:300]
        return
    assert status == 400, raw[:300]
    assert "timeout" in orjson.loads(raw)["error"]["message"]


async def test_a_project_path_cannot_leave_the_roots(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    """Absolute paths elsewhere, `..`, a symlink out of the root, NUL, relative paths: a 4xx
    naming `path`; the directory inside the root is accepted."""
    root = str(edge.root)
    for path in (str(edge.outside), "/", "/etc", f"{root}/..", f"{root}/../outside",
                 f"{root}/escape", f"{root}/escape/", f"{root}/inner/../../outside",
                 f"{root}/%2e%2e", "inner", "../outside", "~", f"{root}/\u0000x",
                 f"{root}/missing", "x" * 100_000, f"{root}/" + "a/" * 5000):
        status, raw = await call(edge, session, "POST", "/v1/projects", key=edge.user,
                                 body=orjson.dumps({"name": "p", "path": path}))
        body = well_answered(edge, status, raw, f"path {path[:80]!r}")
        assert status in (400, 403), (path[:80], status, raw[:300])
        assert body["error"]["param"] == "path", body
    status, raw = await call(edge, session, "POST", "/v1/projects", key=edge.user,
                             body=orjson.dumps({"name": "p", "path": f"{root}/inner"}))
    assert status == 200, raw[:300]
    assert orjson.loads(raw)["path"] == str(edge.root / "inner")


async def test_header_values_with_odd_bytes_are_answered(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    """CR/LF cannot reach us through a client library, so through a raw socket: a header
    value with a bare CR, a NUL or a long run; the session id header with CR/LF in it."""
    host, port = edge.gw.url.removeprefix("http://").split(":")
    for value in (b"a\rb", b"a\x00b", b"x" * 20_000, b"sess\r\nx-injected: 1"):
        for name in (b"x-session-id", b"authorization", b"x-api-key"):
            request = (b"GET /v1/sessions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                       b"x-api-key: " + edge.user.encode() + b"\r\n" + name + b": " + value +
                       b"\r\n\r\n")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = raw.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            assert status < 500, raw[:300]
            assert b"x-injected" not in head.lower(), raw[:300]
            if status >= 400 and body:
                well_answered(edge, status, body, f"{name!r}: {value[:40]!r}")
    assert edge.gw.process.poll() is None


# ------------------------------------------------------------------ the fuzz

FIELDS = ["name", "path", "model", "project_id", "id", "provider", "deep", "timeout",
          "models", "rpm", "tpm", "concurrency", "budget", "budget_period", "expires",
          "admin", "messages", "contents", "system", "tools"]
PARAMS = ["since", "limit", "by", "buckets", "all", "key", "alt", "after", "messages_limit"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "..", "../../etc", "\u0000", "7d", "-1", "1e308", "day", "x" * 3000]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=12)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=5),
    values,
    st.binary(max_size=60),
)
query_values = st.one_of(st.sampled_from(["7d", "24h", "-5", "0", "1e9", "9" * 40, "%00",
                                          "%ff", "day", "model", "\u00e9", "", "true"]),
                         st.text(max_size=20))
queries = st.dictionaries(st.sampled_from(PARAMS), query_values, max_size=3)
FUZZED = [e for e in ENDPOINTS if e[1] != "/v1/test-connection"]  # probes above cover it

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same inputs on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=False,
)


@pytest.mark.parametrize(("method", "path", "admin"), FUZZED)
@FUZZ
@given(body=bodies, query=queries)
async def test_fuzzed_requests_never_get_a_5xx(
        edge: Edge, session: aiohttp.ClientSession, method: str, path: str, admin: bool,
        body: Any, query: dict[str, str]) -> None:
    # json, not orjson: integers past 64 bits are valid JSON a client can send
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    text = "&".join(f"{k}={v}" for k, v in query.items())
    target = f"{path}?{text}" if text else path
    failure = await probe(edge, session, method, target,
                          body=raw if method == "POST" else None)
    assert failure is None, failure


async def test_the_gateway_still_serves_after_the_fuzzing(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    status, _ = await call(edge, session, "GET", "/health")
    assert status == 200
    status, _ = await call(edge, session, "GET", "/v1/sessions", key=edge.user)
    assert status == 200


async def test_nul_and_long_ids_on_postgres_are_a_4xx(tmp_path: Path) -> None:
    """PostgreSQL refuses a NUL in text: an id, project name, model or key name carrying one
    was the database's error (a 500, or for keys a 503 saying the database was away) rather
    than the client's 4xx; so was an rpm past the integer column."""
    from tests.pg_support import fresh_database

    fake = FakeOpenAI(api_key=PROVIDER_KEY)
    await fake.start()
    factory = GatewayFactory(tmp_path)
    try:
        async with fresh_database() as dsn, aiohttp.ClientSession() as http:
            gw = await factory({"oa": fake.provider_config()}, routes={"m": "oa/m"},
                               extra={"storage": {"url": dsn}})
            for method, path, body in (
                    ("GET", "/v1/sessions/a%00b", None), ("DELETE", "/v1/projects/a%00b", None),
                    ("GET", "/v1/projects/" + "x" * 5000, None),
                    ("POST", "/v1/sessions", {"project_id": "p\u0000"}),
                    ("POST", "/v1/sessions", {"model": "m\u0000"}),
                    ("POST", "/v1/projects", {"name": "n\u0000"}),
                    ("POST", "/admin/api/keys", {"name": "k\u0000"}),
                    ("POST", "/admin/api/keys", {"name": "k", "models": ["a\u0000"]}),
                    ("POST", "/admin/api/keys", {"name": "big", "rpm": 2**62}),
                    ("POST", "/admin/api/keys/revoke", {"name": "k\u0000"})):
                async with http.request(method, gw.url + path, json=body) as resp:
                    raw = await resp.read()
                    assert 400 <= resp.status < 500, (method, path, resp.status, raw[:300])
                    assert orjson.loads(raw)["error"]["message"], raw[:300]
            assert "Traceback" not in gw.log(), gw.log()[-3000:]
    finally:
        await factory.close()
        await fake.stop()


async def test_a_key_a_careless_client_puts_in_the_model_is_not_logged(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    """The model name and the Gemini path are client text the access log and the daily log
    write: a client that puts its key (or a provider key) there saw it in both logs."""
    gemini = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
    for key in (edge.user, PROVIDER_KEY, "AIzaSyA-careless-0123456789abcdef"):
        await call(edge, session, "POST", f"/v1beta/models/{key}:generateContent",
                   key=edge.user, body=gemini)
        await call(edge, session, "POST", "/v1/chat/completions", key=edge.user,
                   body=orjson.dumps({"model": key, "messages": [
                       {"role": "user", "content": "hi"}]}))
    await asyncio.sleep(0.5)  # both logs write in batches
    logged = edge.gw.log() + "".join(
        p.read_text(errors="replace") for p in edge.logs.rglob("*") if p.is_file())
    assert "status=404" in logged and "[redacted]" in logged
    # ... nor the admin API's recent requests and usage by model
    _, recent = await call(edge, session, "GET", "/admin/api/requests?limit=500",
                           key=edge.admin)
    _, by_model = await call(edge, session, "GET", "/admin/api/usage?by=model",
                             key=edge.admin)
    assert b"[redacted]" in recent
    for key in (edge.user, PROVIDER_KEY, "AIzaSyA-careless-0123456789abcdef"):
        assert key not in logged
        assert key.encode() not in recent and key.encode() not in by_model


@pytest.mark.parametrize("expires", ["9999-12-31", "99999999999d", "9999999999999999999999w",
                                     "9999-12-31T23:00:00-14:00"])
async def test_an_expiry_past_year_9999_is_a_400(
        edge: Edge, session: aiohttp.ClientSession, expires: str) -> None:
    """9999-12-31 was a 500 (OverflowError: its end is past what a datetime holds); a longer
    duration was stored, an expiry no listing can show as a date."""
    status, raw = await call(edge, session, "POST", "/admin/api/keys", key=edge.admin,
                             body=orjson.dumps({"name": f"far-{expires}", "expires": expires}))
    assert status == 400, raw[:300]
    assert "9999-12-31" in orjson.loads(raw)["error"]["message"]


async def test_a_path_with_crlf_cannot_forge_an_access_log_line(
        edge: Edge, session: aiohttp.ClientSession) -> None:
    """A Gemini path carries the model, percent-decoded: `%0d%0a` in it wrote a line of the
    client's own making into the access log."""
    gemini = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
    status, raw = await call(edge, session, "POST", "/v1beta/models/"
                             "a%0d%0aFORGED%20status=200:generateContent", key=edge.user,
                             body=gemini)
    well_answered(edge, status, raw, "crlf")
    await asyncio.sleep(0.4)  # the access log writes in batches
    assert not [line for line in edge.gw.log().splitlines() if line.startswith("FORGED")]
    assert "a\\r\\nFORGED" in edge.gw.log()
