"""Gateway keys in the database: create, list, revoke, and what the server loads.

What this module promises:
- A key is `bg-` + 43 URL-safe characters (256 random bits). Only its SHA-256 (`hash_key`)
  and its first characters (`prefix`, for listings) are stored; `create_key` returns the
  key itself once, and nothing here can give it back later.
- A key's `id` is random and stable: it names the caller (owner of stored state, usage
  rows) and survives nothing but the key itself.
- A name is unique among the keys not revoked (`DuplicateKeyName` otherwise).
- Every change raises the table's `version`, so an instance that polls `keys_version()`
  (one cheap query) learns of a new or revoked key without reading the table.
- `KeyRecord` is a frozen value, safe to share between requests; `allows(model)` is the
  scope check, its globs compiled once when the record is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Literal

import orjson

from .database import Database, Row

KEY_PREFIX = "bg-"
SHOWN = 10  # characters of a key kept for listings: "bg-" and 7 of its random ones
Period = Literal["day", "month"]


class DuplicateKeyName(Exception):
    """A key that is not revoked already has that name."""


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key. A key is 256 random bits, so a plain SHA-256 is enough:
    there is no dictionary to try, which is what salts and slow hashes defend against."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _scope_pattern(scopes: tuple[str, ...]) -> re.Pattern[str] | None:
    if not scopes:
        return None
    return re.compile("|".join(f"(?:{translate(glob)})" for glob in scopes))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    hash: str
    prefix: str
    scopes: tuple[str, ...] = ()  # model globs; empty: every model
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    budget: float | None = None  # USD per `budget_period`
    budget_period: Period | None = None
    expires_at: float | None = None  # unix time
    admin: bool = False
    created_at: float = 0.0
    revoked_at: float | None = None
    _scope: re.Pattern[str] | None = field(default=None, repr=False, compare=False)
    # Whether any limit is set (limits/permit.py `has_limits`), decided once per record: the
    # request path asks on every request with a key.
    limited: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_scope", _scope_pattern(self.scopes))
        object.__setattr__(self, "limited", bool(
            self.rpm or self.tpm or self.concurrency or self.budget is not None))

    def allows(self, model: str) -> bool:
        return self._scope is None or self._scope.fullmatch(model) is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """What `keys list --json` shows: everything but the hash."""
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "models": list(self.scopes),
            "rpm": self.rpm, "tpm": self.tpm, "concurrency": self.concurrency,
            "budget": self.budget, "budget_period": self.budget_period,
            "expires_at": self.expires_at, "admin": self.admin, "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


_COLUMNS = ("id, name, hash, prefix, scopes, rpm, tpm, concurrency, budget, budget_period, "
            "expires_at, admin, created_at, revoked_at")


def _record(row: Row) -> KeyRecord:
    return KeyRecord(
        id=row[0], name=row[1], hash=row[2], prefix=row[3],
        scopes=tuple(orjson.loads(row[4])), rpm=row[5], tpm=row[6], concurrency=row[7],
        budget=row[8], budget_period=row[9], expires_at=row[10], admin=bool(row[11]),
        created_at=row[12], revoked_at=row[13],
    )


# The next version: one more than any so far, computed in the same statement that changes
# the table.
_NEXT_VERSION = "(SELECT COALESCE(MAX(version), 0) + 1 FROM keys)"


async def create_key(
    db: Database, name: str, *, now: float, scopes: Sequence[str] = (),
    rpm: int | None = None, tpm: int | None = None, concurrency: int | None = None,
    budget: float | None = None, budget_period: Period | None = None,
    expires_at: float | None = None, admin: bool = False,
) -> tuple[KeyRecord, str]:
    """A new key named `name`: its record and the key itself (shown once)."""
    if await db.fetchone(
            "SELECT 1 FROM keys WHERE name = ? AND revoked_at IS NULL", name) is not None:
        raise DuplicateKeyName(name)
    key = generate_key()
    record = KeyRecord(
        id="key_" + secrets.token_hex(8), name=name, hash=hash_key(key), prefix=key[:SHOWN],
        scopes=tuple(scopes), rpm=rpm, tpm=tpm, concurrency=concurrency, budget=budget,
        budget_period=budget_period if budget is not None else None,
        expires_at=expires_at, admin=admin, created_at=now,
    )
    try:
        await db.execute(
            f"INSERT INTO keys ({_COLUMNS}, version) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {_NEXT_VERSION})",
            record.id, record.name, record.hash, record.prefix,
            orjson.dumps(list(record.scopes)).decode(), record.rpm, record.tpm,
            record.concurrency, record.budget, record.budget_period, record.expires_at,
            int(record.admin), record.created_at, None,
        )
    except db.integrity_errors:  # another process created the same name meanwhile
        raise DuplicateKeyName(name) from None
    return record, key


async def revoke_key(db: Database, name: str, *, now: float) -> bool:
    """Revoke the live key named `name`; False when there is none."""
    changed = await db.execute(
        f"UPDATE keys SET revoked_at = ?, version = {_NEXT_VERSION} "
        "WHERE name = ? AND revoked_at IS NULL",
        now, name,
    )
    return changed > 0


async def list_keys(db: Database, *, revoked: bool = False) -> list[KeyRecord]:
    """Keys by name; revoked ones too with `revoked`."""
    if not db.exists():
        return []
    where = "" if revoked else " WHERE revoked_at IS NULL"
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM keys{where} ORDER BY name, created_at")
    return [_record(row) for row in rows]


async def keys_version(db: Database) -> tuple[int, int]:
    """(number of keys, highest version): changes whenever any key is created or revoked."""
    row = await db.fetchone("SELECT COUNT(*), COALESCE(MAX(version), 0) FROM keys")
    assert row is not None
    return int(row[0]), int(row[1])
