"""A gateway started with no provider at all: the real Claude Code and Codex CLIs show the
message that says how to configure one, instead of an error about the model (Claude Code
turns a 404 into "There's an issue with the selected model") or minutes of retries (Codex
retries a 404 or a 5xx five times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.agents.harness import agent_binary, make_workspace, run_claude, run_codex
from tests.conftest import wait_healthy

from babelgate.config import NO_PROVIDER_HINT

pytestmark = [pytest.mark.agent, pytest.mark.gateway]

# The hint's first sentence; an agent may wrap the rest of the line.
SAID = NO_PROVIDER_HINT.split(".")[0]


async def _gateway_without_providers(gateway_factory: Any) -> Any:
    gateway = gateway_factory.spawn({"providers": {}}, {})
    gateway_factory.gateways.append(gateway)
    await wait_healthy(gateway)
    return gateway


@pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh")
async def test_claude_code_shows_how_to_configure_a_provider(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway = await _gateway_without_providers(gateway_factory)
    run = await run_claude(gateway.url, make_workspace(tmp_path), prompt="hi")
    assert SAID in run.stdout + run.stderr, run.explain()
    assert "selected model" not in run.stdout, run.explain()


@pytest.mark.skipif(agent_binary("codex") is None, reason="run scripts/install-agents.sh")
async def test_codex_shows_how_to_configure_a_provider(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway = await _gateway_without_providers(gateway_factory)
    run = await run_codex(gateway.url + "/v1", make_workspace(tmp_path), prompt="hi")
    assert SAID in run.stdout + run.stderr, run.stderr[-2000:]
    assert "Reconnecting" not in run.stdout, run.stdout[-2000:]  # said at once, not retried
