"""`babelgate usage`: the usage rows of a period, summed by day, model, key or provider.

What this module promises:
- `summarise(rows, by)` counts requests (final records: a request that fell back is one
  request), tokens of each kind and errors (failed attempts, fallbacks included; a stream
  the client abandoned is not an error) per group, and sums cost over the rows whose price is
  known.
- Cost is never shown as zero when it is unknown: a group whose rows used tokens of a model
  without a price says so (`unpriced` requests), and those models are listed apart with what
  they used.
- `parse_since("7d")` reads a period (m, h, d, w) or a date (YYYY-MM-DD, local midnight).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

Row = Mapping[str, Any]
GROUPS = ("day", "model", "key", "provider")
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
          "reasoning_tokens")
NO_KEY = "(no key)"
_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """Unix seconds for `--since`: `30m`, `24h`, `7d`, `2w`, or a date `2026-12-01`."""
    now = time.time() if now is None else now
    match = _PERIOD.match(text.strip())
    if match:
        # No record predates 1970: a longer period (up to `99999...d`, whose start no clock
        # can show) means "everything", rather than a time that overflows where it is shown.
        return max(0.0, now - float(match.group(1)) * _UNITS[match.group(2)])
    try:
        day = datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: use a period such as 7d, 24h, 30m, 2w, or a date "
                         "such as 2026-12-01") from None
    # The same for a date before 1970 (year 1 in local time can be out of range).
    return max(0.0, datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp()
               if day.year < 1970 else datetime.datetime.combine(day, datetime.time()).timestamp())


def _day(row: Row) -> str:
    return datetime.datetime.fromtimestamp(row["time"]).date().isoformat()


NO_UPSTREAM = "(refused)"  # a request refused before any upstream was tried


def _model(row: Row) -> str:
    return f"{row['provider']}/{row['target_model']}" if row["provider"] else NO_UPSTREAM


KEYS: dict[str, Callable[[Row], str]] = {
    "day": _day,
    "model": _model,
    "key": lambda row: row["key"] or NO_KEY,
    "provider": lambda row: row["provider"] or NO_UPSTREAM,
}


@dataclass
class Group:
    name: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # of the priced rows; None: none of them was priced
    unpriced: int = 0  # requests that used tokens of a model without a price
    errors: int = 0
    estimated: int = 0  # attempts whose tokens are partly babelgate's estimate (no usage)

    def add(self, row: Row) -> None:
        if row["final"]:
            self.requests += 1
        for name in TOKENS:
            setattr(self, name, getattr(self, name) + (row[name] or 0))
        if row["error_kind"] is not None and row["error_kind"] != "cancelled":
            self.errors += 1
        if row["cost"] is not None:
            self.cost = (self.cost or 0.0) + row["cost"]
        elif used(row):
            self.unpriced += 1
        if row.get("estimated"):
            self.estimated += 1


def used(row: Row) -> bool:
    return any(row[name] for name in TOKENS)


@dataclass
class Summary:
    by: str
    since: float
    groups: list[Group]
    total: Group
    unpriced_models: list[Group] = field(default_factory=list)  # by provider/model

    def as_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": datetime.datetime.fromtimestamp(self.since).isoformat(timespec="seconds"),
            "groups": [asdict(g) for g in self.groups],
            "total": asdict(self.total),
            "unpriced_models": [asdict(g) for g in self.unpriced_models],
        }


def summarise(rows: Iterable[Row], by: str, since: float) -> Summary:
    key = KEYS[by]
    groups: dict[str, Group] = {}
    total = Group("total")
    unpriced: dict[str, Group] = {}
    for row in rows:
        name = key(row)
        group = groups.get(name)
        if group is None:
            group = groups[name] = Group(name)
        group.add(row)
        total.add(row)
        if row["cost"] is None and used(row):
            model = f"{row['provider']}/{row['target_model']}"
            unpriced.setdefault(model, Group(model)).add(row)
    ordered = sorted(groups.values(), key=lambda g: g.name)
    if by != "day":  # the costliest first; days in order
        ordered.sort(key=lambda g: (g.cost or 0.0, g.requests), reverse=True)
    return Summary(by, since, ordered, total, sorted(unpriced.values(), key=lambda g: g.name))


CSV_FIELDS = ("name", "requests", *TOKENS, "cost", "unpriced", "errors", "estimated")
