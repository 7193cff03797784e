"""Which client sent a request, from its User-Agent.

What this module promises: `Clients.of(user_agent)` names the client (`claude-code`, `codex`,
`gemini-cli`, `openai-sdk`, `anthropic-sdk` or `other`). A User-Agent string is classified
once; the answer is kept for at most `max_entries` distinct strings (a client's version is
in its User-Agent, so a team sends a handful; a stranger sending a new one per request only
costs the classification, not memory).
"""

from __future__ import annotations

# (prefix of the lower-cased User-Agent, client), first match wins. What each sends:
# Claude Code "claude-cli/2.0.14 (external, cli)"; Codex "codex_cli_rs/0.46.0 (...)" or
# "codex_exec/..."; Gemini CLI "GeminiCLI/0.9.0 (linux; x64)"; the OpenAI SDKs
# "OpenAI/Python 1.x" and "OpenAI/JS 5.x"; the Anthropic SDKs "Anthropic/Python 0.x" and
# "Anthropic/JS 0.x"; their Python async clients name their class: "AsyncOpenAI/Python 1.x",
# "AsyncAnthropic/Python 0.x".
PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude-cli/", "claude-code"),
    ("claude-code/", "claude-code"),
    ("codex_cli_rs/", "codex"),
    ("codex_exec/", "codex"),
    ("codex", "codex"),
    ("geminicli/", "gemini-cli"),
    ("gemini-cli/", "gemini-cli"),
    ("openai/", "openai-sdk"),
    ("anthropic/", "anthropic-sdk"),
    ("asyncopenai/", "openai-sdk"),
    ("asyncanthropic/", "anthropic-sdk"),
)
OTHER = "other"


def classify(user_agent: str) -> str:
    agent = user_agent.strip().lower()
    for prefix, client in PREFIXES:
        if agent.startswith(prefix):
            return client
    return OTHER


class Clients:
    __slots__ = ("_known", "max_entries")

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._known: dict[str, str] = {}

    def of(self, user_agent: str | None) -> str:
        if not user_agent:
            return OTHER
        client = self._known.get(user_agent)
        if client is None:
            client = classify(user_agent)
            if len(self._known) < self.max_entries:
                self._known[user_agent] = client
        return client
