"""One request's turn on a claude-code provider: session, process, events.

`ClaudeCode` is the app's one runtime (it outlives configurations, like the database): the
store of sessions and projects, the directories, and which session a turn is running in.
`turn()` gives the canonical events of one turn:
- without a session, a one-off: a new process that keeps nothing (`--no-session-persistence`)
  gets the whole history in one message, and ends after its answer;
- in a session, the session's idle process (or a new one: `--session-id` for its first turn,
  `--resume` after) gets only the new turn (a first turn, any history the request carries);
  the process stays for the next one. Turns of one
  session run one at a time. An id the gateway has not seen starts a session under it.
A turn that ends early (the client left, the CLI went silent, an error) kills its process:
the session resumes from the CLI's transcript next time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from babelgate.canonical import Event, GatewayError, Request, TextDelta
from babelgate.config import ClaudeCodeConfig
from babelgate.storage.database import Database

from .events import TurnReader
from .process import CliProcess
from .projects import resolved_roots
from .prompt import new_turn, system_prompt, user_line, whole_conversation
from .provider import ClaudeCodeProvider
from .store import Project, Session, Store

log = logging.getLogger("babelgate")

MAX_SESSION_ID = 200
# What the CLI says when --session-id names a session it has, or --resume one it has not.
_TAKEN = "already in use"
_UNKNOWN = "No conversation found"


@dataclass(slots=True)
class TurnCost:
    """What a turn cost, in USD, as the CLI reported it (None until its `result` line)."""

    usd: float | None = None


def _check_cap(count: int, cap: int, what: str, field: str) -> None:
    if count >= cap:
        raise GatewayError(
            "invalid_request", f"this gateway key (or, without keys, this gateway) has "
            f"{count} {what}, the most allowed (claude_code.{field}: {cap}): delete some "
            f"(DELETE /v1/{what}/{{id}}) or ask the operator to raise claude_code.{field}",
            status=409)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class ClaudeCode:
    def __init__(self, db: Database, config: ClaudeCodeConfig, data_dir: Path) -> None:
        self.store = Store(db)
        self.roots = resolved_roots(config.roots)
        self.projects_dir = Path(config.projects_dir).expanduser() if config.projects_dir \
            else data_dir / "projects"
        # Where sessions without a project and one-off requests run.
        self.default_dir = self.projects_dir / "_default"
        self.max_sessions = config.max_sessions
        self.max_projects = config.max_projects
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._sessions = 0  # a count for /health, read at start and kept as they change

    async def start(self) -> None:
        try:
            self._sessions = await self.store.count_sessions()
        except Exception:  # a store without the table yet (SQLite never written): none
            self._sessions = 0

    @property
    def session_count(self) -> int:
        return self._sessions

    # ------------------------------------------------------------------ turns
    async def turn(self, provider: ClaudeCodeProvider, request: Request, model: str,
                   session_id: str | None, owner: str | None,
                   cost: TurnCost | None = None) -> AsyncGenerator[Event, None]:
        """The canonical events of one turn (see the module docstring); `cost` gets what
        the CLI says the turn cost."""
        cost = cost if cost is not None else TurnCost()
        if session_id is None:
            async with aclosing(self._one_off(provider, request, model, cost)) as events:
                async for event in events:
                    yield event
            return
        lock = self._take_lock(session_id)
        try:
            async with lock, aclosing(self._session_turn(
                    provider, request, model, session_id, owner, cost)) as events:
                async for event in events:
                    yield event
        finally:
            self._drop_lock(session_id)

    async def _one_off(self, provider: ClaudeCodeProvider, request: Request,
                       model: str, cost: TurnCost) -> AsyncGenerator[Event, None]:
        line = user_line(whole_conversation(request))
        argv = provider.command(model, session=None, resume=False,
                                system=system_prompt(request))
        cwd = await self._ensure(self.default_dir)
        process = await provider.pool.acquire(None, model, lambda: CliProcess.start(
            argv, provider.env, cwd, None, model, provider.binary_name))
        done = False
        reader = TurnReader(request.model, provider.chunking)
        try:
            async with aclosing(_run(provider, process, line, reader)) as events:
                async for event in events:
                    yield event
            done = True
        finally:
            provider.pool.release(process, keep=done)
            if reader.result is not None:
                cost.usd = reader.result.cost_usd

    async def _session_turn(self, provider: ClaudeCodeProvider, request: Request, model: str,
                            session_id: str, owner: str | None,
                            cost: TurnCost) -> AsyncGenerator[Event, None]:
        session = await self._session_for(session_id, owner, request.model)
        cwd = await self._cwd(session)
        # A session's first turn may come with history the CLI has not seen (a client that
        # names its own session ids, a conversation begun on another route): it goes in as
        # a one-off's does. After that the CLI has it, and only the new turn is sent.
        turn = new_turn(request)
        line = user_line(turn if session.turns else whole_conversation(request))
        system = system_prompt(request)
        resume = session.turns > 0
        for attempt in range(2):
            argv = provider.command(model, session=session.cli_session, resume=resume,
                                    system=system)
            process = await provider.pool.acquire(session.id, model, partial(
                CliProcess.start, argv, provider.env, cwd, session.id, model,
                provider.binary_name))
            reader = TurnReader(request.model, provider.chunking)
            done = False
            answer: list[str] = []
            try:
                async with aclosing(_run(provider, process, line, reader)) as events:
                    async for event in events:
                        if type(event) is TextDelta:
                            answer.append(event.text)
                        yield event
                done = True
            except GatewayError as error:
                # The CLI's transcript and our count disagree (a first turn cut off after the
                # CLI saved it, or before): start it the other way, once.
                if attempt == 0 and not reader.started and (
                        _TAKEN in error.message or _UNKNOWN in error.message):
                    resume = _TAKEN in error.message
                    continue
                raise
            finally:
                if not done:
                    provider.pool.release(process, keep=False)
            provider.pool.release(process, keep=True)
            if reader.result is not None:
                cost.usd = reader.result.cost_usd
                self.store.record_turn(session, _text_of(turn), "".join(answer),
                                       request.model, reader.result.usage, cost.usd)
            return

    async def _session_for(self, session_id: str, owner: str | None, model: str) -> Session:
        check_session_id(session_id)
        found = await self.store.session_row(session_id)
        if found is not None:
            if found.owner != owner:
                raise GatewayError("permission", f"session {session_id!r} belongs to another "
                                   "gateway key", param="x-session-id")
            return found
        return await self.create_session(session_id, owner, model, None)

    async def create_session(self, session_id: str | None, owner: str | None, model: str,
                             project_id: str | None) -> Session:
        now = time.time()
        session = Session(session_id or new_id("sess"), owner, str(uuid.uuid4()), model,
                          project_id, 0, 0, 0, 0.0, now, now)
        # The count and the insert under one lock per owner: two creates at once cannot both
        # take the last place (in this process; workers sharing a database may pass by one).
        # A NUL in the key: no session id (printable) can name this lock.
        key = f"\x00sessions:{owner}"
        lock = self._take_lock(key)
        try:
            async with lock:
                count = await self.store.count_owned_sessions(owner)
                _check_cap(count, self.max_sessions, "sessions", "max_sessions")
                try:
                    await self.store.add_session(session)
                except self.store.db.integrity_errors:
                    raise GatewayError("invalid_request", f"session {session.id!r} exists "
                                       "already", param="id", status=409) from None
        finally:
            self._drop_lock(key)
        self._sessions += 1
        return session

    async def delete_session(self, session: Session) -> None:
        await self.store.delete_session(session.id)
        self._sessions = max(0, self._sessions - 1)

    async def _cwd(self, session: Session) -> str:
        if session.project_id is not None:
            project = await self.store.project(session.project_id, session.owner)
            if project is not None:
                return await self._ensure(Path(project.path))
        return await self._ensure(self.default_dir)

    async def _ensure(self, path: Path) -> str:
        if not path.is_dir():
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return str(path)

    # ------------------------------------------------------------------ projects
    async def create_project(self, owner: str | None, name: str,
                             path: Path | None) -> Project:
        project_id = new_id("proj")
        created = path is None
        key = f"\x00projects:{owner}"
        lock = self._take_lock(key)
        try:
            async with lock:  # as in create_session
                count = await self.store.count_projects(owner)
                _check_cap(count, self.max_projects, "projects", "max_projects")
                if path is None:
                    path = self.projects_dir / project_id
                    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=False)
                project = Project(project_id, owner, name, str(path), created, time.time())
                await self.store.add_project(project)
        finally:
            self._drop_lock(key)
        return project

    async def delete_project(self, project: Project) -> None:
        await self.store.delete_project(project.id)
        if project.created:  # only what the gateway made itself
            await asyncio.to_thread(shutil.rmtree, project.path, True)

    # ------------------------------------------------------------------ locks
    def _take_lock(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        return lock

    def _drop_lock(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


async def _run(provider: ClaudeCodeProvider, process: CliProcess, line: dict[str, Any],
               reader: TurnReader) -> AsyncGenerator[Event, None]:
    """Send one user line and give the turn's events until its `result` line."""
    try:
        await process.send(line)
        while reader.result is None:
            for event in reader.feed(await process.read(provider.timeout)):
                yield event
    except GatewayError as error:
        raise provider.own_error(error) from None


def check_session_id(value: str) -> str:
    if not value or len(value) > MAX_SESSION_ID or not value.isprintable():
        raise GatewayError("invalid_request", f"a session id is 1 to {MAX_SESSION_ID} "
                           "printable characters", param="x-session-id")
    return value


def session_of(headers: Any, data: dict[str, Any]) -> str | None:
    """The session a request joins: its `x-session-id` header, else `metadata.session_id`."""
    value = headers.get("x-session-id")
    if not value:
        metadata = data.get("metadata")
        value = metadata.get("session_id") if isinstance(metadata, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise GatewayError("invalid_request", "`metadata.session_id` must be a string",
                           param="metadata.session_id")
    return check_session_id(value)


def _text_of(blocks: list[dict[str, Any]]) -> str:
    texts = [str(block.get("text", "")) for block in blocks if block.get("type") == "text"]
    images = sum(1 for block in blocks if block.get("type") == "image")
    return "\n".join(texts) + (f"\n[{images} image(s)]" if images else "")

