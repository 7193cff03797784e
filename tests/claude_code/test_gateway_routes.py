"""A claude-code provider in the running gateway without starting the CLI: client tools go
to a fallback that takes them (or get a 400 naming the limit), a CLI that cannot start is a
clear 502, and the sessions and projects endpoints answer bad input with 4xx in OpenAI's
error format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeOpenAI

pytestmark = pytest.mark.gateway

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}]


async def start(factory: GatewayFactory, fake: FakeOpenAI, tmp_path: Path) -> Gateway:
    return await factory(
        {"cc": {"type": "claude-code", "binary": str(tmp_path / "no-such-claude")},
         "up": fake},
        routes={"claude-tools-*": ["cc", "up/test-model"], "claude-*": "cc",
                "sonnet": ["cc/sonnet", "up/test-model"], "gpt-*": "up/test-model"},
        extra={"claude_code": {"projects_dir": str(tmp_path / "projects")}})


async def test_client_tools_go_to_the_fallback_or_get_a_400_naming_the_limit(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    served = await chat.chat.completions.create(
        model="claude-tools-1", messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    assert served.choices[0].message.content == "Fake reply."
    assert len(fake_openai.requests) == 1 and fake_openai.requests[0].body["tools"]
    with pytest.raises(openai.BadRequestError) as caught:
        await chat.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}],
            tools=TOOLS)
    assert caught.value.body["param"] == "tools"  # type: ignore[index]
    assert "runs only its own tools" in caught.value.body["message"]  # type: ignore[index]
    claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user",
                                                                 "content": "hi"}],
            tools=[{"name": "lookup", "input_schema": {"type": "object"}}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    # Without tools the CLI is started, and one that is not there says so.
    with pytest.raises(openai.APIStatusError) as missing:
        await chat.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 502
    assert "cannot start the Claude Code CLI" in str(missing.value)
    await chat.close()
    await claude.close()


async def call(gateway: Gateway, method: str, path: str,
               body: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.request(
            method, gateway.url + path,
            data=body if isinstance(body, bytes) else None,
            json=None if isinstance(body, bytes) else body) as resp:
        return resp.status, await resp.json()


async def test_sessions_and_projects_endpoints(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    status, project = await call(gateway, "POST", "/v1/projects", {"name": "site"})
    assert status == 200 and Path(project["path"]).is_dir()
    assert Path(project["path"]).parent == tmp_path / "projects"
    status, session = await call(gateway, "POST", "/v1/sessions",
                                 {"project_id": project["id"], "model": "claude-x"})
    assert status == 200 and session["turns"] == 0 and session["messages"] == []
    status, listed = await call(gateway, "GET", "/v1/sessions")
    assert [s["id"] for s in listed["data"]] == [session["id"]]
    status, projects = await call(gateway, "GET", "/v1/projects")
    assert [p["id"] for p in projects["data"]] == [project["id"]]
    assert (await call(gateway, "GET", f"/v1/projects/{project['id']}"))[1]["name"] == "site"

    refusals = [
        ("POST", "/v1/projects", {"name": "x", "path": str(tmp_path)}, 403, "roots"),
        ("POST", "/v1/projects", {}, 400, "name"),
        ("POST", "/v1/projects", b"{not json", 400, "JSON"),
        ("POST", "/v1/sessions", {"project_id": "proj_nope"}, 404, "proj_nope"),
        ("POST", "/v1/sessions", {"id": session["id"]}, 409, "exists"),
        ("GET", "/v1/sessions/sess_nope", None, 404, "sess_nope"),
        ("DELETE", "/v1/projects/proj_nope", None, 404, "proj_nope"),
    ]
    for method, path, body, expected, words in refusals:
        status, error = await call(gateway, method, path, body)
        assert status == expected, (path, body, error)
        assert words in error["error"]["message"], error

    # The provider in the catalogue: its type, its processes, never its environment.
    status, providers = await call(gateway, "GET", "/v1/providers")
    cc = next(p for p in providers["data"] if p["name"] == "cc")
    assert cc["type"] == "claude-code" and cc["processes"]["active"] == 0 and "env" not in cc

    status, deleted = await call(gateway, "DELETE", f"/v1/projects/{project['id']}")
    assert status == 200 and deleted["deleted"] is True
    assert not Path(project["path"]).exists()
    status, detached = await call(gateway, "GET", f"/v1/sessions/{session['id']}")
    assert status == 200 and detached["project_id"] is None


async def test_capabilities_say_the_cli_takes_images_and_thinks_but_no_client_tools(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    status, body = await call(gateway, "GET", "/v1/models/capabilities")
    assert status == 200, body
    sonnet = next(m for m in body["data"] if m["id"] == "sonnet")
    assert (sonnet["target"], sonnet["type"]) == ("cc/sonnet", "claude-code")
    assert (sonnet["tools"], sonnet["images"], sonnet["thinking"]) == (False, True, True)
    assert sonnet["context_window"] == 200_000
    # Its fallback takes tools: a request with tools goes there (the test above).
    assert [(f["target"], f["tools"]) for f in sonnet["fallbacks"]] == [("up/test-model", True)]
    status, providers = await call(gateway, "GET", "/v1/providers")
    cc = next(p for p in providers["data"] if p["name"] == "cc")
    assert cc["models"] == ["sonnet"] and cc["health"]["state"] == "ok"


async def test_a_session_id_on_a_route_to_another_provider_type_is_ignored(
    fake_openai: FakeOpenAI, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, fake_openai, tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    served = await chat.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-session-id": "opencode-own-id"},
        metadata={"session_id": "opencode-own-id"})
    assert served.choices[0].message.content == "Fake reply."
    status, listed = await call(gateway, "GET", "/v1/sessions")
    assert status == 200 and listed["data"] == []
    await chat.close()
