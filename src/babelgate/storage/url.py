"""Where the gateway's database lives: a storage URL, parsed once at start-up.

What this module promises:
- `StorageURL.parse(text)` accepts `sqlite://PATH` and `postgresql://...` (`postgres://` too)
  and raises ValueError with a message that says what is accepted; nothing else.
- For SQLite, `sqlite:///var/lib/bg.db` is the absolute path /var/lib/bg.db,
  `sqlite:///~/bg.db` is under the home directory, and `sqlite://bg.db` (two slashes) is
  relative to the working directory.
- `str(url)` / `url.display` never shows a password: it is what logs and messages print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Dialect = Literal["sqlite", "postgresql"]


def default_db_path(env: dict[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/babelgate/babelgate.db`, else `~/.local/share/babelgate/babelgate.db`."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "babelgate" / "babelgate.db"


@dataclass(frozen=True, slots=True)
class StorageURL:
    dialect: Dialect
    path: Path | None = None  # SQLite: the database file
    dsn: str | None = None  # PostgreSQL: the URL as given (passed to the driver)

    @classmethod
    def parse(cls, text: str) -> StorageURL:
        if text.startswith("sqlite://"):
            return cls.sqlite(_sqlite_path(text.removeprefix("sqlite://")))
        if text.startswith(("postgresql://", "postgres://")):
            if not urlsplit(text).hostname and "host=" not in text:
                raise ValueError("a postgresql:// URL needs a host, e.g. "
                                 "postgresql://user@127.0.0.1:5432/babelgate")
            return cls("postgresql", dsn=text)
        raise ValueError("use sqlite:///path/to/file.db or postgresql://user@host/db")

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str]) -> StorageURL:
        return cls("sqlite", path=Path(path).expanduser())

    @classmethod
    def from_settings(cls, url: str | None, path: str | None) -> StorageURL:
        """`storage.url`, else `storage.path` as a SQLite file, else the default file."""
        if url:
            return cls.parse(url)
        return cls.sqlite(path or default_db_path())

    @property
    def display(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite://{self.path}"
        parts = urlsplit(self.dsn or "")
        netloc = parts.netloc
        if parts.password is not None:  # keep the user, hide the password
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __str__(self) -> str:
        return self.display


def _sqlite_path(rest: str) -> str:
    if rest.startswith("/~"):
        return rest[1:]
    if rest.startswith("//"):  # sqlite:////abs: SQLAlchemy's spelling of an absolute path
        return rest[1:]
    if not rest:
        raise ValueError("a sqlite:// URL needs a file path, e.g. sqlite:///var/lib/bg.db")
    return rest
