"""A real Claude Code session whose subscription runs out of quota in the middle of its task:
the gateway hands the rest of the session to the pay-as-you-go fallback and Claude Code
finishes, never seeing the refusal. Install the agent first: scripts/install-agents.sh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.agents.harness import agent_binary, make_workspace, run_claude, tool_results_seen
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import ToolCall

pytestmark = [
    pytest.mark.agent,
    pytest.mark.gateway,
    pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh"),
]


async def test_claude_code_finishes_on_the_fallback_when_the_quota_runs_out(
    gateway_factory: Any, tmp_path: Path,
) -> None:
    async with FakeAnthropic(api_key="sk-sub") as sub, FakeOpenAI(api_key="sk-payg") as payg:
        routes: dict[str, Any] = {"default": ["sub/claude-test", "payg/gpt-test"]}
        gateway = await gateway_factory({
            "sub": sub.provider_config(quota={"window": "weekly", "reset": "mon 00:00"}),
            "payg": payg,
        }, routes=routes)
        # Turn 1 on the subscription: it asks for the command. Turn 2: the plan is used up.
        sub.queue(
            Reply(reasoning="The user wants a command run; I will use the shell tool.",
                  tool_calls=[ToolCall("Bash", {"command": "cat marker.txt",
                                                "description": "Run the requested command"})]),
            Reply(status=429, error="Claude AI usage limit reached",
                  headers={"anthropic-ratelimit-unified-status": "rejected"}),
        )
        ws = make_workspace(tmp_path)
        run = await run_claude(gateway.url, ws)
        assert run.result is not None, run.explain()
        assert run.result.get("subtype") == "success", run.explain()
        assert run.result.get("is_error") is False, run.explain()
        assert ws.token in run.result.get("result", ""), run.explain()
        assert len(sub.requests) == 2, (sub.rejections, gateway.log()[-3000:])
        # The fallback got the whole conversation, the tool's output included.
        assert any(ws.token in text for text in tool_results_seen(payg)), payg.requests
        assert payg.rejections == []
        assert "quota used up" in gateway.log()
