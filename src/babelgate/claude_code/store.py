"""Sessions and projects in the gateway's database (SQLite or PostgreSQL, migration m008).

What this module promises:
- Every read is scoped to an owner (the calling gateway key's id; None: the open gateway):
  another owner's session or project is not found.
- A turn's record (its two messages and the totals) is issued when the turn ends and not
  awaited: the client's answer does not wait on the disk. The database runs operations in
  the order they were issued, so the session's next turn, and any GET, read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from babelgate.canonical import Usage
from babelgate.storage.database import Database, Row

log = logging.getLogger("babelgate")

_OWNER = "owner IS NOT DISTINCT FROM ?"


@dataclass(slots=True, frozen=True)
class Project:
    id: str
    owner: str | None
    name: str
    path: str
    created: bool  # the gateway made the directory (and deletes it with the project)
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "object": "project", "name": self.name, "path": self.path,
                "created_by_gateway": self.created, "created_at": int(self.created_at)}


@dataclass(slots=True, frozen=True)
class Session:
    id: str
    owner: str | None
    cli_session: str  # the CLI's own session id (--session-id, then --resume)
    model: str
    project_id: str | None
    turns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "object": "session", "model": self.model,
                "project_id": self.project_id, "turns": self.turns,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_cost_usd": round(self.cost_usd, 6),
                "created_at": int(self.created_at), "updated_at": int(self.updated_at)}


_SESSION_COLUMNS = ("id, owner, cli_session, model, project_id, turns, input_tokens, "
                    "output_tokens, cost_usd, created_at, updated_at")
_PROJECT_COLUMNS = "id, owner, name, path, created, created_at"


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ projects
    async def add_project(self, project: Project) -> None:
        await self.db.execute(
            f"INSERT INTO claude_projects ({_PROJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            project.id, project.owner, project.name, project.path, int(project.created),
            project.created_at)

    async def project(self, project_id: str, owner: str | None) -> Project | None:
        row = await self.db.fetchone(
            f"SELECT {_PROJECT_COLUMNS} FROM claude_projects WHERE id = ? AND {_OWNER}",
            project_id, owner)
        return _project(row) if row is not None else None

    async def projects(self, owner: str | None, after: str | None = None,
                       limit: int = 1000) -> list[Project] | None:
        """Up to `limit` of the owner's projects, oldest first, those after the project
        `after` (None: that project is not the owner's)."""
        rows = await self._page("claude_projects", _PROJECT_COLUMNS, owner, after, limit)
        return None if rows is None else [_project(row) for row in rows]

    async def count_projects(self, owner: str | None) -> int:
        return await self._count("claude_projects", owner)

    async def delete_project(self, project_id: str) -> None:
        """The project's row; its sessions stay, without a project."""
        await self.db.execute("UPDATE claude_sessions SET project_id = NULL "
                              "WHERE project_id = ?", project_id)
        await self.db.execute("DELETE FROM claude_projects WHERE id = ?", project_id)

    # ------------------------------------------------------------------ sessions
    async def add_session(self, session: Session) -> None:
        await self.db.execute(
            f"INSERT INTO claude_sessions ({_SESSION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            session.id, session.owner, session.cli_session, session.model,
            session.project_id, session.turns, session.input_tokens, session.output_tokens,
            session.cost_usd, session.created_at, session.updated_at)

    async def session_row(self, session_id: str) -> Session | None:
        """The session whoever owns it (to tell a taken id from a free one)."""
        row = await self.db.fetchone(
            f"SELECT {_SESSION_COLUMNS} FROM claude_sessions WHERE id = ?", session_id)
        return _session(row) if row is not None else None

    async def session(self, session_id: str, owner: str | None) -> Session | None:
        found = await self.session_row(session_id)
        return found if found is not None and found.owner == owner else None

    async def sessions(self, owner: str | None, after: str | None = None,
                       limit: int = 1000) -> list[Session] | None:
        """As projects(), for sessions."""
        rows = await self._page("claude_sessions", _SESSION_COLUMNS, owner, after, limit)
        return None if rows is None else [_session(row) for row in rows]

    async def count_owned_sessions(self, owner: str | None) -> int:
        return await self._count("claude_sessions", owner)

    async def _page(self, table: str, columns: str, owner: str | None, after: str | None,
                    limit: int) -> list[Row] | None:
        # A cursor by position (created_at, id) rather than an offset: a page costs the same
        # however deep it is, and rows added or deleted meanwhile do not shift the pages.
        if after is None:
            return await self.db.fetch(
                f"SELECT {columns} FROM {table} WHERE {_OWNER} ORDER BY created_at, id "
                "LIMIT ?", owner, limit)
        mark = await self.db.fetchone(
            f"SELECT created_at FROM {table} WHERE id = ? AND {_OWNER}", after, owner)
        if mark is None:
            return None
        return await self.db.fetch(
            f"SELECT {columns} FROM {table} WHERE {_OWNER} AND (created_at > ? OR "
            "(created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT ?",
            owner, mark[0], mark[0], after, limit)

    async def _count(self, table: str, owner: str | None) -> int:
        row = await self.db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE {_OWNER}", owner)
        return int(row[0]) if row is not None else 0

    async def count_sessions(self) -> int:
        if not self.db.exists():
            return 0
        row = await self.db.fetchone("SELECT COUNT(*) FROM claude_sessions")
        return int(row[0]) if row is not None else 0

    async def messages(self, session_id: str, limit: int = 1_000_000) -> list[dict[str, Any]]:
        """The session's last `limit` messages, oldest first."""
        rows = await self.db.fetch(
            "SELECT role, content, created_at FROM claude_session_messages "
            "WHERE session_id = ? ORDER BY seq DESC LIMIT ?", session_id, limit)
        return [{"role": role, "content": content, "created_at": int(at)}
                for role, content, at in reversed(rows)]

    async def count_messages(self, session_id: str) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM claude_session_messages "
                                     "WHERE session_id = ?", session_id)
        return int(row[0]) if row is not None else 0

    async def delete_session(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM claude_session_messages WHERE session_id = ?",
                              session_id)
        await self.db.execute("DELETE FROM claude_sessions WHERE id = ?", session_id)

    def record_turn(self, session: Session, user: str, answer: str, model: str,
                    usage: Usage, cost: float) -> None:
        """Add one turn to the session (issued now, written in the background)."""
        now = time.time()
        seq = session.turns * 2
        futures: list[asyncio.Future[Any]] = [
            self.db.executemany(
                "INSERT INTO claude_session_messages (session_id, seq, role, content, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                [(session.id, seq, "user", user, now), (session.id, seq + 1, "assistant",
                                                          answer, now)]),
            self.db.execute(
                "UPDATE claude_sessions SET turns = turns + 1, model = ?, "
                "input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
                "cost_usd = cost_usd + ?, updated_at = ? WHERE id = ?",
                model, usage.prompt_tokens, usage.output_tokens, cost, now, session.id),
        ]
        for future in futures:
            future.add_done_callback(_log_failure)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("claude-code: a session's turn was not stored: %s", future.exception())


def _project(row: Row) -> Project:
    pid, owner, name, path, created, at = row
    return Project(pid, owner, name, path, bool(created), float(at))


def _session(row: Row) -> Session:
    sid, owner, cli, model, project, turns, inp, out, cost, created, updated = row
    return Session(sid, owner, cli, model, project, int(turns), int(inp), int(out),
                   float(cost), float(created), float(updated))
