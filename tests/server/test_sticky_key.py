"""Which conversation a request belongs to (server/sticky_key.py), as each client names it:
Claude Code's session header or the session in `metadata.user_id`, Codex's `session_id`
header or `prompt_cache_key`, else the first user message, which every turn resends. The
same conversation gives the same key turn after turn; the key never carries the client's
text."""

from __future__ import annotations

from typing import Any

from babelgate.protocols import get_codec
from babelgate.server.sticky_key import conversation_key

CLAUDE_USER = "user_4f1c_account_9a2b_session_0d3e6f11-2c4a-4b8e-9f10-7a6b5c4d3e2f"


def key(protocol: str, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> str | None:
    request = get_codec(protocol).parse_request(body)
    return conversation_key(headers or {}, body, request)


def claude_turn(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, **extra,
            "messages": [{"role": "user", "content": "Fix the failing test in tests/"},
                         {"role": "assistant", "content": "Looking."},
                         {"role": "user", "content": text}]}


def test_claude_code_session_header_wins_and_names_the_conversation() -> None:
    headers = {"x-claude-code-session-id": "6f1b0c52-session"}
    first = key("anthropic", claude_turn("turn one"), headers)
    assert first == key("anthropic", {**claude_turn("turn two"), "messages": [
        {"role": "user", "content": "another start"}]}, headers)
    assert first != key("anthropic", claude_turn("turn one"),
                        {"x-claude-code-session-id": "another-session"})


def test_claude_code_session_in_metadata() -> None:
    one = key("anthropic", claude_turn("a", metadata={"user_id": CLAUDE_USER}))
    assert one == key("anthropic", {**claude_turn("b", metadata={"user_id": CLAUDE_USER}),
                                    "messages": [{"role": "user", "content": "other"}]})
    assert one is not None and "session" not in one and CLAUDE_USER not in one
    # A user id without a session is a person, not a conversation: the first message decides.
    person = {"user_id": "someone@example.com"}
    assert key("anthropic", claude_turn("a", metadata=person)) == key(
        "anthropic", claude_turn("b"))


def test_codex_session_header_and_prompt_cache_key() -> None:
    body = {"model": "gpt-5", "input": [{"role": "user", "content": "hello"}]}
    for name in ("session_id", "session-id"):
        assert key("openai-responses", body, {name: "019a-abc"}) == key(
            "openai-responses", {**body, "input": "different"}, {name: "019a-abc"})
    cached = key("openai-responses", {**body, "prompt_cache_key": "019a-abc"})
    assert cached == key("openai-responses", {"model": "gpt-5", "input": "different",
                                              "prompt_cache_key": "019a-abc"})
    assert cached != key("openai-responses", {**body, "prompt_cache_key": "019a-def"})


def test_otherwise_the_first_user_message_across_turns_and_protocols() -> None:
    first = key("anthropic", claude_turn("turn one"))
    assert first == key("anthropic", claude_turn("turn two"))
    assert first != key("anthropic", {**claude_turn("x"), "messages": [
        {"role": "user", "content": "Fix the other test"}]})
    chat = {"model": "gpt", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Fix the failing test"}]}
    later = {**chat, "messages": [*chat["messages"], {"role": "assistant", "content": "ok"},
                                  {"role": "user", "content": "and now?"}]}
    assert key("openai", chat) == key("openai", later)
    assert key("openai", {"model": "gpt", "messages": [
        {"role": "system", "content": "only a system prompt"}]}) is None
    text = key("openai", chat)
    assert text is not None and "Fix" not in text and len(text) < 40
