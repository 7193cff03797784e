"""The sessions and projects endpoints (OpenAI-style JSON; errors in OpenAI's format):

    POST   /v1/sessions        {"model"?, "project_id"?, "id"?}  -> the session
    GET    /v1/sessions        ?limit=&after=                    -> {"object": "list", ...}
    GET    /v1/sessions/{id}   the session with its last messages (?messages_limit=) and totals
    DELETE /v1/sessions/{id}   forgets it and stops its process
    POST   /v1/projects        {"name", "path"?}                 -> the project
    GET    /v1/projects        ?limit=&after=
    GET    /v1/projects/{id}
    DELETE /v1/projects/{id}   deletes the directory only if the gateway created it

Lists are pages (`limit`, default 100, at most 1000; `after`: the `last_id` of the page
before) so that no answer grows with the count of rows. Each owner (gateway key) sees only
its own. What they do is babelgate.claude_code's; this
module reads the requests and writes the answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from babelgate.canonical import GatewayError, invalid
from babelgate.claude_code.pool import ProcessPool
from babelgate.claude_code.projects import allowed_path, check_name
from babelgate.claude_code.runtime import ClaudeCode, check_session_id
from babelgate.protocols import get_codec

from .exchange import Response
from .http import Request

SESSIONS = "/v1/sessions"
PROJECTS = "/v1/projects"
PREFIXES = (SESSIONS + "/", PROJECTS + "/")
_JSON = [(b"content-type", b"application/json")]
MAX_MODEL = 200
MAX_ID = 200  # as claude_code.runtime.MAX_SESSION_ID
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_QUERY_FIELDS = 10


class SessionsApi:
    """Handlers for the routes above; `runtime` gives the current ClaudeCode."""

    def __init__(self, runtime: Callable[[], ClaudeCode],
                 owner_of: Callable[[Request], str | None],
                 pools: Callable[[], list[ProcessPool]]) -> None:
        self._runtime = runtime
        self._owner_of = owner_of
        self._pools = pools  # the running claude-code providers' processes
        self._codec = get_codec("openai")

    async def __call__(self, request: Request, response: Response) -> None:
        """Every route of this module (the app dispatches the paths here)."""
        path = request.path.rstrip("/")
        method = "GET" if request.method == "HEAD" else request.method
        runtime = self._runtime()
        try:
            answer = await self._route(method, path, request, runtime)
        except GatewayError as error:
            self._fail(response, error)
            return
        except runtime.store.db.errors as exc:
            # The database is down or broken: the client may try again later, not a bug here.
            self._fail(response, GatewayError(
                "api_error", f"the database {runtime.store.db.url} could not answer: {exc}",
                status=503))
            return
        response.send(200, orjson.dumps(answer), _JSON)

    def _fail(self, response: Response, error: GatewayError) -> None:
        response.send(error.status, orjson.dumps(self._codec.render_error(error)), _JSON)

    async def _route(self, method: str, path: str, request: Request,
                     runtime: ClaudeCode) -> dict[str, Any]:
        owner = self._owner_of(request)
        if path == SESSIONS:
            if method == "POST":
                return await self._create_session(runtime, _body(request), owner)
            if method == "GET":
                return await _listed(runtime.store.sessions, request, owner)
        elif path == PROJECTS:
            if method == "POST":
                return await self._create_project(runtime, _body(request), owner)
            if method == "GET":
                return await _listed(runtime.store.projects, request, owner)
        elif path.startswith(SESSIONS + "/"):
            return await self._one_session(runtime, method, path[len(SESSIONS) + 1:], owner,
                                           request)
        elif path.startswith(PROJECTS + "/"):
            return await self._one_project(runtime, method, path[len(PROJECTS) + 1:], owner)
        raise GatewayError("not_found", f"no route {method} {path}", status=404)

    async def _create_session(self, runtime: ClaudeCode, data: dict[str, Any],
                              owner: str | None) -> dict[str, Any]:
        model, project_id, session_id = data.get("model"), data.get("project_id"), \
            data.get("id")
        # Kept in the database with the session: printable (PostgreSQL refuses a NUL) and
        # short, as a model's name is.
        if model is not None and (not isinstance(model, str) or len(model) > MAX_MODEL
                                  or not model.isprintable()):
            raise invalid(f"`model` must be a string of at most {MAX_MODEL} printable "
                          "characters", "model")
        if project_id is not None:
            if not isinstance(project_id, str):
                raise invalid("`project_id` must be a string", "project_id")
            if not _may_be_id(project_id) or await runtime.store.project(
                    project_id, owner) is None:
                raise GatewayError("not_found", f"no project {project_id!r}",
                                   param="project_id")
        if session_id is not None:
            if not isinstance(session_id, str):
                raise invalid("`id` must be a string", "id")
            check_session_id(session_id)
        session = await runtime.create_session(session_id, owner, model or "", project_id)
        return {**session.public(), "messages": []}

    async def _one_session(self, runtime: ClaudeCode, method: str, session_id: str,
                           owner: str | None, request: Request) -> dict[str, Any]:
        session = await runtime.store.session(session_id, owner) if _may_be_id(session_id) \
            else None
        if session is None or method not in ("GET", "DELETE"):
            raise _not_found("session", session_id, method)
        if method == "GET":
            # A session's messages grow with every turn: the last `messages_limit`, and the
            # count of all, so that a client knows whether earlier ones were left out.
            limit = _limit(_query(request), "messages_limit")
            messages = await runtime.store.messages(session.id, limit)
            total = await runtime.store.count_messages(session.id)
            return {**session.public(), "messages": messages, "message_count": total,
                    "messages_has_more": total > len(messages)}
        await runtime.delete_session(session)
        for pool in self._pools():
            pool.drop(session.id)  # its idle process, if it has one
        return {"id": session.id, "object": "session", "deleted": True}

    async def _create_project(self, runtime: ClaudeCode, data: dict[str, Any],
                              owner: str | None) -> dict[str, Any]:
        name = check_name(data.get("name"))
        path = data.get("path")
        directory = allowed_path(path, runtime.roots) if path is not None else None
        return (await runtime.create_project(owner, name, directory)).public()

    async def _one_project(self, runtime: ClaudeCode, method: str, project_id: str,
                           owner: str | None) -> dict[str, Any]:
        project = await runtime.store.project(project_id, owner) if _may_be_id(project_id) \
            else None
        if project is None or method not in ("GET", "DELETE"):
            raise _not_found("project", project_id, method)
        if method == "GET":
            return project.public()
        await runtime.delete_project(project)
        return {"id": project.id, "object": "project", "deleted": True}


def _query(request: Request) -> dict[str, str]:
    try:
        return dict(parse_qsl(request.query, max_num_fields=MAX_QUERY_FIELDS))
    except ValueError:
        raise invalid(f"more than {MAX_QUERY_FIELDS} query parameters") from None


def _limit(query: dict[str, str], name: str) -> int:
    raw = query.get(name)
    if raw is None:
        return DEFAULT_LIMIT
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= value <= MAX_LIMIT:
        raise invalid(f"`{name}` must be a whole number from 1 to {MAX_LIMIT} (default "
                      f"{DEFAULT_LIMIT}), not {raw[:20]!r}", name)
    return value


def _page_query(request: Request) -> tuple[int, str | None]:
    """A list's `limit` and `after` (the last id of the page before; None: the first)."""
    query = _query(request)
    after = query.get("after")
    if after is not None and not _may_be_id(after):
        raise invalid(f"`after` must be an id from a list's `last_id`, not {after[:40]!r}",
                      "after")
    return _limit(query, "limit"), after


class _Row(Protocol):
    def public(self) -> dict[str, Any]: ...


# The store's page of an owner's rows: (owner, after, limit) -> rows, None for an unknown `after`.
_RowsOf = Callable[[str | None, str | None, int], Awaitable[Sequence[_Row] | None]]


async def _listed(rows_of: _RowsOf, request: Request, owner: str | None) -> dict[str, Any]:
    """A page of the owner's rows (sessions or projects), as the request's query asks."""
    limit, after = _page_query(request)
    rows = await rows_of(owner, after, limit + 1)
    if rows is None:  # the store found no row of the owner's named `after`
        raise invalid(f"`after`: no {str(after)[:MAX_ID]!r} of yours to page after (pass a "
                      "list's `last_id`)", "after")
    return _page([row.public() for row in rows], limit)


def _page(data: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """An OpenAI-style list; `data` holds one row past the page if there are more."""
    page = data[:limit]
    return {"object": "list", "data": page, "has_more": len(data) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}


def _may_be_id(value: str) -> bool:
    """Whether `value` could be a stored id: an id with a NUL would be PostgreSQL's error (a
    500) rather than an unknown id, and a 10,000-character one a needless query."""
    return 0 < len(value) <= MAX_ID and value.isprintable()


def _not_found(what: str, name: str, method: str) -> GatewayError:
    if method not in ("GET", "DELETE"):
        return GatewayError("invalid_request", f"{method} is not allowed here (GET or "
                            "DELETE)", status=405)
    # The id as the client sent it, cut short: an answer no larger than the request's worth.
    return GatewayError("not_found", f"no {what} {name[:MAX_ID]!r}", param="id")


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return data
