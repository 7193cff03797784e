"""The admin JSON API under /admin/api/: usage, recent requests and keys, for the dashboard
(/ui) and for any script. docs/admin-api.md describes each endpoint.

What this module promises:
- Every answer comes from the same queries `babelgate usage` and `babelgate keys` run
  (books/query.py, storage/key_admin.py): the numbers the dashboard shows are the CLI's.
- The paths lie under /admin/, so once a gateway key exists they need an admin key
  (server/auth.py); while the gateway is open they are open, like every other path.
- Bad input (an unreadable period, a body that is not a JSON object, a key name taken) is a
  4xx in OpenAI's error format naming the field, never a 500. A created key appears once, in
  the answer to its creation; listings never show a key or its hash.
- A key created or revoked here is obeyed by this gateway at once (its keys are read again
  before the answer), by other instances within their refresh interval.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from babelgate.books.query import recent_requests, usage_series, usage_summary
from babelgate.books.report import GROUPS, parse_since
from babelgate.canonical import GatewayError, invalid
from babelgate.protocols import get_codec
from babelgate.storage.database import Database
from babelgate.storage.key_admin import key_listing, key_options
from babelgate.storage.keys import DuplicateKeyName, create_key, revoke_key

from .access_log import without_keys
from .auth import Auth
from .exchange import Response
from .http import Request

Handler = Callable[[Request, Response], Awaitable[None]]
JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
MAX_QUERY_FIELDS = 20


def _send(response: Response, status: int, data: Any) -> None:
    response.send(status, orjson.dumps(data), JSON_HEADERS)


def _fail(response: Response, error: GatewayError) -> None:
    response.send(error.status, orjson.dumps(get_codec("openai").render_error(error)),
                  JSON_HEADERS)


def _query(request: Request) -> dict[str, str]:
    try:
        return dict(parse_qsl(request.query, max_num_fields=MAX_QUERY_FIELDS))
    except ValueError:
        raise invalid(f"more than {MAX_QUERY_FIELDS} query parameters") from None


def _since(query: dict[str, str], default: str, now: float) -> float:
    try:
        return parse_since(query.get("since", default), now)
    except ValueError as exc:
        raise invalid(str(exc).replace("--since", "since"), "since") from None


def _whole(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise invalid(f"`{name}` must be a whole number, not {text!r}", name) from None


def _body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(request.body) if request.body.strip() else {}
    except orjson.JSONDecodeError:
        raise invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return data


class AdminApi:
    def __init__(self, db: Database, auth: Auth,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.auth = auth
        self.clock = clock

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/admin/api/usage"): self._guarded(self.usage),
            ("GET", "/admin/api/usage/series"): self._guarded(self.series),
            ("GET", "/admin/api/requests"): self._guarded(self.requests),
            ("GET", "/admin/api/keys"): self._guarded(self.keys),
            ("POST", "/admin/api/keys"): self._guarded(self.create),
            ("POST", "/admin/api/keys/revoke"): self._guarded(self.revoke),
        }

    def _guarded(self, handler: Callable[[Request, Response], Awaitable[None]]) -> Handler:
        """`handler`, its GatewayErrors answered in OpenAI's error format."""
        async def run(request: Request, response: Response) -> None:
            try:
                await handler(request, response)
            except GatewayError as error:
                _fail(response, error)
            except self.db.errors as exc:
                _fail(response, GatewayError(
                    "api_error", f"the database {self.db.url} could not answer: {exc}",
                    status=503))
        return run

    async def usage(self, request: Request, response: Response) -> None:
        """GET /admin/api/usage?since=7d&by=day: `babelgate usage --json`'s answer."""
        query = _query(request)
        by = query.get("by", "day")
        if by not in GROUPS:
            raise invalid(f"`by` must be one of {', '.join(GROUPS)}, not {by!r}", "by")
        since = _since(query, "7d", self.clock())
        summary = (await usage_summary(self.db, since, by)).as_json()
        for group in summary.get("groups", ()):  # by=model: a client's text, as below
            if isinstance(group.get("name"), str):
                group["name"] = without_keys(group["name"])
        _send(response, 200, summary)

    async def series(self, request: Request, response: Response) -> None:
        """GET /admin/api/usage/series?since=24h&buckets=48: the period in equal steps."""
        query = _query(request)
        now = self.clock()
        since = _since(query, "24h", now)
        buckets = _whole(query, "buckets", 48)
        if buckets < 1:
            raise invalid("`buckets` must be at least 1", "buckets")
        _send(response, 200, await usage_series(self.db, since, now, buckets))

    async def requests(self, request: Request, response: Response) -> None:
        """GET /admin/api/requests?limit=50: the latest requests, newest first."""
        limit = _whole(_query(request), "limit", 50)
        if limit < 1:
            raise invalid("`limit` must be at least 1", "limit")
        rows = await recent_requests(self.db, limit)
        # The model asked for is the client's text, where a careless client can put its key
        # (a Gemini path, `provider/<anything>`): masked as in the logs.
        for row in rows:
            for field in ("model", "target"):
                if isinstance(row.get(field), str):
                    row[field] = without_keys(row[field])
        _send(response, 200, {"data": rows})

    async def keys(self, request: Request, response: Response) -> None:
        """GET /admin/api/keys[?all=true]: `babelgate keys list --json`'s listing."""
        revoked = _query(request).get("all", "").lower() in ("1", "true", "yes")
        _send(response, 200, {"data": await key_listing(
            self.db, revoked=revoked, now=self.clock())})

    async def create(self, request: Request, response: Response) -> None:
        """POST /admin/api/keys {"name": ..., "models": [...], "rpm": ..., "admin": ...}:
        the new key, shown this once, and its listing entry."""
        now = self.clock()
        try:
            options = key_options(_body(request), now)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        try:
            record, key = await create_key(
                self.db, options.name, now=now, scopes=options.scopes, rpm=options.rpm,
                tpm=options.tpm, concurrency=options.concurrency, budget=options.budget,
                budget_period=options.budget_period, expires_at=options.expires_at,
                admin=options.admin)
        except DuplicateKeyName:
            raise GatewayError("invalid_request", f"a key named {options.name!r} exists; "
                               "revoke it first or pick another name", param="name",
                               status=409) from None
        await self.auth.refresh()
        _send(response, 201, {"key": key, "record": record.public()})

    async def revoke(self, request: Request, response: Response) -> None:
        """POST /admin/api/keys/revoke {"name": NAME}: refused from now on."""
        name = _body(request).get("name")
        # A name no key can have (a NUL is PostgreSQL's error) is the client's 400.
        if not isinstance(name, str) or not name or not name.isprintable():
            raise invalid("`name` is required: the name of the key to revoke", "name")
        if not await revoke_key(self.db, name, now=self.clock()):
            raise GatewayError("not_found", f"no key named {name!r} (or it is revoked "
                               "already)", param="name")
        await self.auth.refresh()
        _send(response, 200, {"revoked": name})
