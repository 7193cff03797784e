"""render_request: a canonical Request (often parsed from another protocol) -> a Messages body
an Anthropic-compatible upstream accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    Document,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from babelgate.protocols.anthropic import codec
from babelgate.protocols.base import Quirks

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
ANTHROPIC = Quirks(documents=True)
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def render(request: Request, quirks: Quirks = ANTHROPIC) -> dict[str, Any]:
    return codec.render_request(request, quirks)


def user(*parts: Any) -> Message:
    return Message("user", tuple(parts))


def assistant(*parts: Any) -> Message:
    return Message("assistant", tuple(parts))


def test_max_tokens_default_and_clamp() -> None:
    request = Request(model="deepseek-chat", messages=(user(Text("hi")),), max_tokens=32000)
    assert render(request, Quirks(max_tokens=8192))["max_tokens"] == 8192
    assert render(request)["max_tokens"] == 32000
    request = replace(request, max_tokens=None)
    assert render(request)["max_tokens"] == 8192
    assert render(request, Quirks(max_tokens=4096))["max_tokens"] == 4096


def test_minimal_body_has_only_messages_api_fields() -> None:
    body = render(Request(model="claude-haiku-4-5", messages=(user(Text("hi")),)))
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


def test_foreign_and_unsigned_thinking_is_dropped() -> None:
    request = Request(
        model="claude-sonnet-4-5",
        messages=(
            user(Text("go")),
            assistant(
                Reasoning(text="gemini thoughts", signature="CiQBgem", origin="gemini"),
                Reasoning(text="deepseek thoughts", origin="openai"),
                Reasoning(text="unsigned", origin="anthropic"),
                Reasoning(text="signed", signature="EqQBsig", origin="anthropic"),
                Reasoning(redacted="EmwKdata", origin="anthropic"),
                Text("done"),
            ),
        ),
    )
    content = render(request)["messages"][1]["content"]
    assert content == [
        {"type": "thinking", "thinking": "signed", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKdata"},
        {"type": "text", "text": "done"},
    ]


def test_claude_code_request_round_trip_is_clean() -> None:
    """A parsed Claude Code request rendered back: nothing the API does not define, thinking
    kept signed, cache breakpoints capped at 4 (the last ones)."""
    request = codec.parse_request(json.loads((FIXTURES / "claude_code_request.json").read_text()))
    body = render(request)
    assert "context_management" not in body
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "high"}
    assert body["metadata"] == {"user_id": request.user}
    assert body["stream"] is True
    assert [m["role"] for m in body["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    # The mid-conversation system message became user text after the tool result.
    third = body["messages"][2]["content"]
    assert [b["type"] for b in third] == ["tool_result", "text"]
    assert third[1]["text"].startswith("The user has switched to plan mode")
    marks = _cache_marks(body)
    assert len(marks) == 4
    assert marks[-1] == ("messages", "it fails on empty input")
    assert all(
        b.get("cache_control", {"type": "ephemeral"}) == {"type": "ephemeral"}
        for b in _blocks(body)
    )
    assert body["tools"][-1] == {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 8,
        "allowed_domains": ["docs.python.org"],
    }


def _blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [*body.get("tools", []), *body.get("system", [])]
    for message in body["messages"]:
        blocks += message["content"]
    return blocks


def _cache_marks(body: dict[str, Any]) -> list[tuple[str, str]]:
    marks = [("tools", t["name"]) for t in body.get("tools", []) if "cache_control" in t]
    marks += [("system", b["text"]) for b in body.get("system", []) if "cache_control" in b]
    for message in body["messages"]:
        marks += [
            ("messages", b.get("text", b["type"]))
            for b in message["content"]
            if "cache_control" in b
        ]
    return marks


def test_system_messages_and_merging() -> None:
    request = Request(
        model="m",
        system=(Text("base rules"),),
        messages=(
            Message("system", (Text("developer instructions"),)),
            user(Text("first")),
            user(Text("  ")),  # whitespace-only: dropped
            user(Text("second")),
            Message("system", (Text("mid-conversation note"),)),
            assistant(Text("")),
            assistant(Text("answer")),
        ),
    )
    body = render(request)
    assert body["system"] == [
        {"type": "text", "text": "base rules"},
        {"type": "text", "text": "developer instructions"},
    ]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first"},
                {"type": "text", "text": "second"},
                {"type": "text", "text": "mid-conversation note"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
    ]


def test_tool_results_lead_their_user_turn() -> None:
    request = Request(
        model="m",
        messages=(
            user(Text("list files")),
            assistant(ToolCall(id="functions.shell:0", name="shell", arguments={"cmd": "ls"})),
            Message("system", (Text("be brief"),)),
            user(ToolResult(call_id="functions.shell:0", content=(Text("a.py"),))),
        ),
    )
    messages = render(request)["messages"]
    assert messages[1]["content"][0]["id"] == "functions_shell_0"
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text"]
    assert messages[2]["content"][0]["tool_use_id"] == "functions_shell_0"


def test_tool_names_tool_kinds_and_choice() -> None:
    request = Request(
        model="m",
        messages=(user(Text("x")),),
        tools=(
            Tool(
                name="mcp.server/read file",
                description="reads",
                parameters={"type": "object", "properties": {"p": {"type": "string"}}},
            ),
            Tool(
                name="apply_patch", kind="custom", description="patch", format={"type": "grammar"}
            ),
            Tool(
                name="web_search",
                kind="hosted",
                hosted_type="web_search",
                config={"search_context_size": "low"},
            ),
            Tool(name="file_search", kind="hosted", hosted_type="file_search"),
        ),
        tool_choice=ToolChoice("tool", "mcp.server/read file"),
        parallel_tool_calls=False,
    )
    body = render(request)
    names = [t["name"] for t in body["tools"]]
    assert all(NAME.match(n) for n in names)
    assert names[0] != "mcp.server/read file" and names[0] == render(request)["tools"][0]["name"]
    assert body["tools"][1]["input_schema"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }
    assert body["tools"][2] == {"type": "web_search_20250305", "name": "web_search"}
    assert len(body["tools"]) == 3  # file_search has no Anthropic equivalent
    assert body["tool_choice"] == {
        "type": "tool",
        "name": names[0],
        "disable_parallel_tool_use": True,
    }


def test_thinking_budget_rules() -> None:
    def thinking(config: ReasoningConfig, max_tokens: int = 16000) -> Any:
        request = Request(
            model="m", messages=(user(Text("x")),), max_tokens=max_tokens, reasoning=config
        )
        return render(request).get("thinking")

    assert thinking(ReasoningConfig(enabled=True, budget_tokens=500)) == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
    assert thinking(ReasoningConfig(enabled=True, budget_tokens=50000)) == {
        "type": "enabled",
        "budget_tokens": 15999,
    }
    assert thinking(ReasoningConfig(effort="low")) == {"type": "enabled", "budget_tokens": 4096}
    # A budget derived from effort leaves half of max_tokens for the answer...
    assert thinking(ReasoningConfig(effort="high"), max_tokens=8000) == {
        "type": "enabled",
        "budget_tokens": 4000,
    }
    assert thinking(ReasoningConfig(effort="medium"), max_tokens=2000) == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
    # ...one the client chose is kept as far as the API allows.
    assert thinking(ReasoningConfig(enabled=True, budget_tokens=7000), max_tokens=8000) == {
        "type": "enabled",
        "budget_tokens": 7000,
    }
    assert thinking(ReasoningConfig(effort="high"), max_tokens=1000) is None  # no room to think
    assert thinking(ReasoningConfig(enabled=False)) == {"type": "disabled"}
    assert thinking(ReasoningConfig(effort="none")) == {"type": "disabled"}
    assert thinking(ReasoningConfig(enabled=True, adaptive=True)) == {"type": "adaptive"}
    assert thinking(ReasoningConfig()) is None


def test_thinking_turns_forced_tool_choice_into_auto_and_drops_sampling() -> None:
    request = Request(
        model="m",
        messages=(user(Text("x")),),
        max_tokens=20000,
        tools=(Tool(name="f"),),
        tool_choice=ToolChoice("required"),
        reasoning=ReasoningConfig(enabled=True, budget_tokens=4000),
        temperature=0.2,
        top_k=40,
        top_p=0.5,
        stop=("END",),
        user="u-1",
    )
    body = render(request)
    assert body["tool_choice"] == {"type": "auto"}
    assert "temperature" not in body and "top_k" not in body
    assert body["top_p"] == 0.95
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    request = replace(request, reasoning=None, temperature=1.7)  # an OpenAI client's range
    body = render(request)
    assert body["tool_choice"] == {"type": "any"}
    assert (body["temperature"], body["top_k"], body["top_p"]) == (1.0, 40, 0.5)


def test_thinking_off_when_last_tool_turn_lost_its_reasoning() -> None:
    """The conversation came from Gemini: its reasoning cannot go to Anthropic, and Anthropic
    rejects a thinking request whose pending tool turn does not start with thinking."""
    request = Request(
        model="claude-sonnet-4-5",
        messages=(
            user(Text("x")),
            assistant(
                Reasoning(text="t", signature="CiQB", origin="gemini"), ToolCall(id="c1", name="f")
            ),
            user(ToolResult(call_id="c1", content=(Text("ok"),))),
        ),
        tools=(Tool(name="f"),),
        reasoning=ReasoningConfig(enabled=True, budget_tokens=2048),
    )
    assert "thinking" not in render(request)
    first, tool_turn, result = request.messages
    anthropic_turn = replace(tool_turn, parts=(
        Reasoning(text="t", signature="EqQB", origin="anthropic"), *tool_turn.parts[1:]))
    request = replace(request, messages=(first, anthropic_turn, result))
    assert render(request)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_images_and_documents() -> None:
    request = Request(
        model="m",
        messages=(
            user(
                Image(url="data:image/jpeg;base64,/9j/4AAQ"),
                Image(url="https://x.test/cat.png", cache=True),
                Document(media_type="application/pdf", data="JVBERi0=", filename="spec.pdf"),
                Document(text="notes", title="notes.txt"),
            ),
        ),
    )
    content = render(request)["messages"][0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
    }
    assert content[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://x.test/cat.png"},
        "cache_control": {"type": "ephemeral"},
    }
    assert content[2] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        "title": "spec.pdf",
    }
    assert content[3]["source"] == {"type": "text", "media_type": "text/plain", "data": "notes"}
    # An upstream without image or file input gets a placeholder, not a 400.
    limited = render(request, Quirks(images=False, documents=False))["messages"][0]["content"]
    assert [b["type"] for b in limited] == ["text", "text", "text", "document"]


def test_tool_result_with_image_and_error() -> None:
    request = Request(
        model="m",
        messages=(
            assistant(ToolCall(id="toolu_1", name="screenshot")),
            user(
                ToolResult(
                    call_id="toolu_1",
                    is_error=True,
                    content=(Text(""), Image(media_type="image/png", data="iVBO")),
                )
            ),
        ),
    )
    result = render(request)["messages"][1]["content"][0]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
            }
        ],
        "is_error": True,
    }


def test_no_cache_control_on_thinking_and_at_most_four() -> None:
    request = Request(
        model="m",
        system=(Text("s1", cache=True), Text("s2", cache=True)),
        tools=(Tool(name="t", cache=True),),
        messages=(
            user(Text("u1", cache=True)),
            assistant(
                Reasoning(text="r", signature="EqQB", origin="anthropic"), Text("a1", cache=True)
            ),
            user(Text("u2", cache=True)),
        ),
    )
    body = render(request)
    assert _cache_marks(body) == [
        ("system", "s2"),
        ("messages", "u1"),
        ("messages", "a1"),
        ("messages", "u2"),
    ]
    assert "cache_control" not in body["messages"][1]["content"][0]


def test_count_tokens_body() -> None:
    request = codec.parse_count_tokens_request(
        json.loads((FIXTURES / "claude_code_request.json").read_text())
    )
    body = codec.render_count_tokens(request, ANTHROPIC)
    assert body is not None
    assert {"max_tokens", "stream", "metadata"}.isdisjoint(body)
    assert {"model", "messages", "system", "tools", "thinking"} <= set(body)
    assert codec.parse_count_tokens({"input_tokens": 2095}) == 2095
    assert codec.parse_count_tokens({"error": "nope"}) is None


def test_history_with_tool_calls_but_no_tools_declares_stubs() -> None:
    """A title or summary request often drops the tool list but keeps the history; Anthropic
    rejects tool_use blocks without tool definitions."""
    request = Request(
        model="m",
        messages=(
            user(Text("x")),
            assistant(ToolCall(id="c1", name="Read", arguments={"file_path": "/a"})),
            user(ToolResult(call_id="c1", content=(Text("ok"),)), Text("summarize")),
        ),
        tool_choice=ToolChoice("auto"),
    )
    body = render(request)
    assert body["tools"] == [{"name": "Read", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "none"}
    assert "tools" not in render(Request(model="m", messages=(user(Text("x")),)))


def test_prefill_loses_trailing_whitespace() -> None:
    request = Request(model="m", messages=(user(Text("json please")), assistant(Text("{\n  "))))
    assert render(request)["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "{"}],
    }


def test_schema_and_image_types_anthropic_requires() -> None:
    request = Request(
        model="m",
        messages=(user(Image(media_type="image/bmp", data="Qk0="), Text("what is it?")),),
        tools=(
            Tool(name="noargs", parameters={}),
            Tool(name="typed", parameters={"properties": {}}),
        ),
    )
    body = render(request)
    assert [t["input_schema"]["type"] for t in body["tools"]] == ["object", "object"]
    assert body["messages"][0]["content"][0]["type"] == "text"  # bmp: Anthropic rejects it


def test_bodies_pass_the_strict_fake_anthropic() -> None:
    """Cross-check with the independent strict fake (tests/fakes/anthropic.py): a history that
    switched upstreams mid-conversation, rendered for Anthropic, is a request it accepts."""
    fake = pytest.importorskip("tests.fakes.anthropic")
    signed = fake.sign("I should list files.")
    request = Request(
        model="claude-sonnet-4-5",
        max_tokens=64000,
        system=(Text("rules", cache=True),),
        messages=(
            Message("system", (Text("developer note", cache=True),)),
            user(Text("list files", cache=True), Image(url="data:image/png;base64,iVBO")),
            assistant(
                Reasoning(text="gemini", signature="CiQB", origin="gemini"),
                Text("\n\n"),
                ToolCall(id="functions.shell:0", name="functions.shell", arguments={"cmd": "ls"}),
            ),
            Message("system", (Text("mid note"),)),
            user(ToolResult(call_id="functions.shell:0", content=(Text("a.py"),), cache=True)),
            assistant(
                Reasoning(text="I should list files.", signature=signed, origin="anthropic"),
                ToolCall(id="toolu_2", name="functions.shell", arguments={"cmd": "ls -a"}),
            ),
            user(ToolResult(call_id="toolu_2", content=(Text(""),)), Text("thanks", cache=True)),
        ),
        tools=(Tool(name="functions.shell", parameters={}, cache=True),),
        tool_choice=ToolChoice("required"),
        reasoning=ReasoningConfig(effort="high"),
        temperature=0.3,
    )
    for quirks in (ANTHROPIC, Quirks(max_tokens=8192)):
        fake.validate_request(render(request, quirks), counting=False, betas=frozenset())
    fake.validate_request(
        codec.render_count_tokens(request, ANTHROPIC), counting=True, betas=frozenset()
    )


def test_unanswered_calls_and_orphan_results_are_repaired() -> None:
    """An OpenAI client interrupted mid-call (no tool message) and later sent a result for a
    call the history no longer has: Anthropic would reject both."""
    request = Request(
        model="m",
        messages=(
            user(Text("run it")),
            assistant(ToolCall(id="call_a", name="f"), ToolCall(id="call_b", name="f")),
            user(ToolResult(call_id="call_b", content=(Text("b done"),)), Text("go on")),
            assistant(Text("ok")),
            user(ToolResult(call_id="call_gone", content=(Text("late"),))),
            assistant(ToolCall(id="call_c", name="f")),
        ),
        tools=(Tool(name="f"),),
    )
    messages = render(request)["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    answers = messages[2]["content"]
    assert [(b["type"], b.get("tool_use_id")) for b in answers] == [
        ("tool_result", "call_a"),
        ("tool_result", "call_b"),
        ("text", None),
    ]
    assert answers[0]["is_error"] is True
    assert messages[4]["content"] == [
        {"type": "text", "text": "Result of an earlier tool call call_gone:"},
        {"type": "text", "text": "late"},
    ]
    assert messages[6]["content"][0]["tool_use_id"] == "call_c"
    fake = pytest.importorskip("tests.fakes.anthropic")
    fake.validate_request(render(request), counting=False, betas=frozenset())


def test_auto_cache_marks_tools_system_and_newest_turn_for_unmarked_agents() -> None:
    """A Codex or Chat client cannot mark cache breakpoints: with `auto_cache`, the end of
    the tools, of the system prompt and of the newest turn are marked, so the next turn reads
    the shared prefix from Anthropic's cache. A client's own marks win; thinking is never
    marked; a plain chat without tools or system is left alone."""
    from babelgate.canonical import Message, Reasoning, Request, Text, Tool, ToolCall, ToolResult
    from babelgate.protocols import get_codec
    from babelgate.protocols.base import Quirks

    codec = get_codec("anthropic")
    quirks = Quirks(auto_cache=True)
    request = Request(
        model="claude-x",
        system=(Text("You are Codex."),),
        tools=(Tool("exec_command"), Tool("apply_patch")),
        messages=(
            Message("user", (Text("list files"),)),
            Message("assistant", (ToolCall("call_1", "exec_command", {"cmd": "ls"}),)),
            Message("user", (ToolResult("call_1", (Text("a.txt"),)),)),
        ),
    )
    body = codec.render_request(request, quirks)
    marked = [b for b in (*body["tools"], *body["system"]) if "cache_control" in b]
    marked += [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
    assert [b.get("name") or b.get("type") for b in marked] == [
        "apply_patch", "text", "tool_result"]
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}

    plain = Request(model="claude-x", messages=(Message("user", (Text("hi"),)),))
    assert "cache_control" not in str(codec.render_request(plain, quirks))

    own = Request(model="claude-x", system=(Text("rules", cache=True),), tools=(Tool("t"),),
                  messages=(Message("user", (Text("hi"),)),))
    own_body = codec.render_request(own, quirks)
    assert own_body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in own_body["tools"][0]
    assert "cache_control" not in own_body["messages"][0]["content"][0]

    thinking_last = Request(model="claude-x", system=(Text("s"),), messages=(
        Message("user", (Text("q"),)),
        Message("assistant", (Reasoning("t", signature="sig", origin="anthropic"),)),
    ))
    last = codec.render_request(thinking_last, quirks)["messages"][-1]["content"][-1]
    assert "cache_control" not in last
