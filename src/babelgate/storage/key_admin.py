"""Key administration shared by `babelgate keys` and the admin JSON API (/admin/api/keys).

What this module promises:
- `key_listing(db, revoked=..., now=...)` is the one listing both show: each key's public
  fields (never its hash) and its spend today and this month (null until the usage table
  exists: unknown, not zero). `keys list --json` prints exactly this.
- `key_options(data, now)` reads a JSON object naming a key's settings, with the same names
  and meanings as `keys create`'s flags (`models`, `rpm`, `tpm`, `concurrency`, `budget`,
  `per`, `expires`, `admin`), and raises `ValueError` with a message naming the field for
  anything it cannot use. `parse_expiry` reads `--expires` / `expires` for both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .database import Database
from .keys import Period, list_keys
from .spend import Spend, spend_by_key

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_NAME = 100  # characters: a name is for people reading a listing
MAX_WHOLE = 2**31 - 1  # rpm, tpm, concurrency: what every database's integer column holds


def parse_expiry(text: str, now: float) -> float:
    """When a key given `--expires text` at `now` expires (unix time); ValueError when the
    text is neither a duration (90d, 12h, 30m, 2w) nor a date or ISO time."""
    match = _DURATION.match(text.strip().lower())
    if match:
        return _not_too_far(text, now + float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:  # a date: valid through that whole day (UTC)
        if day == dt.date.max:  # its end is past what a datetime holds (was a 500)
            raise ValueError(_TOO_FAR.format(text=text))
        end = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=1)
        return end.timestamp()
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a duration or date: {text!r} (use 90d, 12h, 30m, 2w or 2026-12-31)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return _not_too_far(text, when.timestamp())


# The end of 9999-12-31 UTC: a later expiry (99999999999d) cannot be shown as a date by the
# listings, the dashboard or `keys list`; leaving `expires` out is how a key never expires.
MAX_EXPIRY = 253402300800.0
_TOO_FAR = "{text!r} reaches past 9999-12-31; leave `expires` out for a key that never expires"


def _not_too_far(text: str, when: float) -> float:
    if not when <= MAX_EXPIRY:  # `not <=`: inf too
        raise ValueError(_TOO_FAR.format(text=text))
    return when


def spend_json(spend: Spend | None) -> dict[str, Any]:
    if spend is None:
        return {"spend_today": None, "spend_month": None}
    return {"spend_today": spend.today, "spend_month": spend.month}


async def key_listing(db: Database, *, revoked: bool, now: float) -> list[dict[str, Any]]:
    records = await list_keys(db, revoked=revoked)
    spend = await spend_by_key(db, [r.id for r in records], now)
    return [{**r.public(), **spend_json(spend.get(r.id))} for r in records]


@dataclass(frozen=True, slots=True)
class KeyOptions:
    """A new key's settings, as `create_key` takes them."""

    name: str
    scopes: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    budget: float | None = None
    budget_period: Period = "day"
    expires_at: float | None = None
    admin: bool = False


def _positive_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    # At most MAX_WHOLE: a larger one overflows the database's integer column, which would be
    # the database's error rather than the client's.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_WHOLE:
        raise ValueError(f"`{name}` must be a positive whole number (at most {MAX_WHOLE})")
    return value


def _scopes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # "claude-*,gpt-5*", as the command line writes it
        value = value.split(",")
    # No NUL: PostgreSQL refuses one in text (the database's error, not the client's).
    if not isinstance(value, list) or not all(isinstance(g, str) and "\x00" not in g
                                              for g in value):
        raise ValueError("`models` must be a list of model globs (or one comma-separated "
                         "string)")
    return tuple(glob.strip() for glob in value if glob.strip())


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("`name` is required: a name for the key")
    if len(value) > MAX_NAME:
        raise ValueError(f"`name` is longer than {MAX_NAME} characters")
    if not value.isprintable():  # a NUL is PostgreSQL's error; a newline breaks listings
        raise ValueError("`name` must be printable characters")
    return value.strip()


def _budget(data: Mapping[str, Any]) -> tuple[float | None, Period]:
    budget, per = data.get("budget"), data.get("per")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                               or not budget > 0):
        raise ValueError("`budget` must be a positive number of USD")
    if per is not None and per not in ("day", "month"):
        raise ValueError("`per` must be \"day\" or \"month\"")
    if per is not None and budget is None:
        raise ValueError("`per` needs `budget`")
    return (float(budget) if budget is not None else None), ("month" if per == "month"
                                                              else "day")


def _expires(value: Any, now: float) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("`expires` must be a duration (90d, 12h) or a date (2026-12-31)")
    try:
        when = parse_expiry(value, now)
    except ValueError as exc:
        raise ValueError(f"`expires`: {exc}") from None
    if when <= now:
        raise ValueError(f"`expires`: {value!r} is already past")
    return when


def key_options(data: Mapping[str, Any], now: float) -> KeyOptions:
    """A new key's settings from a JSON object (see the module docstring)."""
    admin = data.get("admin", False)
    if not isinstance(admin, bool):
        raise ValueError("`admin` must be true or false")
    budget, per = _budget(data)
    return KeyOptions(
        name=_name(data.get("name")), scopes=_scopes(data.get("models")),
        rpm=_positive_int(data, "rpm"), tpm=_positive_int(data, "tpm"),
        concurrency=_positive_int(data, "concurrency"), budget=budget, budget_period=per,
        expires_at=_expires(data.get("expires"), now), admin=admin,
    )
