"""Which client sent a request, from the User-Agent each real client sends."""

from __future__ import annotations

import pytest

from babelgate.books.clients import Clients

SEEN = [
    ("claude-cli/2.0.14 (external, cli)", "claude-code"),
    ("codex_cli_rs/0.46.0 (Ubuntu 22.4.0; x86_64) xterm-256color", "codex"),
    ("codex_exec/0.46.0 (Mac OS 15.0.0; arm64)", "codex"),
    ("GeminiCLI/0.9.0 (linux; x64)", "gemini-cli"),
    ("OpenAI/Python 1.109.1", "openai-sdk"),
    ("OpenAI/JS 5.23.0", "openai-sdk"),
    ("Anthropic/Python 0.69.0", "anthropic-sdk"),
    ("AsyncAnthropic/Python 0.69.0", "anthropic-sdk"),  # the async clients name their class
    ("AsyncOpenAI/Python 1.109.1", "openai-sdk"),
    ("Anthropic/JS 0.65.0", "anthropic-sdk"),
    ("curl/8.5.0", "other"),
    ("Python/3.11 aiohttp/3.10.5", "other"),
]


@pytest.mark.parametrize(("agent", "client"), SEEN)
def test_each_client_by_its_user_agent(agent: str, client: str) -> None:
    assert Clients().of(agent) == client


def test_no_user_agent_is_other() -> None:
    assert Clients().of(None) == "other"
    assert Clients().of("") == "other"


def test_the_cache_is_bounded() -> None:
    clients = Clients(max_entries=4)
    for n in range(50):
        assert clients.of(f"claude-cli/1.0.{n}") == "claude-code"
    assert len(clients._known) == 4
