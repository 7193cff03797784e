"""The real Codex CLI completes a one-tool task through babelgate, for each upstream protocol:
the fake's brain asks for `cat marker.txt` with Codex's shell tool (`exec_command`), Codex
runs it, and the second turn reports the file's random token. Success proves the Responses
request, the tool call, the function_call_output and the second turn all survived
translation both ways.

Codex talks to a `babelgate` model provider (`wire_api = "responses"`) in a sandbox
CODEX_HOME; see harness.codex_config. Install the agent first: scripts/install-agents.sh.
Deselect with `-m "not agent"`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agents.harness import (
    CODEX_MODEL,
    CodexRun,
    Workspace,
    agent_binary,
    make_workspace,
    run_codex,
    tool_results_seen,
)
from tests.agents.harness import (
    UPSTREAMS as AGENT_UPSTREAMS,
)
from tests.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeResponses,
    FakeUpstream,
    Reply,
    ToolCall,
    Usage,
)

pytestmark = [
    pytest.mark.agent,
    pytest.mark.skipif(agent_binary("codex") is None, reason="run scripts/install-agents.sh"),
]

UPSTREAMS: dict[str, tuple[Callable[[], FakeUpstream], str]] = {
    **AGENT_UPSTREAMS,
    "openai-responses": (FakeResponses, "gpt-resp-test"),
}


def assert_task_done(run: CodexRun, ws: Workspace, fake: Any) -> None:
    assert run.returncode == 0, run.explain()
    kinds = [e.get("type") for e in run.events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds, run.explain()
    # Codex really ran the command the upstream asked for, and it succeeded.
    commands = run.commands()
    assert any("cat marker.txt" in c.get("command", "") for c in commands), run.explain()
    assert all(c.get("exit_code") == 0 for c in commands), run.explain()
    # The second turn happened: the final answer quotes the tool output.
    assert ws.token in run.last_message, run.explain()
    # Codex's own accounting saw real token numbers, taken from the translated stream.
    usage = run.usage()
    assert usage.get("input_tokens", 0) > 0 and usage.get("output_tokens", 0) > 0, usage
    # The upstream itself received the tool's output, in its own protocol's shape.
    assert any(ws.token in text for text in tool_results_seen(fake)), fake.requests
    # A strict upstream refused nothing: a retried 400 would hide a bug.
    assert fake.rejections == []


async def test_codex_against_fake_responses_directly(
    fake_responses: FakeResponses, tmp_path: Path
) -> None:
    """The harness and the Responses fake speak real Codex (no gateway involved)."""
    ws = make_workspace(tmp_path)
    run = await run_codex(fake_responses.base_url, ws, api_key=fake_responses.api_key)
    assert_task_done(run, ws, fake_responses)
    first = fake_responses.requests[0]
    assert first.path == "/v1/responses" and first.body["model"] == CODEX_MODEL
    assert first.body["stream"] is True and first.body["store"] is False
    assert first.headers["authorization"] == f"Bearer {fake_responses.api_key}"
    # The output went back as a function_call_output answering the fake's call_id.
    last = fake_responses.requests[-1].body["input"]
    calls = {i["call_id"] for i in last if i.get("type") == "function_call"}
    outputs = [i for i in last if i.get("type") == "function_call_output"]
    assert outputs and all(o["call_id"] in calls for o in outputs)


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_codex_through_gateway(upstream: str, gateway_factory: Any, tmp_path: Path) -> None:
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_codex(gateway.url + "/v1", ws)
        assert_task_done(run, ws, fake)
        assert_tool_result_shape(fake, ws.token)
        if "deepseek_thinking" in fake.modes:
            # The check that matters ran: thinking on, so reasoning_content was required.
            assert fake.requests[-1].body["thinking"] == {"type": "enabled"}
        if isinstance(fake, FakeGemini):
            paths = {r.path for r in fake.requests}
            assert all(f"/models/{model}:" in path for path in paths), paths
        else:
            models = {r.body.get("model") for r in fake.requests if isinstance(r.body, dict)}
            assert models == {model}, gateway.log()


def assert_tool_result_shape(fake: FakeUpstream, token: str) -> None:
    """The last request carries the command output as the upstream's own tool-result form,
    answering the call the fake made (not, say, flattened into user text)."""
    body = fake.requests[-1].body
    if isinstance(fake, FakeOpenAI):
        tools = [m for m in body["messages"] if m.get("role") == "tool"]
        calls = {
            c["id"]
            for m in body["messages"]
            if m.get("role") == "assistant"
            for c in m.get("tool_calls") or []
        }
        assert tools and tools[-1]["tool_call_id"] in calls, body["messages"]
        assert token in str(tools[-1]["content"])
    elif isinstance(fake, FakeAnthropic):
        blocks = [
            b
            for m in body["messages"]
            if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
        uses = {
            b["id"]
            for m in body["messages"]
            if m["role"] == "assistant" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_use"
        }
        assert blocks and blocks[-1]["tool_use_id"] in uses, body["messages"]
        assert token in str(blocks[-1]["content"])
    elif isinstance(fake, FakeGemini):
        parts = [p for c in body["contents"] for p in c.get("parts", [])]
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        calls = {p["functionCall"]["name"] for p in parts if "functionCall" in p}
        assert responses and responses[-1]["name"] in calls, body["contents"]
        assert token in str(responses[-1]["response"])
    else:
        outputs = [i for i in body["input"] if i.get("type") == "function_call_output"]
        assert outputs and token in str(outputs[-1]["output"]), body["input"]


# Codex edits files with `apply_patch`, a free-form (`custom`) Responses tool with a Lark
# grammar. Other upstreams see it as a function taking `{"input": "<patch>"}`; the gateway
# must hand the call back to Codex as a `custom_tool_call` with the raw patch text.
PATCHABLE = ("openai", "anthropic", "gemini")


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", PATCHABLE)
async def test_codex_apply_patch_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        ws = make_workspace(tmp_path)
        patch = f"*** Begin Patch\n*** Add File: hello.txt\n+hello {ws.token}\n*** End Patch\n"
        fake.queue(Reply(tool_calls=[ToolCall("apply_patch", {"input": patch})]))
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        run = await run_codex(gateway.url + "/v1", ws, prompt="Create hello.txt, please.")
        assert run.returncode == 0, run.explain()
        # Codex applied the very patch the upstream wrote: the file is there, byte for byte.
        created = ws.workdir / "hello.txt"
        assert created.exists(), run.explain()
        assert created.read_text() == f"hello {ws.token}\n"
        # The patch tool's result went back upstream, answering the call, then a final turn.
        assert len(fake.requests) == 2, run.explain()
        assert tool_results_seen(fake), fake.requests[-1].body
        assert run.last_message.startswith("The command printed:"), run.explain()
        assert fake.rejections == []


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", ("openai", "anthropic", "gemini"))
async def test_codex_parallel_shell_calls_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    """Two calls in one turn (Codex sends parallel_tool_calls: true): both run, both outputs
    go back in one upstream turn, each answering its own call."""
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        ws = make_workspace(tmp_path)
        (ws.workdir / "second.txt").write_text("second-" + ws.token + "\n")
        fake.queue(
            Reply(
                tool_calls=[
                    ToolCall("exec_command", {"cmd": "cat marker.txt"}),
                    ToolCall("exec_command", {"cmd": "cat second.txt"}),
                ]
            )
        )
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        run = await run_codex(gateway.url + "/v1", ws, prompt="Show both files.")
        assert run.returncode == 0, run.explain()
        assert len(run.commands()) == 2, run.explain()
        results = fake.view(fake.requests[-1].body).tool_results
        assert len(results) == 2, fake.requests[-1].body
        joined = "\n".join(results)
        assert ws.token in joined and "second-" + ws.token in joined
        assert "second-" + ws.token in run.last_message
        assert fake.rejections == []


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", ("openai", "anthropic", "gemini"))
async def test_codex_sees_upstream_error(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    """A refused request reaches Codex as a failed turn quoting the upstream's message, and
    Codex stops (a 400 is not worth retrying)."""
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        fake.queue(Reply(status=400, error="context too long for this test model"))
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_codex(gateway.url + "/v1", ws)
        assert run.returncode != 0, run.explain()
        failed = [e for e in run.events if e.get("type") == "turn.failed"]
        assert failed, run.explain()
        assert "context too long for this test model" in failed[-1]["error"]["message"]
        assert len(fake.requests) == 1


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", ("openai", "anthropic", "gemini"))
async def test_codex_retries_a_cut_stream(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    """An upstream stream dropped mid-answer must not look complete to Codex: it retries the
    request (Codex retries streams that end without response.completed) and finishes."""
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        # Long enough for every protocol's stream to be cut inside the text.
        text = "This answer never ends because the connection drops in the middle of it all."
        fake.queue(Reply(text=text, cut_stream_after=3))
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_codex(gateway.url + "/v1", ws)
        assert_task_done(run, ws, fake)
        assert "never ends" not in run.last_message
        assert len(fake.requests) == 3, run.explain()  # the cut one, the retry, the final turn


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", ("openai", "anthropic", "gemini", "openai-responses"))
async def test_codex_token_usage_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    """Codex's turn usage is the sum of the upstream's exact numbers, cache reads included
    (Anthropic counts them outside input_tokens; the gateway must add them back)."""
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        usage = Usage(input_tokens=5000, output_tokens=40, cached_tokens=3000)
        fake.queue(
            Reply(tool_calls=[ToolCall("exec_command", {"cmd": "cat marker.txt"})], usage=usage),
            Reply(text="Done.", usage=usage),
        )
        gateway = await gateway_factory(fake, model=model, routes={CODEX_MODEL: f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_codex(gateway.url + "/v1", ws)
        assert run.returncode == 0, run.explain()
        got = run.usage()
        assert got["input_tokens"] == 10000, got
        assert got["cached_input_tokens"] == 6000, got
        assert got["output_tokens"] == 80, got
