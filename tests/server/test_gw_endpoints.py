"""The gateway's small endpoints and its request-level errors, over real HTTP."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from tests.fakes import Reply

from conftest import Stack

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]

HELLO = {"role": "user", "content": "Hello"}


async def post(url: str, body: bytes | dict[str, object], **headers: str) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session, session.post(
        url, data=data, headers={"content-type": "application/json", **headers}
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_health(fresh: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(fresh.gw.url + "/health") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ok"
    assert {p["name"] for p in body["providers"]} >= {"oa", "an", "ge"}
    assert all("api_key" not in p for p in body["providers"])


async def test_models_in_both_shapes(fresh: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            fresh.gw.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}
        ) as r:
            assert r.status == 200
            anthropic = await r.json()
        async with session.get(fresh.gw.url + "/v1/models") as r:
            assert r.status == 200
            openai = await r.json()
    ids = [m["id"] for m in anthropic["data"]]
    assert "claude-client" in ids and "gpt-client" in ids
    # Concrete names only: a model picker sends what it lists, and a glob is no model.
    assert not any("*" in name for name in ids)
    assert all(m["type"] == "model" for m in anthropic["data"])
    assert anthropic["has_more"] is False
    assert anthropic["first_id"] == ids[0] and anthropic["last_id"] == ids[-1]
    assert openai["object"] == "list"
    assert [m["id"] for m in openai["data"]] == ids
    assert all(m["object"] == "model" for m in openai["data"])


async def test_event_logging_is_accepted(fresh: Stack) -> None:
    status, body = await post(fresh.gw.url + "/api/event_logging/batch", {"events": [{"a": 1}]})
    assert status == 200
    assert body == {}


async def test_unknown_path_is_404_with_a_message(fresh: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(fresh.gw.url + "/v2/nothing") as r:
        assert r.status == 404
        body = await r.json()
    assert "/v2/nothing" in body["error"]["message"]
    assert "/v1/messages" in body["error"]["message"]  # it says what is served


async def test_malformed_json_is_400_naming_the_problem(fresh: Stack) -> None:
    status, body = await post(fresh.gw.url + "/v1/messages", b'{"model": "claude-client", ')
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]
    assert not any(f.requests for f in fresh.fakes)


async def test_missing_max_tokens_is_400_naming_the_field(fresh: Stack) -> None:
    status, body = await post(
        fresh.gw.url + "/v1/messages", {"model": "claude-client", "messages": [HELLO]}
    )
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert not any(f.requests for f in fresh.fakes)


async def test_unknown_model_is_404_listing_routable_models(fresh: Stack) -> None:
    status, body = await post(
        fresh.gw.url + "/v1/messages",
        {"model": "no-such-model", "max_tokens": 100, "messages": [HELLO]},
    )
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    message = body["error"]["message"]
    assert "no-such-model" in message
    assert "claude-client" in message and "gem-client" in message


async def test_a_repeated_conversation_is_decoded_once(fresh: Stack) -> None:
    """Turn after turn, an agent resends its system prompt, tools and earlier messages: the
    gateway decodes and translates those pieces once (see babelgate.protocols.reuse), and the
    upstream still gets the whole conversation, with the new turn, every time."""
    system = [{"type": "text", "text": "You are a careful coding agent. " * 40}]
    tools = [{"name": f"tool_{n}", "description": "Does one thing well. " * 10,
              "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}}
             for n in range(8)]
    history = [{"role": "user", "content": "Read the file please. " * 30},
               {"role": "assistant", "content": "Here is what the file says. " * 30}]

    async def health() -> dict:
        async with aiohttp.ClientSession() as session, session.get(
            fresh.gw.url + "/health"
        ) as r:
            return await r.json()

    before = (await health())["reuse"]
    sent = []
    for turn in ("first question", "second question", "third question"):
        history = [*history, {"role": "user", "content": turn}]
        fresh.oa.queue(Reply(text=f"answer to {turn}"))
        status, body = await post(fresh.gw.url + "/v1/messages", {
            "model": "gpt-client", "max_tokens": 100, "system": system, "tools": tools,
            "messages": history})
        assert status == 200, body
        assert body["content"][0]["text"] == f"answer to {turn}"
        sent.append(fresh.oa.requests[-1].body)
        history = [*history, {"role": "assistant", "content": f"answer to {turn}"}]
    after = (await health())["reuse"]
    # A piece is kept the second time it is seen: third turn, system, tools and the two
    # long messages were found again.
    assert after["hits"] - before["hits"] >= 4
    assert after["kept"] - before["kept"] >= 4  # on their second sight
    assert after["declined"] == before["declined"]  # nothing left the table unfound
    assert after["bytes"] <= after["budget"]
    first, second, third = sent
    assert third["messages"][: len(second["messages"])] == second["messages"]
    assert second["tools"] == first["tools"]
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-1] == {"role": "user", "content": "second question"}
