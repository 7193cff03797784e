"""Claude Code's model picker on babelgate (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1): the
real CLI reads GET /v1/models in Anthropic's shape and keeps the ids that contain `claude` or
`anthropic`, writing them to ~/.claude/cache/gateway-models.json, which its /model picker
offers. What babelgate lists there is the route names that are not patterns and the targets;
this holds the documented consequence (docs/configuration.md, "GET /v1/models"): exact
`claude...` routes are offered, globs and `provider/model` targets are not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.agents.harness import agent_binary, claude_env, make_workspace, run_agent
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI

pytestmark = [pytest.mark.agent, pytest.mark.gateway]


@pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh")
async def test_claude_code_offers_the_exact_claude_routes(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    async with FakeOpenAI() as fake:
        gw = await gateway_factory({"deepseek": fake}, routes={
            "claude-deepseek-chat": "deepseek/test-model",
            "claude-*": "deepseek/test-model",
            "default": "deepseek/other-model",
        })
        env = {**claude_env(gw.url, ws.home, "anything"),
               "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
        debug = tmp_path / "claude-debug.txt"
        run = await run_agent([str(agent_binary("claude")), "-p", "hi", "--output-format",
                               "json", "--debug-file", str(debug)], env, ws.workdir)
    assert run.returncode == 0, run.explain()
    cached = list(ws.home.rglob("gateway-models.json"))
    assert cached, debug.read_text()[-3000:] if debug.exists() else run.explain()
    offered = json.loads(cached[0].read_text())
    assert offered["baseUrl"] == gw.url
    # The exact route; not the glob, not deepseek/test-model nor deepseek/other-model.
    assert [m["id"] for m in offered["models"]] == ["claude-deepseek-chat"]
