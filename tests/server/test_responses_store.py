"""previous_response_id through the gateway: the official `openai` SDK's Responses client,
real HTTP, fake OpenAI-Chat and Anthropic upstreams. The gateway keeps each stored response
(SQLite in tmp_path) and replays the conversation to upstreams that have no such state."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, NotFoundError
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply, ToolCall

pytestmark = pytest.mark.gateway

ROUTES = {"gpt-client": "oa/gpt-up", "claude-client": "an/claude-up"}
WEATHER = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}]


async def start(
    factory: GatewayFactory, oa: FakeOpenAI, an: FakeAnthropic, db: Path
) -> Gateway:
    return await factory({"oa": oa, "an": an}, routes=ROUTES,
                         extra={"storage": {"path": str(db)}})


@pytest.fixture
async def setup(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncOpenAI, Gateway]]:
    gw = await start(gateway_factory, fake_openai, fake_anthropic, tmp_path / "gw.db")
    async with AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        yield client, gw


def texts(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


async def test_continues_a_conversation_on_an_openai_upstream(
    setup: tuple[AsyncOpenAI, Gateway], fake_openai: FakeOpenAI,
) -> None:
    client, _ = setup
    fake_openai.queue(Reply(text="Hello Ada."), Reply(text="Your name is Ada."))
    first = await client.responses.create(
        model="gpt-client", instructions="Be brief.", input="My name is Ada."
    )
    assert first.output_text == "Hello Ada."
    second = await client.responses.create(
        model="gpt-client", previous_response_id=first.id, input="What is my name?"
    )
    assert second.output_text == "Your name is Ada."
    assert second.previous_response_id == first.id
    sent = fake_openai.requests[1].body
    # The whole first turn, then the new input; instructions are not inherited.
    assert [(m["role"], texts(m)) for m in sent["messages"]] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What is my name?"),
    ]
    assert "previous_response_id" not in sent and "store" not in sent
    # A third turn continues from the second: the chain keeps growing.
    fake_openai.queue(Reply(text="Bye."))
    await client.responses.create(model="gpt-client", previous_response_id=second.id,
                                  input="Thanks.")
    assert len(fake_openai.requests[2].body["messages"]) == 5


async def test_streamed_tool_call_with_thinking_on_anthropic(
    setup: tuple[AsyncOpenAI, Gateway], fake_anthropic: FakeAnthropic,
) -> None:
    client, _ = setup
    fake_anthropic.queue(
        Reply(reasoning="The user wants weather; call the tool.",
              tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Reply(reasoning="The tool said sunny.", text="Sunny in Paris."),
    )
    first = await _stream(client, model="claude-client", input="Weather in Paris?",
                          tools=WEATHER, reasoning={"effort": "low"}, max_output_tokens=4000)
    kinds = [item["type"] for item in first["output"]]
    assert kinds == ["reasoning", "function_call"]
    call = first["output"][1]
    second = await _stream(
        client, model="claude-client", previous_response_id=first["id"], tools=WEATHER,
        reasoning={"effort": "low"}, max_output_tokens=4000,
        input=[{"type": "function_call_output", "call_id": call["call_id"],
                "output": "sunny, 24C"}],
    )
    assert second["output"][-1]["content"][0]["text"] == "Sunny in Paris."
    # The fake Anthropic verifies the thinking signature it issued: a 200 proves it came
    # back intact out of the store. Check the replayed turn block by block as well.
    messages = fake_anthropic.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    thinking, tool_use = messages[1]["content"]
    assert thinking["type"] == "thinking" and thinking["signature"]
    assert thinking["thinking"] == "The user wants weather; call the tool."
    assert tool_use["type"] == "tool_use" and tool_use["input"] == {"city": "Paris"}
    result = messages[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"]


async def _stream(client: AsyncOpenAI, **kwargs: Any) -> dict[str, Any]:
    """Stream a response; the final response object, as the SDK parsed it."""
    stream = await client.responses.create(stream=True, **kwargs)
    final: dict[str, Any] | None = None
    async for event in stream:
        if event.type == "response.completed":
            final = event.response.model_dump()
    assert final is not None
    return final


async def test_unknown_previous_response_is_a_404_in_openai_shape(
    setup: tuple[AsyncOpenAI, Gateway], fake_openai: FakeOpenAI,
) -> None:
    client, _ = setup
    with pytest.raises(NotFoundError) as caught:
        await client.responses.create(model="gpt-client", previous_response_id="resp_nope",
                                      input="hi")
    assert caught.value.status_code == 404
    assert json.loads(caught.value.response.text) == {"error": {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }}
    assert fake_openai.requests == []


async def test_store_false_keeps_nothing(
    setup: tuple[AsyncOpenAI, Gateway], fake_openai: FakeOpenAI, tmp_path: Path,
) -> None:
    client, _ = setup
    fake_openai.queue(Reply(text="Not kept."), Reply(text="Not kept either."))
    # store:false, streamed or not, and other protocols leave the database alone.
    first = await client.responses.create(model="gpt-client", input="hi", store=False)
    stream = await client.responses.create(model="gpt-client", input="hi", store=False,
                                           stream=True)
    async for _ in stream:
        pass
    fake_openai.queue(Reply(text="A chat answer."))
    await client.chat.completions.create(model="gpt-client",
                                         messages=[{"role": "user", "content": "hi"}])
    assert not (tmp_path / "gw.db").exists()  # the database was never even opened
    with pytest.raises(NotFoundError):
        await client.responses.create(model="gpt-client", previous_response_id=first.id,
                                      input="and?")


async def test_retrieve_delete_and_survive_a_restart(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    gw = await start(gateway_factory, fake_openai, fake_anthropic, db)
    fake_openai.queue(Reply(text="Kept."), Reply(text="Also kept."))
    async with AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        kept = await client.responses.create(model="gpt-client", input="keep this")
        dropped = await client.responses.create(model="gpt-client", input="drop this")
        got = await client.responses.retrieve(kept.id)
        assert got.output_text == "Kept." and got.id == kept.id
        await client.responses.delete(dropped.id)
        with pytest.raises(NotFoundError):
            await client.responses.retrieve(dropped.id)
    gw.process.terminate()  # a clean shutdown finishes queued writes
    assert gw.process.wait(timeout=10) == 0

    again = await start(gateway_factory, fake_openai, fake_anthropic, db)
    fake_openai.queue(Reply(text="Still here."))
    async with AsyncOpenAI(base_url=again.url + "/v1", api_key="k", max_retries=0) as client:
        more = await client.responses.create(model="gpt-client", previous_response_id=kept.id,
                                             input="remember?")
        assert more.output_text == "Still here."
        with pytest.raises(NotFoundError):
            await client.responses.retrieve(dropped.id)
    sent = fake_openai.requests[-1].body["messages"]
    assert [texts(m) for m in sent] == ["keep this", "Kept.", "remember?"]


async def test_a_30_turn_chain_of_5_kb_turns_is_stored_once(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    gw = await start(gateway_factory, fake_openai, fake_anthropic, db)
    said = [f"turn {i:02} " + "x" * 5000 for i in range(30)]
    # A coding agent's ten tools (~8 KB, as Codex sends), resent every turn: each response
    # echoes them, and the store keeps that list once for the whole chain.
    tools = [{"type": "function", "name": f"tool_{n}", "description": "d" * 600,
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}
             for n in range(10)]
    previous: str | None = None
    async with AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        for i, text in enumerate(said):
            fake_openai.queue(Reply(text=f"answer {i:02}"))
            kwargs: dict[str, Any] = {"previous_response_id": previous} if previous else {}
            answer = await client.responses.create(model="gpt-client", input=text,
                                                   tools=tools, **kwargs)
            previous = answer.id
    # The 30th turn's upstream request carries the whole conversation, in order.
    sent = fake_openai.requests[-1].body["messages"]
    expected = [("user", t) for t in said[:-1]]
    expected = [pair for i, u in enumerate(expected)
                for pair in (u, ("assistant", f"answer {i:02}"))] + [("user", said[-1])]
    assert [(m["role"], texts(m)) for m in sent] == expected
    gw.process.terminate()  # a clean stop writes what is queued and checkpoints the WAL
    assert gw.process.wait(timeout=10) == 0
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = conn.execute("SELECT count(*), sum(length(input)), max(length(response)) "
                        "FROM responses").fetchone()
    lists = conn.execute("SELECT count(*), sum(length(tools)) FROM response_tools").fetchone()
    # The open gateway (no keys): every turn belongs to the one owner it has, NULL.
    open_rows = conn.execute("SELECT count(*) FROM responses WHERE owner IS NULL").fetchone()
    conn.close()
    wal = Path(f"{db}-wal")
    size = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    print(f"30 turns of 5 KB through the gateway: {size / 1e6:.2f} MB on disk")
    assert rows[0] == open_rows[0] == 30
    assert rows[1] < 30 * 5300  # each turn's input once (whole histories: ~15x this)
    assert rows[2] < 2000  # a response: its answer, without the echo of the tools
    assert lists[0] == 1 and 7000 < lists[1] < 9000  # the tools, once (~7.5 KB)
    assert size < 3_000_000  # the target; whole-history rows took ~2.5 MB
    assert size < 400_000  # in fact linear in the turns (0.49 MB with the tools in each row)


async def test_expired_responses_are_pruned_while_the_gateway_runs(
    gateway_factory: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    # Responses expire after two seconds; the gateway prunes every tenth of a second.
    gw = await gateway_factory(
        {"oa": fake_openai, "an": fake_anthropic}, routes=ROUTES,
        extra={"storage": {"path": str(db), "responses_ttl_days": 2 / 86400,
                           "responses_prune_interval_s": 0.1}},
    )
    fake_openai.queue(Reply(text="Soon gone."), Reply(text="Still served."))
    async with AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        gone = await client.responses.create(model="gpt-client", input="short-lived")
        assert await _eventually(lambda: stored_ids(db) == [gone.id], 2)  # written
        assert await _eventually(lambda: stored_ids(db) == [], 15)  # and pruned
        assert gw.process.poll() is None  # by the running gateway
        with pytest.raises(NotFoundError):
            await client.responses.retrieve(gone.id)
        again = await client.responses.create(model="gpt-client", input="still there?")
        assert again.output_text == "Still served."


def stored_ids(db: Path) -> list[str] | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM responses")]
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        conn.close()


async def _eventually(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
