"""Sessions and projects of claude-code providers on both backends (SQLite, PostgreSQL):
migration m008 from empty, a turn's record read back, owners kept apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.pg_support import fresh_database

from babelgate.canonical import GatewayError, Usage
from babelgate.claude_code.runtime import ClaudeCode
from babelgate.config import ClaudeCodeConfig
from babelgate.storage.database import Database, open_database
from babelgate.storage.url import StorageURL


@pytest.fixture(params=("sqlite", "postgresql"))
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = open_database(StorageURL.sqlite(tmp_path / "bg.db"))
        await database.open()
        yield database
        await database.close()
        return
    async with fresh_database() as dsn:
        database = open_database(StorageURL.parse(dsn))
        await database.open()
        yield database
        await database.close()


async def test_sessions_and_projects_round_trip(db: Database, tmp_path: Path) -> None:
    runtime = ClaudeCode(db, ClaudeCodeConfig(projects_dir=str(tmp_path / "projects")),
                         tmp_path)
    await runtime.start()
    project = await runtime.create_project("key_a", "site", None)
    assert Path(project.path).is_dir() and project.created
    session = await runtime.create_session(None, "key_a", "claude-sonnet-4-5", project.id)
    runtime.store.record_turn(session, "hello", "hi there", "claude-sonnet-4-5",
                              Usage(input_tokens=100, output_tokens=7), 0.25)
    again = await runtime.store.session(session.id, "key_a")
    assert again is not None
    assert (again.turns, again.input_tokens, again.output_tokens) == (1, 100, 7)
    assert again.cost_usd == pytest.approx(0.25)
    assert [m["content"] for m in await runtime.store.messages(session.id)] == [
        "hello", "hi there"]
    assert runtime.session_count == 1
    # Another owner sees neither.
    assert await runtime.store.session(session.id, "key_b") is None
    assert await runtime.store.project(project.id, "key_b") is None
    assert await runtime.store.sessions("key_b") == []
    assert [s.id for s in await runtime.store.sessions("key_a")] == [session.id]
    # A project the gateway made goes with its directory; its sessions stay, unattached.
    await runtime.delete_project(project)
    assert not Path(project.path).exists()
    detached = await runtime.store.session(session.id, "key_a")
    assert detached is not None and detached.project_id is None
    await runtime.delete_session(detached)
    assert await runtime.store.session(session.id, "key_a") is None
    assert await runtime.store.messages(session.id) == []


async def test_a_project_on_an_existing_path_keeps_its_directory(db: Database,
                                                                 tmp_path: Path) -> None:
    runtime = ClaudeCode(db, ClaudeCodeConfig(roots=[str(tmp_path)]), tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>mine</p>")
    project = await runtime.create_project(None, "site", site)
    assert not project.created
    await runtime.delete_project(project)
    assert (site / "index.html").read_text() == "<p>mine</p>"


async def test_a_taken_session_id_is_refused(db: Database, tmp_path: Path) -> None:
    runtime = ClaudeCode(db, ClaudeCodeConfig(), tmp_path)
    await runtime.create_session("chosen-id", None, "m", None)
    with pytest.raises(GatewayError) as caught:
        await runtime.create_session("chosen-id", None, "m", None)
    assert caught.value.status == 409
