"""The real Claude Code CLI as a babelgate backend (`type: claude-code`), pointed through its
`env` at the strict fake Anthropic upstream: SDK clients of three protocols get its answers;
a session keeps its history in the CLI (the client sends only the new turn) in one kept
process, across an idle stop and a gateway restart; a project's directory is where the CLI
runs its tools, and deleting the project leaves a directory the gateway did not make; busy,
silent and abandoned processes (streamed or not, a stream cut off halfway by `timeout`, a
request waiting for a process) end as the issue says; and no CLI process outlives the
gateway. As root (the test machine) the tool run also shows the CLI takes IS_SANDBOX=1.
Each CLI start costs about a second, so the tests share gateways where they can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from tests.agents.harness import PROMPT, agent_binary, make_workspace, tool_results_seen
from tests.conftest import Gateway, GatewayFactory, stop_process
from tests.fakes import FakeAnthropic
from tests.fakes.core import Reply

pytestmark = [
    pytest.mark.agent,
    pytest.mark.gateway,
    pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh"),
]

MODEL = "claude-sonnet-4-5"
# A 1x1 PNG.
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5"
         "ErkJggg==")


def cc_provider(base_url: str, api_key: str, home: Path, **extra: Any) -> dict[str, Any]:
    home.mkdir(exist_ok=True)
    return {"type": "claude-code", "binary": str(agent_binary("claude")),
            "env": {"HOME": str(home), "ANTHROPIC_BASE_URL": base_url,
                    "ANTHROPIC_API_KEY": api_key},
            **extra}


async def start(factory: GatewayFactory, provider: dict[str, Any], tmp_path: Path,
                **claude_code: Any) -> Gateway:
    return await factory({"cc": provider}, routes={"claude-*": "cc"}, extra={
        "storage": {"path": str(tmp_path / "bg.db")},
        "claude_code": {"projects_dir": str(tmp_path / "projects"), **claude_code},
    })


def cli_processes(under: Path) -> list[int]:
    """Live processes whose working directory is under `under` (every CLI the test's
    gateways started runs in a project directory there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cwd.is_relative_to(under) and state != "Z":
            found.append(int(entry.name))
    return found


def zombies(parent: int) -> list[int]:
    """Children of `parent` that have exited and not been reaped (state Z). They have no
    working directory, so cli_processes cannot see them, and they vanish with their parent:
    look while the gateway runs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


async def health(gateway: Gateway) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/health") as resp:
        body: dict[str, Any] = await resp.json()
    counts: dict[str, int] = body["claude_code"]
    return counts


async def post(gateway: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, \
            http.post(gateway.url + path, json=body) as resp:
        data: dict[str, Any] = await resp.json()
        assert resp.status == 200, data
        return data


async def get(gateway: Gateway, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + path) as resp:
        return resp.status, await resp.json()


async def test_sdk_clients_of_three_protocols_get_the_clis_answers(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, cc_provider(
        fake_anthropic.url, fake_anthropic.api_key, tmp_path / "home"), tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything")
    plain = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content == "Fake reply."
    assert plain.usage is not None and plain.usage.prompt_tokens > 0
    streamed = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
    assert text == "Fake reply."
    claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="anything")
    message = await claude.messages.create(model=MODEL, max_tokens=200, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PIXEL}}]}])
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[1].text == "Fake reply."  # type: ignore[union-attr]
    # The image reached the CLI, and through it the upstream.
    images = [block for block in fake_anthropic.requests[-1].body["messages"][-1]["content"]
              if block.get("type") == "image"]
    assert [image["source"]["data"] for image in images] == [PIXEL]
    response = await chat.responses.create(model=MODEL, input="hi", store=False)
    assert response.output_text == "Fake reply."
    # The CLI asked the fake with the route's model, and the fake refused nothing.
    assert {r.body["model"] for r in fake_anthropic.requests if r.path == "/v1/messages"} \
        == {MODEL}
    assert fake_anthropic.rejections == []
    await chat.close()
    await claude.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []


def texts_seen(body: dict[str, Any]) -> str:
    """Every text of a request the fake received, in order."""
    out = []
    for message in body["messages"]:
        content = message["content"]
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        out += [block.get("text", "") for block in blocks]
    return "\n".join(out)


async def test_a_session_keeps_its_history_in_the_cli_and_survives_a_restart(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    provider = cc_provider(fake_anthropic.url, fake_anthropic.api_key, tmp_path / "home")
    gateway = await start(gateway_factory, provider, tmp_path)
    project = await post(gateway, "/v1/projects", {"name": "site"})
    session = await post(gateway, "/v1/sessions", {"project_id": project["id"],
                                                   "model": MODEL})
    sid = session["id"]
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything")
    await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "first ALPHA"}],
        extra_headers={"x-session-id": sid})
    claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="anything")
    await claude.messages.create(  # another protocol, the same session
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "second BETA"}],
        extra_headers={"x-session-id": sid})
    second = fake_anthropic.requests[-1].body
    assert "first ALPHA" in texts_seen(second) and "second BETA" in texts_seen(second)
    # One process served both turns: it stayed, idle, for the session's next one.
    counts = await health(gateway)
    assert (counts["active_processes"], counts["busy_processes"], counts["reaped"]) == (1, 0, 0)
    # The CLI ran in the project's directory (it tells its model so).
    assert f"Primary working directory: {project['path']}" in texts_seen(second)

    await stop_process(gateway.process)  # SIGTERM: the gateway stops its CLI processes
    assert cli_processes(tmp_path) == []
    gateway = await start(gateway_factory, provider, tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything")
    third = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "third GAMMA"}],
        metadata={"session_id": sid})
    assert third.choices[0].message.content == "Fake reply."
    seen = texts_seen(fake_anthropic.requests[-1].body)
    assert seen.index("first ALPHA") < seen.index("second BETA") < seen.index("third GAMMA")

    status, stored = await get(gateway, f"/v1/sessions/{sid}")
    assert status == 200
    assert stored["turns"] == 3 and stored["project_id"] == project["id"]
    assert [m["content"] for m in stored["messages"]] == [
        "first ALPHA", "Fake reply.", "second BETA", "Fake reply.", "third GAMMA",
        "Fake reply."]
    assert stored["input_tokens"] > 0 and stored["total_cost_usd"] > 0
    assert (await health(gateway))["sessions"] == 1
    async with aiohttp.ClientSession() as http, \
            http.delete(f"{gateway.url}/v1/sessions/{sid}") as resp:
        assert (await resp.json())["deleted"] is True
    assert (await get(gateway, f"/v1/sessions/{sid}"))[0] == 404
    await wait_for(gateway, "active_processes", 0)  # the deleted session's process is stopped
    assert (await health(gateway))["sessions"] == 0
    await chat.close()
    await claude.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []
    assert fake_anthropic.rejections == []


async def test_a_tool_enabled_cli_reads_a_file_in_the_projects_directory(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path)  # workdir/marker.txt holds a random token
    gateway = await start(gateway_factory, cc_provider(
        fake_anthropic.url, fake_anthropic.api_key, ws.home, tools=["Bash"],
        permission_mode="bypassPermissions"), tmp_path, roots=[str(ws.workdir)])
    project = await post(gateway, "/v1/projects", {"name": "marker",
                                                   "path": str(ws.workdir)})
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything")
    answer = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "earlier DELTA"},
                               {"role": "assistant", "content": "noted"},
                               {"role": "user", "content": PROMPT}],
        extra_headers={"x-session-id": "opencode-style-id-1"})
    # An id the gateway had not seen starts a session; its history goes in with the first
    # turn. No project given: it runs in the default directory, without marker.txt.
    assert "User: earlier DELTA" in texts_seen(fake_anthropic.requests[0].body)
    assert ws.token not in (answer.choices[0].message.content or "")
    session = await post(gateway, "/v1/sessions", {"project_id": project["id"]})
    answer = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"x-session-id": session["id"]})
    assert ws.token in (answer.choices[0].message.content or "")
    assert any(ws.token in text for text in tool_results_seen(fake_anthropic))
    # Client tools are refused in the client's protocol, naming the limit.
    with pytest.raises(openai.BadRequestError) as caught:
        await chat.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert "runs only its own tools" in str(caught.value)
    # Deleting the project forgets it and leaves the directory: the gateway did not make it.
    async with aiohttp.ClientSession() as http, \
            http.delete(f"{gateway.url}/v1/projects/{project['id']}") as resp:
        assert resp.status == 200 and (await resp.json())["deleted"] is True
    assert (await get(gateway, f"/v1/projects/{project['id']}"))[0] == 404
    assert (ws.workdir / "marker.txt").read_text().strip() == ws.token
    await chat.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []


@contextlib.asynccontextmanager
async def silent_upstream() -> AsyncIterator[str]:
    """An upstream that takes the CLI's request and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def wait_for(gateway: Gateway, key: str, value: int, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await health(gateway))[key] != value:
        assert asyncio.get_running_loop().time() < deadline, await health(gateway)
        await asyncio.sleep(0.1)


async def test_busy_silent_and_abandoned_processes(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    async with silent_upstream() as url:
        gateway = await start(gateway_factory, cc_provider(
            url, "sk-ant-silent", tmp_path / "home", max_processes=1, queue_timeout=0.5,
            timeout=4), tmp_path)
        chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything",
                                  max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="anything",
                                          max_retries=0)

        async def streaming_client() -> None:
            async with aiohttp.ClientSession() as http, http.post(
                    gateway.url + "/v1/chat/completions",
                    json={"model": MODEL, "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]}) as resp:
                await resp.content.read()

        # One process, busy with a stream that gets nothing from its upstream...
        first = asyncio.create_task(streaming_client())
        await wait_for(gateway, "busy_processes", 1)
        # ...so the next request waits queue_timeout, then gets a 429 in its protocol.
        with pytest.raises(openai.RateLimitError) as limited:
            await chat.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert "max_processes" in str(limited.value)
        with pytest.raises(anthropic.RateLimitError) as refused:
            await claude.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        # The streaming client leaves: its CLI turn is stopped and the process reaped.
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await wait_for(gateway, "active_processes", 0)
        assert (await health(gateway))["reaped"] == 1
        # A CLI silent for `timeout` seconds is killed; the client hears a timeout.
        with pytest.raises(openai.APIStatusError) as slow:
            await chat.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert slow.value.status_code == 504 and "produced nothing for 4" in str(slow.value)
        await wait_for(gateway, "active_processes", 0)
        assert (await health(gateway))["reaped"] == 2
        assert zombies(gateway.process.pid) == []  # killed, and their exits collected
        await chat.close()
        await claude.close()
        await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []


@contextlib.asynccontextmanager
async def stalling_upstream() -> AsyncIterator[str]:
    """An Anthropic upstream that begins every answer (its start, a text block, the first
    words) and then sends nothing more, holding the stream open."""
    events = [
        {"type": "message_start", "message": {
            "id": "msg_stall", "type": "message", "role": "assistant", "model": MODEL,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                      "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                              "text": "Half an "}},
    ]

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                                 .encode())
        await asyncio.sleep(3600)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def stream_body(gateway: Gateway, path: str, body: dict[str, Any]) -> str:
    async with aiohttp.ClientSession() as http, \
            http.post(gateway.url + path, json={**body, "stream": True}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.read()).decode()


async def test_a_stream_the_cli_stops_feeding_ends_with_a_timeout_event(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    async with stalling_upstream() as url:
        gateway = await start(gateway_factory, cc_provider(
            url, "sk-ant-stall", tmp_path / "home", timeout=3), tmp_path)
        ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        # The client has its first words; then the CLI is silent for `timeout` seconds: its
        # process is killed and the stream ends with the protocol's own error event.
        chat = await stream_body(gateway, "/v1/chat/completions", ask)
        assert '"content":"Half an "' in chat
        errors = [json.loads(line[6:]) for line in chat.splitlines()
                  if line.startswith("data: {") and '"error"' in line]
        assert len(errors) == 1 and "produced nothing for 3 s" in errors[0]["error"]["message"]
        await wait_for(gateway, "active_processes", 0)
        messages = await stream_body(gateway, "/v1/messages", {**ask, "max_tokens": 50})
        assert '"text":"Half an "' in messages
        assert "event: error" in messages and "produced nothing for 3 s" in messages
        assert "event: message_stop" not in messages
        await wait_for(gateway, "active_processes", 0)
        assert (await health(gateway))["reaped"] == 2
        assert zombies(gateway.process.pid) == []
        await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []


async def test_a_client_that_leaves_stops_the_turn_and_its_session_goes_on(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # The first answer takes 5 s (the provider's `timeout` is the default 600 s).
    fake_anthropic.queue(Reply(text="Too late.", delay=5))
    gateway = await start(gateway_factory, cc_provider(
        fake_anthropic.url, fake_anthropic.api_key, tmp_path / "home"), tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything",
                              max_retries=0)
    left = asyncio.create_task(chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "first EPSILON"}],
        extra_headers={"x-session-id": "left-1"}))
    deadline = asyncio.get_running_loop().time() + 30
    while not fake_anthropic.requests:  # the CLI has asked its upstream
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    left.cancel()  # a client that is not streaming leaves
    with contextlib.suppress(asyncio.CancelledError):
        await left
    # Its CLI is stopped before the upstream answers (a turn that ended would have left the
    # session's process idle, alive, for the next turn).
    await wait_for(gateway, "active_processes", 0, timeout=4)
    assert (await health(gateway))["reaped"] == 1
    answer = await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "second ZETA"}],
        extra_headers={"x-session-id": "left-1"})
    assert answer.choices[0].message.content == "Fake reply."
    assert "second ZETA" in texts_seen(fake_anthropic.requests[-1].body)
    status, stored = await get(gateway, "/v1/sessions/left-1")
    assert status == 200 and stored["turns"] == 1
    await chat.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []
    assert fake_anthropic.rejections == []


async def test_an_idle_sessions_process_stops_and_resumes_and_a_full_pool_makes_requests_wait(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start(gateway_factory, cc_provider(
        fake_anthropic.url, fake_anthropic.api_key, tmp_path / "home", max_processes=1,
        idle_timeout=1, queue_timeout=60), tmp_path)
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything",
                              max_retries=0)
    await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "first ALPHA"}],
        extra_headers={"x-session-id": "idle-1"})
    # `idle_timeout` later the session's process is stopped (and reaped)...
    await wait_for(gateway, "reaped", 1)
    assert (await health(gateway))["active_processes"] == 0
    # ...and its next turn resumes the CLI's session: the upstream sees the first turn.
    await chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "second BETA"}],
        extra_headers={"x-session-id": "idle-1"})
    seen = texts_seen(fake_anthropic.requests[-1].body)
    assert seen.index("first ALPHA") < seen.index("second BETA")

    # One process at most: a second request waits for the first one's process, then is
    # served (queue_timeout is long), rather than refused.
    fake_anthropic.queue(Reply(text="Slow reply.", delay=2))
    answers = await asyncio.gather(*(chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"one-off {n}"}])
        for n in range(2)))
    assert sorted(a.choices[0].message.content or "" for a in answers) == [
        "Fake reply.", "Slow reply."]
    await wait_for(gateway, "active_processes", 0)
    assert (await health(gateway))["reaped"] == 4
    assert zombies(gateway.process.pid) == []
    await chat.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []
    assert fake_anthropic.rejections == []


async def test_chunking_cuts_the_clis_text_as_each_mode_says(
    fake_anthropic: FakeAnthropic, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # The fake streams its text in pieces of 12 characters: "One two thre", "e. Four five".
    modes = ("token", "word", "sentence", "message")
    providers: dict[str, Any] = {
        mode: cc_provider(fake_anthropic.url, fake_anthropic.api_key, tmp_path / "home",
                          chunking=mode) for mode in modes}
    gateway = await gateway_factory(
        providers, routes={f"claude-{mode}": f"{mode}/{MODEL}" for mode in modes},
        extra={"storage": {"path": str(tmp_path / "bg.db")},
               "claude_code": {"projects_dir": str(tmp_path / "projects")}})
    chat = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="anything")
    deltas = {}
    for mode in modes:
        fake_anthropic.queue(Reply(text="One two three. Four five"))
        stream = await chat.chat.completions.create(
            model=f"claude-{mode}", messages=[{"role": "user", "content": "hi"}], stream=True)
        deltas[mode] = [c.choices[0].delta.content async for c in stream
                        if c.choices and c.choices[0].delta.content]
    assert deltas == {
        "token": ["One two thre", "e. Four five"],
        "word": ["One two ", "three. Four ", "five"],
        "sentence": ["One two three. ", "Four five"],
        "message": ["One two three. Four five"],
    }
    await chat.close()
    await stop_process(gateway.process)
    assert cli_processes(tmp_path) == []
    assert fake_anthropic.rejections == []
