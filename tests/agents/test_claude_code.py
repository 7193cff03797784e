"""The real Claude Code CLI completes a one-tool task through babelgate, for each upstream
protocol: the fake's brain asks for `cat marker.txt` with Bash, Claude Code runs it, and the
second turn reports the file's random token. Success proves the tool call, the tool result
and the second turn all survived translation both ways.

Install the agent first: scripts/install-agents.sh. Deselect with `-m "not agent"`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.agents.harness import (
    UPSTREAMS,
    AgentRun,
    Workspace,
    agent_binary,
    make_workspace,
    run_claude,
    tool_results_seen,
)
from tests.fakes import FakeAnthropic, FakeGemini

pytestmark = [
    pytest.mark.agent,
    pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh"),
]

def assert_task_done(run: AgentRun, ws: Workspace, fake: Any) -> None:
    assert run.result is not None, run.explain()
    assert run.result.get("subtype") == "success", run.explain()
    assert run.result.get("is_error") is False, run.explain()
    assert ws.token in run.result.get("result", ""), run.explain()
    # Claude Code's own accounting saw real token numbers (zeros break auto-compaction).
    assert run.result["usage"]["input_tokens"] > 0, run.explain()
    # The upstream itself received the tool's output in the conversation history.
    assert any(ws.token in text for text in tool_results_seen(fake)), fake.requests
    # A strict upstream refused nothing: Claude Code recovering from a 400 would hide a bug.
    assert fake.rejections == []


async def test_claude_code_against_fake_anthropic_directly(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    """The harness and the fake speak real Claude Code (no gateway involved)."""
    ws = make_workspace(tmp_path)
    run = await run_claude(fake_anthropic.url, ws, api_key=fake_anthropic.api_key)
    assert_task_done(run, ws, fake_anthropic)
    first = fake_anthropic.requests[0]
    assert first.path == "/v1/messages" and first.query.get("beta") == "true"


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_claude_code_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        gateway = await gateway_factory(fake, model=model)
        ws = make_workspace(tmp_path)
        run = await run_claude(gateway.url, ws)
        assert_task_done(run, ws, fake)
        if "deepseek_thinking" in fake.modes:
            # The check that matters ran: thinking on, so reasoning_content was required.
            assert fake.requests[-1].body["thinking"] == {"type": "enabled"}
        if isinstance(fake, FakeGemini):
            paths = {r.path for r in fake.requests}
            assert all(f"/models/{model}:" in path for path in paths), paths
        else:
            models = {r.body.get("model") for r in fake.requests if isinstance(r.body, dict)}
            assert models == {model}, gateway.log()
