"""Gateway keys on the request path: who is calling, and may they.

What this module promises:
- While no key was ever created (and `auth.required` is false) the gateway is open: `active`
  is False and nothing is checked. Once a key exists, every request but those to
  `OPEN_PATHS` must carry a live one, as `x-api-key`, `Authorization: Bearer`,
  `x-goog-api-key`, or `?key=` on Gemini paths. Revoking every key does not open the
  gateway again: revoking the last key of a team must not let everyone in.
- `authenticate(request)` is one SHA-256 and one dict lookup (then a constant-time compare
  of the hash found): keys live in memory as frozen `KeyRecord`s, keyed by hash. The
  record of a live key that was found is remembered by the key presented (`DIGESTS_KEPT`
  of them, forgotten whenever the keys are read again), so a client's later requests are
  one dict lookup and the expiry check (the SHA-256 is ~3 µs of the ~15 µs a request's
  operations may cost); a key that matches nothing, or a revoked one, is never
  remembered, so guesses cannot fill the table. A missing,
  unknown, revoked or expired key is a 401 (`authentication`); a key that is not an admin
  key on an admin path is a 403 (`permission`). Messages never repeat the key.
- The keys in memory are refreshed in the background: every `refresh_every` seconds (0.5 by
  default) one cheap query (`keys_version`) asks whether anything changed, and only then is
  the table read again. A key created or revoked by `babelgate keys`, or by another
  instance sharing the database, is obeyed within about that long.
- `auth.required: true` with no key makes `start()` fail (`AuthRequired`), so the gateway
  never starts open by mistake.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from babelgate.canonical import GatewayError
from babelgate.storage.database import Database
from babelgate.storage.keys import KeyRecord, hash_key, keys_version, list_keys

from .http import Request
from .periodic import Periodic

log = logging.getLogger("babelgate")

# Open to anyone even when keys exist: load balancers' health checks.
OPEN_PATHS = frozenset({"/health", "/"})
ADMIN_PREFIXES = ("/admin/", "/admin")
GEMINI_PREFIXES = ("/v1beta/", "/v1alpha/", "/v1/models/")  # as server/gemini_api.py
# What every path needs_admin names starts with.
MAYBE_ADMIN = ("/admin", "/v1/test-connection", "/v1/quota")
DIGESTS_KEPT = 1024  # presented keys remembered; far more than a team's keys


class AuthRequired(Exception):
    """`auth.required` is set and no gateway key exists."""


def needs_admin(method: str, path: str) -> bool:
    """Admin paths: /admin/*, /v1/test-connection (it runs checks against every upstream),
    and every write to /v1/quota (its reset, marks)."""
    if path.startswith(ADMIN_PREFIXES) or path == "/v1/test-connection":
        return True
    return path.startswith("/v1/quota") and method not in ("GET", "HEAD")


def presented_key(request: Request) -> str | None:
    """The gateway key a request carries, wherever its client puts one."""
    headers = request.headers
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-goog-api-key")
    if key:
        return key
    if request.query and request.path.startswith(GEMINI_PREFIXES):
        for name, value in parse_qsl(request.query):
            if name == "key" and value:
                return value
    return None


class Auth:
    def __init__(
        self, db: Database, *, required: bool = False, refresh_every: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.required = required
        self.refresh_every = refresh_every
        self.clock = clock
        self.keys: dict[str, KeyRecord] = {}  # hash -> record, revoked ones included
        self.live = False  # a key that is not revoked exists (what auth.required asks)
        self.active = required  # requests must carry a key
        self._version: tuple[int, int] | None = None
        # Presented key -> its live record, for keys found in `keys` since they were last
        # read: a later request of the same client is one dict lookup (and the expiry). A
        # refresh that reads the keys again starts it empty, so a revoked or changed key is
        # looked up anew.
        self._found: dict[str, KeyRecord] = {}
        # Any failure of a refresh keeps the keys we have (the database is away) and is
        # logged each time.
        self._refresher = Periodic(self.refresh, refresh_every, errors=(Exception,),
                                   failed=self._refresh_failed)

    async def start(self) -> None:
        await self.refresh()
        if self.required and not self.live:
            raise AuthRequired(
                "auth.required is true but no gateway key exists in "
                f"{self.db.url}; create one with `babelgate keys create NAME` "
                "(with the same --config), then start again")
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> bool:
        """Read the keys again if they changed; True when they did."""
        if not self.db.exists():  # a SQLite file not yet created: no key
            return False
        version = await keys_version(self.db)
        if version == self._version:
            return False
        records = await list_keys(self.db, revoked=True)
        # One assignment each: a request sees the old keys or the new ones, never half.
        self.keys = {record.hash: record for record in records}
        self._found = {}
        self.live = any(record.revoked_at is None for record in records)
        was, self.active = self.active, self.required or bool(records)
        self._version = version
        if self.active and not was:
            log.info("gateway keys required from now on")
        return True

    def _refresh_failed(self, exc: BaseException, first: bool) -> None:
        log.warning("could not refresh gateway keys from %s: %s", self.db.url, exc)

    def authenticate(self, request: Request) -> KeyRecord:
        """The key `request` is made with; raises the 401 or 403 its client should get."""
        # x-api-key first, without a call: what Claude Code and the Anthropic SDKs send.
        record = self.check_key(request.headers.get("x-api-key") or presented_key(request))
        path = request.path
        # One startswith rules out every path needs_admin could name (nearly all requests).
        if (not record.admin and path.startswith(MAYBE_ADMIN)
                and needs_admin(request.method, path)):
            raise GatewayError("permission", f"{request.path} needs an admin key "
                               "(babelgate keys create NAME --admin)")
        return record

    def check_key(self, key: str | None) -> KeyRecord:
        """The live key record of `key`; raises the 401 a client without one gets."""
        if key is None:
            raise GatewayError("authentication", "this gateway needs an API key: send your "
                               "babelgate key as x-api-key or Authorization: Bearer")
        record = self._found.get(key)
        if record is None:
            record = self._look_up(key)
        expires_at = record.expires_at
        if expires_at is not None and self.clock() >= expires_at:
            raise GatewayError("authentication", f"API key '{record.name}' has expired")
        return record

    def _look_up(self, key: str) -> KeyRecord:
        """The record of a key not found before (since the keys were last read): one
        SHA-256, then the live record is remembered."""
        digest = hash_key(key)
        record = self.keys.get(digest)
        # The dict compared hashes already; compare again in constant time so that no
        # timing of the lookup can tell a client how close a guess came.
        if record is None or not hmac.compare_digest(record.hash, digest):
            raise GatewayError("authentication", "invalid API key")
        if record.revoked_at is not None:
            raise GatewayError("authentication", f"API key '{record.name}' was revoked")
        found = self._found
        if len(found) >= DIGESTS_KEPT:
            found.clear()
        found[key] = record
        return record


def check_scope(record: KeyRecord | None, model: str) -> None:
    """Raises the 403 for a model outside the key's scopes."""
    if record is not None and not record.allows(model):
        raise GatewayError(
            "permission",
            f"API key '{record.name}' may not use model '{model}' "
            f"(its models: {', '.join(record.scopes)})",
        )
