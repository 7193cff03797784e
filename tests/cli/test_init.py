"""`babelgate init` as a user meets it: a real process answered through a terminal (a pty),
through a pipe, and with `--yes`; the file it writes loads with the real configuration loader
and passes `babelgate doctor` against fake upstreams. Keys never reach the file."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from tests.fakes import FakeAnthropic, FakeOpenAI

from babelgate.config import load_settings


class Terminal:
    """A process on a pseudo-terminal: wait for what it prints, type answers."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                        cwd=cwd, env=env, close_fds=True)
        os.close(slave)
        self.master = master
        self.output = ""
        self._read_to = 0

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output[self._read_to:]:
            left = deadline - time.monotonic()
            assert left > 0, f"never printed {text!r}; printed:\n{self.output}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the process ended and the terminal closed
                    chunk = b""
                assert chunk, f"ended before printing {text!r}; printed:\n{self.output}"
                self.output += chunk.decode(errors="replace")
        self._read_to = self.output.index(text, self._read_to) + len(text)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")  # Enter, as a keyboard sends it

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                self.output += chunk.decode(errors="replace")
                if not chunk and self.process.poll() is not None:
                    break
            elif self.process.poll() is not None:
                break
        os.close(self.master)
        return self.process.wait(5)


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A user's environment with only these provider variables set."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "xterm",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **variables}


def init(*args: str, cwd: Path, env: dict[str, str], stdin: str = ""
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "babelgate", "init", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


async def doctor_json(config: Path, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "babelgate", "doctor", "--json", "--config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert out, err.decode()
    return process.returncode or 0, json.loads(out)


async def test_yes_writes_the_detected_providers_and_doctor_passes(tmp_path: Path) -> None:
    async with FakeOpenAI() as deepseek, FakeAnthropic() as anthropic:
        deepseek.api_key = "sk-deepseek-secret-1"
        anthropic.api_key = "sk-ant-secret-2"
        env = environment(tmp_path, DEEPSEEK_API_KEY=deepseek.api_key,
                          ANTHROPIC_API_KEY=anthropic.api_key,
                          BABELGATE_DEEPSEEK_URL=deepseek.base_url,
                          BABELGATE_ANTHROPIC_URL=anthropic.base_url)
        result = await asyncio.to_thread(init, "--yes", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "all checks passed" in result.stdout, result.stdout
        written = tmp_path / "babelgate.yaml"
        text = written.read_text()
        assert "sk-deepseek-secret-1" not in text and "sk-ant-secret-2" not in text
        assert "api_key: ${DEEPSEEK_API_KEY}" in text
        assert "api_key: ${ANTHROPIC_API_KEY}" in text
        assert text.count("\n  #") > 5  # commented

        settings = load_settings(written, env=env)
        assert set(settings.providers) == {"anthropic", "deepseek"}
        assert settings.providers["deepseek"].api_key == "sk-deepseek-secret-1"
        assert settings.providers["deepseek"].base_url == deepseek.base_url
        assert settings.routes["claude-*"] == ["anthropic"]
        assert settings.routes["gpt-*"] == ["anthropic/claude-sonnet-4-5"]  # Codex
        assert settings.routes["gemini-*"] == ["anthropic/claude-sonnet-4-5"]  # Gemini CLI
        assert settings.routes["deepseek-*"] == ["deepseek"]

        code, doc = await doctor_json(written, env)
    assert code == 0, doc
    assert [p["name"] for p in doc["providers"]] == ["anthropic", "deepseek"]
    assert anthropic.requests and deepseek.requests  # both really checked


async def test_answers_typed_in_a_terminal(tmp_path: Path) -> None:
    async with FakeOpenAI() as deepseek, FakeOpenAI(api_key="") as local:
        env = environment(tmp_path, DEEPSEEK_API_KEY=deepseek.api_key,
                          OPENROUTER_API_KEY="sk-or-not-chosen",
                          BABELGATE_DEEPSEEK_URL=deepseek.base_url)

        def session() -> tuple[int, str]:
            term = Terminal([sys.executable, "-m", "babelgate", "init"], tmp_path, env)
            term.expect("Claude Code? [Y/n]")
            term.type("")
            term.expect("Codex? [Y/n]")
            term.type("y")
            term.expect("Gemini CLI? [Y/n]")
            term.type("n")
            term.expect("DEEPSEEK_API_KEY is set: use DeepSeek? [Y/n]")
            term.type("yes")
            term.expect("OPENROUTER_API_KEY is set: use OpenRouter? [Y/n]")
            term.type("n")
            term.expect("Other providers, whose keys you will set later")
            term.type("mistral")  # not one babelgate knows: asked again
            term.expect("unknown: mistral")
            term.type("")
            term.expect("its URL, empty for none")
            term.type(local.base_url)
            term.expect("What serves it (ollama/llamacpp/lmstudio/vllm/other)")
            term.type("llamacpp")
            term.expect("The model name to ask it for")
            term.type("gemma-3-270m")
            term.expect("Which one answers by default (deepseek/local) [deepseek]")
            term.type("local")
            term.expect("Check the providers now with `babelgate doctor`? [Y/n]")
            term.type("y")
            term.expect("all checks passed", timeout=90)
            return term.finish(), term.output

        code, output = await asyncio.to_thread(session)
    assert code == 0, output
    assert "babelgate claude" in output and "babelgate codex" in output
    assert "babelgate gemini" not in output
    settings = load_settings(tmp_path / "babelgate.yaml", env=env)
    assert set(settings.providers) == {"deepseek", "local"}
    assert "openrouter" not in settings.providers
    local_config = settings.providers["local"]
    assert (local_config.base_url, local_config.preset) == (local.base_url, "llamacpp")
    assert local_config.max_tokens == 4096 and local_config.api_key is None
    assert settings.routes["claude-*opus*"] == ["local/gemma-3-270m"]
    assert settings.routes["default"] == ["local/gemma-3-270m"]
    assert "gemini-*" not in settings.routes
    assert local.requests, "doctor did not check the local server"


def test_answers_from_a_pipe_and_a_provider_to_set_later(tmp_path: Path) -> None:
    env = environment(tmp_path)
    # agents: yes, no, no; no key in the environment, so: other providers, local server.
    result = init(cwd=tmp_path, env=env, stdin="y\nn\nn\nopenai kimi\n\n\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "set OPENAI_API_KEY before starting the gateway" in result.stdout
    assert "set MOONSHOT_API_KEY before starting the gateway" in result.stdout
    assert "doctor" not in result.stdout.split("wrote")[-1].split("start the gateway")[0]
    written = tmp_path / "babelgate.yaml"
    settings = load_settings(written, env={"OPENAI_API_KEY": "o", "MOONSHOT_API_KEY": "k"})
    assert settings.providers["kimi"].preset == "kimi"
    # The key set first (none here) or the first chosen answers Claude Code.
    assert settings.routes["claude-*"] == ["openai/gpt-5"]
    assert settings.routes["gpt-*"] == ["openai"]
    # Without the variables the file names what is missing, as the loader promises.
    unset = subprocess.run([sys.executable, "-m", "babelgate", "doctor", "--config",
                            str(written)], env=env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert unset.returncode == 2 and "OPENAI_API_KEY" in unset.stderr


def test_input_that_ends_early_writes_nothing(tmp_path: Path) -> None:
    result = init(cwd=tmp_path, env=environment(tmp_path), stdin="y\n")
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert not (tmp_path / "babelgate.yaml").exists()


def test_an_existing_file_is_kept_unless_the_user_says_so(tmp_path: Path) -> None:
    target = tmp_path / "babelgate.yaml"
    target.write_text("mine\n")
    env = environment(tmp_path, DEEPSEEK_API_KEY="sk-1")
    refused = init("--yes", cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "--force" in refused.stderr
    declined = init(cwd=tmp_path, env=env, stdin="n\n")
    assert declined.returncode == 1 and "exists. Replace it? [y/N]" in declined.stdout
    assert target.read_text() == "mine\n"
    # Replaced after a yes to the question, answering the rest too.
    accepted = init("--no-doctor", cwd=tmp_path, env=env, stdin="y\ny\nn\nn\ny\n\n\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "deepseek:" in target.read_text()
    target.write_text("mine\n")
    forced = init("--yes", "--force", "--no-doctor", cwd=tmp_path, env=env)
    assert forced.returncode == 0, forced.stderr
    assert load_settings(target, env=env).providers["deepseek"].api_key == "sk-1"


def test_no_key_anywhere_still_writes_a_loadable_file(tmp_path: Path) -> None:
    result = init("--yes", "--path", "gw.yaml", cwd=tmp_path, env=environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "no provider yet" in result.stdout
    assert "babelgate serve --config gw.yaml" in result.stdout
    written = tmp_path / "gw.yaml"
    assert load_settings(written, env={}).providers == {}
    # Every commented provider is valid YAML once uncommented.
    lines = written.read_text().splitlines()
    catalog = [line.replace("  # ", "  ", 1) for line in lines
               if line.startswith("  # ") and ": {type: " in line]
    assert len(catalog) == 9, catalog
    parsed = yaml.safe_load("providers:\n" + "\n".join(catalog))
    assert parsed["providers"]["glm"]["api_key"] == "${ZHIPU_API_KEY}"


async def test_json_summary_includes_doctor(tmp_path: Path) -> None:
    async with FakeOpenAI() as deepseek:
        env = environment(tmp_path, DEEPSEEK_API_KEY=deepseek.api_key,
                          BABELGATE_DEEPSEEK_URL=deepseek.base_url)
        result = await asyncio.to_thread(init, "--json", "--agents", "codex", cwd=tmp_path,
                                         env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["path"] == "babelgate.yaml" and doc["agents"] == ["codex"]
    assert doc["providers"] == ["deepseek"] and doc["default"] == "deepseek"
    assert doc["unset"] == [] and doc["doctor"]["ok"] is True
    assert deepseek.api_key not in result.stdout + result.stderr


async def test_a_failing_doctor_is_shown_and_the_file_kept(tmp_path: Path) -> None:
    async with FakeOpenAI() as deepseek:
        env = environment(tmp_path, DEEPSEEK_API_KEY="sk-refused-key-9",
                          BABELGATE_DEEPSEEK_URL=deepseek.base_url)
        result = await asyncio.to_thread(init, "--yes", cwd=tmp_path, env=env)
        as_json = await asyncio.to_thread(init, "--json", "--force", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr  # the file is written: doctor had its say
    assert "the key was refused: check DEEPSEEK_API_KEY" in result.stdout
    assert "some checks failed" in result.stdout
    assert (tmp_path / "babelgate.yaml").is_file()
    doc = json.loads(as_json.stdout)
    assert doc["doctor"]["ok"] is False
    assert "sk-refused-key-9" not in result.stdout + as_json.stdout


def test_unknown_names_on_the_command_line(tmp_path: Path) -> None:
    result = init("--yes", "--providers", "deepseek,nope", cwd=tmp_path,
                  env=environment(tmp_path))
    assert result.returncode == 2 and "unknown: nope" in result.stderr
