"""The sessions and projects endpoints stay bounded, over real HTTP against a real gateway
without the CLI: lists come in pages (`limit`, `after`), a session's messages are its last
`messages_limit`, each owner's sessions and projects are capped (claude_code.max_sessions,
max_projects), and a database that has gone away is a 503, not a 500."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.admin_support import wait_for_key
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI
from tests.keys_support import create

pytestmark = pytest.mark.gateway


async def start(factory: GatewayFactory, fake: FakeOpenAI, tmp_path: Path,
                **claude_code: Any) -> Gateway:
    return await factory(
        {"cc": {"type": "claude-code", "binary": str(tmp_path / "no-such-claude")},
         "up": fake},
        routes={"claude-*": "cc"},
        extra={"claude_code": {"projects_dir": str(tmp_path / "projects"), **claude_code}})


async def call(gateway: Gateway, method: str, path: str, body: Any = None,
               key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.request(
            method, gateway.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def walk(gateway: Gateway, path: str, limit: int) -> list[str]:
    """Every id of a list, page by page, checking each page's fields."""
    ids: list[str] = []
    query = f"?limit={limit}"
    while True:
        status, page = await call(gateway, "GET", path + query)
        assert status == 200 and page["object"] == "list", page
        assert len(page["data"]) <= limit
        ids += [row["id"] for row in page["data"]]
        if page["data"]:
            assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            return ids
        query = f"?limit={limit}&after={page['last_id']}"


async def test_lists_come_in_pages(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    made = [(await call(gateway, "POST", "/v1/sessions", {}))[1]["id"] for _ in range(5)]
    projects = [(await call(gateway, "POST", "/v1/projects", {"name": f"p{n}"}))[1]["id"]
                for n in range(3)]

    status, everything = await call(gateway, "GET", "/v1/sessions")
    assert status == 200 and everything["has_more"] is False
    assert [s["id"] for s in everything["data"]] == made
    assert everything["last_id"] == made[-1]
    status, first = await call(gateway, "GET", "/v1/sessions?limit=2")
    assert [s["id"] for s in first["data"]] == made[:2] and first["has_more"] is True
    for limit in (1, 2, 3, 5, 1000):
        assert await walk(gateway, "/v1/sessions", limit) == made
    assert await walk(gateway, "/v1/projects", 2) == projects

    # A page after a session deleted meanwhile: the cursor is a position, not an offset.
    await call(gateway, "DELETE", f"/v1/sessions/{made[2]}")
    status, rest = await call(gateway, "GET", f"/v1/sessions?after={made[1]}")
    assert [s["id"] for s in rest["data"]] == made[3:] and rest["has_more"] is False

    for query, param in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                         ("limit=-1", "limit"), ("after=sess_nope", "after"),
                         (f"after={made[2]}", "after")):
        for path in ("/v1/sessions", "/v1/projects"):
            status, error = await call(gateway, "GET", f"{path}?{query}")
            assert status == 400, (path, query, error)
            assert error["error"]["param"] == param, error
            assert error["error"]["message"], error
    status, empty = await call(gateway, "GET", f"/v1/projects?after={projects[-1]}")
    assert status == 200 and empty["data"] == [] and empty["has_more"] is False
    assert empty["last_id"] is None


async def test_a_session_shows_its_last_messages_and_their_count(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    status, session = await call(gateway, "POST", "/v1/sessions", {})
    # 150 turns' messages, as the gateway records them, written to its SQLite file (the
    # turns themselves need the CLI, which this test does not start).
    with sqlite3.connect(gateway.config_path.with_suffix(".db")) as db:
        db.executemany("INSERT INTO claude_session_messages VALUES (?, ?, ?, ?, ?)",
                       [(session["id"], seq, "user" if seq % 2 == 0 else "assistant",
                         f"message {seq}", time.time()) for seq in range(300)])
    status, shown = await call(gateway, "GET", f"/v1/sessions/{session['id']}")
    assert status == 200 and len(shown["messages"]) == 100
    assert shown["messages"][0]["content"] == "message 200"
    assert shown["messages"][-1]["content"] == "message 299"
    assert shown["message_count"] == 300 and shown["messages_has_more"] is True
    status, last = await call(gateway, "GET",
                              f"/v1/sessions/{session['id']}?messages_limit=3")
    assert [m["content"] for m in last["messages"]] == [f"message {n}" for n in (297, 298, 299)]
    status, every = await call(gateway, "GET",
                               f"/v1/sessions/{session['id']}?messages_limit=1000")
    assert len(every["messages"]) == 300 and every["messages_has_more"] is False
    for bad in ("0", "1001", "lots"):
        status, error = await call(gateway, "GET",
                                   f"/v1/sessions/{session['id']}?messages_limit={bad}")
        assert status == 400 and error["error"]["param"] == "messages_limit", error


async def test_each_owner_has_a_cap_on_sessions_and_projects(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path, max_sessions=3,
                          max_projects=2)
    alice, bob = create(gateway.config_path, "alice"), create(gateway.config_path, "bob")
    await wait_for_key(gateway, bob)
    sessions = [(await call(gateway, "POST", "/v1/sessions", {}, alice))[1]["id"]
                for _ in range(3)]
    projects = [(await call(gateway, "POST", "/v1/projects", {"name": "p"}, alice))[1]["id"]
                for _ in range(2)]
    status, error = await call(gateway, "POST", "/v1/sessions", {}, alice)
    assert status == 409 and "claude_code.max_sessions: 3" in error["error"]["message"]
    assert "raise" in error["error"]["message"]
    on_disk = sorted(p.name for p in (tmp_path / "projects").iterdir())
    status, error = await call(gateway, "POST", "/v1/projects", {"name": "p"}, alice)
    assert status == 409 and "claude_code.max_projects: 2" in error["error"]["message"]
    assert sorted(p.name for p in (tmp_path / "projects").iterdir()) == on_disk  # no new dir

    # Another key has its own places; a deleted one frees a place.
    assert (await call(gateway, "POST", "/v1/sessions", {}, bob))[0] == 200
    assert (await call(gateway, "POST", "/v1/projects", {"name": "p"}, bob))[0] == 200
    await call(gateway, "DELETE", f"/v1/sessions/{sessions[0]}", key=alice)
    await call(gateway, "DELETE", f"/v1/projects/{projects[0]}", key=alice)
    assert (await call(gateway, "POST", "/v1/sessions", {}, alice))[0] == 200
    assert (await call(gateway, "POST", "/v1/projects", {"name": "p"}, alice))[0] == 200


async def test_a_database_gone_away_is_a_503(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    from tests.pg_support import admin, fresh_database

    async with fresh_database() as dsn:
        gateway = await gateway_factory(
            {"cc": {"type": "claude-code", "binary": str(tmp_path / "no-such-claude")}},
            routes={"claude-*": "cc"},
            extra={"storage": {"url": dsn},
                   "claude_code": {"projects_dir": str(tmp_path / "projects")}})
        status, session = await call(gateway, "POST", "/v1/sessions", {})
        assert status == 200
        conn, _ = await admin()
        try:
            await conn.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await conn.close()
        for method, path, body in (("GET", "/v1/sessions", None), ("GET", "/v1/projects", None),
                                   ("POST", "/v1/sessions", {}),
                                   ("POST", "/v1/projects", {"name": "p"}),
                                   ("GET", f"/v1/sessions/{session['id']}", None)):
            status, error = await call(gateway, method, path, body)
            assert status == 503, (method, path, error)
            assert "database" in error["error"]["message"], error


async def test_a_keys_sessions_and_projects_are_its_own(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    alice, bob = create(gateway.config_path, "alice"), create(gateway.config_path, "bob")
    await wait_for_key(gateway, bob)
    session = (await call(gateway, "POST", "/v1/sessions", {}, alice))[1]
    project = (await call(gateway, "POST", "/v1/projects", {"name": "p"}, alice))[1]
    # Another key neither sees them nor joins or deletes them.
    assert (await call(gateway, "GET", "/v1/sessions", key=bob))[1]["data"] == []
    assert (await call(gateway, "GET", "/v1/projects", key=bob))[1]["data"] == []
    for path in (f"/v1/sessions/{session['id']}", f"/v1/projects/{project['id']}"):
        assert (await call(gateway, "GET", path, key=bob))[0] == 404
        assert (await call(gateway, "DELETE", path, key=bob))[0] == 404
    status, error = await call(gateway, "POST", "/v1/sessions",
                               {"project_id": project["id"]}, bob)
    assert status == 404 and error["error"]["param"] == "project_id"
    async with aiohttp.ClientSession() as http, http.post(
            gateway.url + "/v1/messages", json={
                "model": "claude-sonnet-4-5", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": bob, "x-session-id": session["id"]}) as resp:
        refused = await resp.json()
        assert resp.status == 403, refused
    assert refused["type"] == "error" and "another gateway key" in refused["error"]["message"]
    assert (await call(gateway, "GET", f"/v1/sessions/{session['id']}", key=alice))[0] == 200
    assert Path(project["path"]).is_dir()
