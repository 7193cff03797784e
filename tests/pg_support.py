"""A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432, trust
auth, as user postgres or root: scripts/services.sh makes sure one runs), created empty as
`babelgate_test_<random>` and dropped afterwards, whatever the test did."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

HOST, PORT = "127.0.0.1", 5432
USERS = ("postgres", "root")


async def admin() -> tuple[asyncpg.Connection, str]:
    """A connection to the server's maintenance database, and the user it is made as."""
    failure: Exception | None = None
    for user in USERS:
        for database in ("postgres", "test"):
            try:
                conn = await asyncpg.connect(host=HOST, port=PORT, user=user,
                                             database=database, timeout=10)
            except (OSError, asyncpg.PostgresError) as exc:
                failure = exc
                continue
            return conn, user
    raise RuntimeError(f"no PostgreSQL on {HOST}:{PORT} (run scripts/services.sh): {failure}")


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped on exit."""
    conn, user = await admin()
    name = f"babelgate_test_{secrets.token_hex(6)}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{HOST}:{PORT}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
