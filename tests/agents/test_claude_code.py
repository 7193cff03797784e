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
    AgentRun,
    Workspace,
    agent_binary,
    make_workspace,
    run_claude,
    tool_results_seen,
)
from tests.fakes import FAKES, FakeAnthropic

pytestmark = [
    pytest.mark.agent,
    pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh"),
]

# Upstream model names as each provider would spell them.
UPSTREAM_MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}


def assert_task_done(run: AgentRun, ws: Workspace, fake: Any) -> None:
    assert run.result is not None, run.explain()
    assert run.result.get("subtype") == "success", run.explain()
    assert run.result.get("is_error") is False, run.explain()
    assert ws.token in run.result.get("result", ""), run.explain()
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
@pytest.mark.parametrize("upstream", ["openai", "anthropic", "gemini"])
async def test_claude_code_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    async with FAKES[upstream]() as fake:
        gateway = await gateway_factory(fake, model=UPSTREAM_MODELS[upstream])
        ws = make_workspace(tmp_path)
        run = await run_claude(gateway.url, ws)
        assert_task_done(run, ws, fake)
        models = {r.body.get("model") for r in fake.requests if isinstance(r.body, dict)}
        if upstream != "gemini":  # Gemini names the model in the path
            assert models == {UPSTREAM_MODELS[upstream]}, gateway.log()
