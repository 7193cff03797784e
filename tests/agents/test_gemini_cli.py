"""The real Gemini CLI completes a one-tool task through babelgate, for each upstream
protocol: the fake's brain asks for `cat marker.txt` with Gemini CLI's `run_shell_command`,
Gemini CLI runs it (`--yolo`), and the second turn reports the file's random token. Success
proves the Gemini request, the function call, the functionResponse and the second turn all
survived translation both ways (or pass-through, for a Gemini upstream).

Gemini CLI runs with the home `babelgate gemini` prepares (API-key auth selected, the
workspace trusted, a fixed model, telemetry and update checks off; babelgate.cli.gemini),
and once through the launcher itself. Install the agent first: scripts/install-agents.sh.
Deselect with `-m "not agent"`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agents.harness import (
    GEMINI_MODEL,
    AgentRun,
    Workspace,
    agent_binary,
    make_workspace,
    run_gemini,
    run_launcher,
    tool_results_seen,
)
from tests.agents.harness import UPSTREAMS as AGENT_UPSTREAMS
from tests.fakes import FakeAnthropic, FakeGemini, FakeResponses, FakeUpstream

pytestmark = [
    pytest.mark.agent,
    pytest.mark.skipif(agent_binary("gemini") is None, reason="run scripts/install-agents.sh"),
]

UPSTREAMS: dict[str, tuple[Callable[[], FakeUpstream], str]] = {
    **AGENT_UPSTREAMS,
    "openai-responses": (FakeResponses, "gpt-resp-test"),
}


def assert_task_done(run: AgentRun, ws: Workspace, fake: FakeUpstream) -> None:
    assert run.returncode == 0, run.explain()
    assert isinstance(run.result, dict), run.explain()
    # The second turn happened: the final answer quotes the command's output.
    assert ws.token in str(run.result.get("response")), run.explain()
    # The upstream itself received the tool's output, in its own protocol's shape.
    assert any(ws.token in text for text in tool_results_seen(fake)), fake.requests
    # Gemini CLI's own accounting saw real token numbers from the translated answers.
    models = (run.result.get("stats") or {}).get("models") or {}
    tokens = [m.get("tokens") or {} for m in models.values()]
    assert any((t.get("prompt") or t.get("input") or 0) > 0 for t in tokens), run.result
    # A strict upstream refused nothing: a retried 400 would hide a bug.
    assert fake.rejections == [], fake.rejections


async def test_gemini_cli_against_fake_gemini_directly(tmp_path: Path) -> None:
    """The harness and the Gemini fake speak real Gemini CLI (no gateway involved)."""
    async with FakeGemini(modes=["gemini3"]) as fake:
        ws = make_workspace(tmp_path)
        run = await run_gemini(fake.url, ws, api_key=fake.api_key)
        assert_task_done(run, ws, fake)
        paths = [r.path for r in fake.requests]
        assert f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent" in paths, paths
        assert all(r.headers.get("x-goog-api-key") == fake.api_key for r in fake.requests)


@pytest.mark.gateway
@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_gemini_cli_through_gateway(
    upstream: str, gateway_factory: Any, tmp_path: Path
) -> None:
    make_fake, model = UPSTREAMS[upstream]
    async with make_fake() as fake:
        # Gemini CLI's side calls (compression, checks) name other gemini-* models.
        gateway = await gateway_factory(fake, model=model, routes={"gemini-*": f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_gemini(gateway.url, ws, api_key="AIza-client-key-never-forwarded")
        assert_task_done(run, ws, fake)
        assert_reasoning_came_back(fake)
        for rec in fake.requests:
            assert "AIza-client-key-never-forwarded" not in str(rec.headers) + str(rec.query)
        if isinstance(fake, FakeGemini):  # passed through, the model rewritten in the URL
            paths = {r.path for r in fake.requests}
            assert all(f"/models/{model}:" in path for path in paths), paths
        else:
            models = {r.body.get("model") for r in fake.requests if isinstance(r.body, dict)}
            assert models == {model}, gateway.log()
        assert "AIza-client-key-never-forwarded" not in gateway.log()


def assert_reasoning_came_back(fake: FakeUpstream) -> None:
    """Gemini CLI keeps no thought parts in its history, only the call's thoughtSignature:
    the reasoning babelgate packed there came back, so thinking stayed on in the tool loop."""
    body = fake.requests[-1].body
    if "deepseek_thinking" in fake.modes:  # reasoning_content echoed, or DeepSeek says 400
        assert body["thinking"] == {"type": "enabled"}
        turns = [m for m in body["messages"] if m.get("tool_calls")]
        assert turns and turns[-1].get("reasoning_content"), body["messages"]
    elif isinstance(fake, FakeAnthropic):  # the CLI asks for thinkingLevel HIGH
        assert body.get("thinking", {}).get("type") in ("enabled", "adaptive"), body
        turn = [m for m in body["messages"] if m["role"] == "assistant"][-1]
        assert turn["content"][0]["type"] == "thinking", turn


@pytest.mark.gateway
async def test_babelgate_gemini_launcher(gateway_factory: Any, tmp_path: Path) -> None:
    """`babelgate gemini --url GATEWAY -p ... --yolo`, as a user runs it, on an Anthropic
    upstream: the launcher's settings are enough for a fresh machine."""
    make_fake, model = UPSTREAMS["anthropic"]
    async with make_fake() as fake:
        gateway = await gateway_factory(fake, model=model, routes={"gemini-*": f"up/{model}"})
        ws = make_workspace(tmp_path)
        run = await run_launcher(gateway.url, ws)
        assert_task_done(run, ws, fake)
        # Nothing was written under the sandbox's HOME/.gemini: the session had its own.
        assert not (ws.home / ".gemini" / "settings.json").exists()
