"""The dashboard at /ui: the package's static files (babelgate/dashboard/static/), served
from memory.

What this module promises:
- The files are read once, when the app is built; a request is a dict lookup. Only the
  files that exist in static/ have routes (`/ui` is index.html, `/ui/NAME` each file), so
  no path a client writes can reach anything else: there is no directory traversal to
  defend against, because no path is ever joined.
- Each answer carries its content type, an ETag (a hash of the file) and `cache-control:
  no-cache`: the browser keeps the file and asks again each time, getting a 304 while the
  package is unchanged and the new file after an upgrade. A strict Content-Security-Policy
  allows nothing but this origin, so the page cannot load anything from elsewhere.
- The files hold no data and are open to anyone; everything the page shows comes from the
  admin JSON API and /v1 endpoints, which need an admin key once keys exist.
- `GET /ui/api/key` says whether the key a request carries may read the dashboard, always
  as a 200 (`{"keys_required", "accepted", "admin", "name", "message"}`): a browser writes
  every 401 a page fetches to its console as an error, so the page asks here before it
  calls anything that would refuse it. It tells no more than a 401 would (any request shows
  whether a key is live), never repeats the key, and is open like the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files

import orjson

from babelgate.canonical import GatewayError

from .auth import Auth, presented_key
from .exchange import Headers, Response
from .http import Request

Handler = Callable[[Request, Response], Awaitable[None]]
PACKAGE = "babelgate.dashboard"
PREFIX = "/ui"
KEY_CHECK = "/ui/api/key"
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}
SECURITY_HEADERS: Headers = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

KEY_CHECK_HEADERS: Headers = [(b"content-type", b"application/json"),
                              (b"cache-control", b"no-store"), *SECURITY_HEADERS]


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    etag: bytes
    headers: Headers


def load_files() -> dict[str, StaticFile]:
    """URL path -> file, for every file of static/ whose type we serve."""
    found: dict[str, StaticFile] = {}
    for entry in files(PACKAGE).joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if not entry.is_file() or content_type is None:
            continue
        body = entry.read_bytes()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        headers = [(b"content-type", content_type), (b"cache-control", b"no-cache"),
                   (b"etag", etag), *SECURITY_HEADERS]
        found[f"{PREFIX}/{entry.name}"] = StaticFile(body, etag, headers)
    if f"{PREFIX}/index.html" in found:
        found[PREFIX] = found[f"{PREFIX}/index.html"]
    return found


class Dashboard:
    def __init__(self, auth: Auth) -> None:
        self.files = load_files()
        self.auth = auth

    def paths(self) -> frozenset[str]:
        return frozenset(self.files) | {KEY_CHECK}

    def routes(self) -> dict[tuple[str, str], Handler]:
        routes: dict[tuple[str, str], Handler] = {("GET", path): self.serve
                                                  for path in self.files}
        routes[("GET", KEY_CHECK)] = self.key_check
        return routes

    async def key_check(self, request: Request, response: Response) -> None:
        """GET /ui/api/key: may this request's key read the dashboard (see module doc)."""
        answer: dict[str, bool | str | None]
        if not self.auth.active:
            answer = {"keys_required": False, "accepted": True, "admin": True, "name": None,
                      "message": None}
        else:
            try:
                record = self.auth.check_key(presented_key(request))
            except GatewayError as refused:
                answer = {"keys_required": True, "accepted": False, "admin": False,
                          "name": None, "message": refused.message}
            else:
                answer = {"keys_required": True, "accepted": True, "admin": record.admin,
                          "name": record.name,
                          "message": None if record.admin else "not an admin key"}
        response.send(200, orjson.dumps(answer), KEY_CHECK_HEADERS)

    async def serve(self, request: Request, response: Response) -> None:
        path = request.path.rstrip("/") or PREFIX
        static = self.files[path]  # only paths of self.files have this route
        if _matches(request.headers.get("if-none-match"), static.etag):
            response.send(304, b"", [h for h in static.headers if h[0] != b"content-type"])
            return
        response.send(200, static.body, static.headers)


def _matches(if_none_match: str | None, etag: bytes) -> bool:
    if not if_none_match:
        return False
    wanted = etag.decode()
    return any(tag.strip().removeprefix("W/") in (wanted, "*")
               for tag in if_none_match.split(","))
