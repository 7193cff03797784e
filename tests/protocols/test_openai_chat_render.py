"""Canonical Request -> Chat Completions body for upstreams (render_request)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

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
from babelgate.protocols.base import Quirks
from babelgate.protocols.openai_chat import codec
from babelgate.protocols.openai_chat.names import wire_call_id, wire_name
from babelgate.protocols.openai_chat.render_messages import MISSING_RESULT

OPENAI = Quirks(max_tokens_field="max_completion_tokens", system_anywhere=True)
DEEPSEEK = Quirks(max_tokens=8192, reasoning_control="thinking", echo_reasoning=True)
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
    "hQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _req(messages: Sequence[Message], **kwargs: Any) -> Request:
    """A request of `messages` (a test's own list, made the canonical tuple here)."""
    return Request(model="up-model", messages=tuple(messages), **kwargs)


def _call(call_id: str, name: str = "Bash", **args: object) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=dict(args))


def _result(call_id: str, text: str, *more: Text | Image | Document) -> ToolResult:
    return ToolResult(call_id=call_id, content=(Text(text), *more))


MID_SYSTEM = [
    Message("user", (Text("hi"),)),
    Message("assistant", (Text("hello"),)),
    Message("system", (Text("Be brief from now on."),)),
    Message("user", (Text("go"),)),
]


def test_system_first_and_mid_conversation_system_in_place() -> None:
    body = codec.render_request(
        _req(MID_SYSTEM, system=(Text("You are Claude Code."), Text("Env: linux"))),
        OPENAI,  # system_anywhere: OpenAI takes system messages where they are
    )
    assert body["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nEnv: linux"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Be brief from now on."},
        {"role": "user", "content": "go"},
    ]


def test_mid_conversation_system_folds_into_the_first_elsewhere() -> None:
    """llama.cpp's and vLLM's chat templates reject or drop a second system message."""
    later = [*MID_SYSTEM, Message("system", (Text("And in French."),))]
    body = codec.render_request(_req(later, system=(Text("You are Claude Code."),)), Quirks())
    assert body["messages"] == [
        {"role": "system",
         "content": "You are Claude Code.\n\nBe brief from now on.\n\nAnd in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "go"},
    ]
    alone = codec.render_request(_req(MID_SYSTEM), Quirks())  # no system prompt of its own
    assert alone["messages"][0] == {"role": "system", "content": "Be brief from now on."}
    assert [m["role"] for m in alone["messages"]] == ["system", "user", "assistant", "user"]


def test_tool_results_follow_their_calls_then_user_text() -> None:
    messages = [
        Message("user", (Text("fix it"),)),
        Message(
            "assistant",
            (Text("Looking."), _call("toolu_01A", command="ls"), _call("toolu_01B", command="pwd")),
        ),
        # Results in the opposite order and mixed with text: tool messages come first,
        # in call order, then the user's text.
        Message(
            "user",
            (_result("toolu_01B", "/repo"), Text("also check tests"), _result("toolu_01A", "a.py")),
        ),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert wire[1] == {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
            },
            {
                "id": "toolu_01B",
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command":"pwd"}'},
            },
        ],
    }
    assert wire[2:] == [
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "a.py"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "/repo"},
        {"role": "user", "content": "also check tests"},
    ]


def test_missing_result_is_filled_and_orphan_result_becomes_text() -> None:
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (_call("call_1"), _call("call_2"))),
        Message("user", (_result("call_1", "ok"), _result("call_zzz", "stray output"))),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert wire[1]["content"] is None  # only tool calls: null, never ""
    assert wire[2] == {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    assert wire[3] == {"role": "tool", "tool_call_id": "call_2", "content": MISSING_RESULT}
    assert wire[4]["role"] == "user"
    assert "call_zzz" in wire[4]["content"] and "stray output" in wire[4]["content"]
    assert [m["role"] for m in wire].count("tool") == 2


def test_missing_result_when_conversation_ends_on_assistant_calls() -> None:
    messages = [Message("user", (Text("go"),)), Message("assistant", (_call("c1"),))]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert wire[-1] == {"role": "tool", "tool_call_id": "c1", "content": MISSING_RESULT}


def test_repeated_call_ids_across_turns_match_their_own_results() -> None:
    # Kimi numbers calls per turn, so the same id appears in two turns.
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (_call("functions_Bash_0", command="ls"),)),
        Message("user", (_result("functions_Bash_0", "first"),)),
        Message("assistant", (_call("functions_Bash_0", command="pwd"),)),
        Message("user", (_result("functions_Bash_0", "second"),)),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert [m["content"] for m in wire if m["role"] == "tool"] == ["first", "second"]


def test_images_in_tool_results_follow_in_a_user_message() -> None:
    screenshot = Image(media_type="image/png", data=PNG)
    messages = [
        Message("user", (Text("screenshot please"),)),
        Message("assistant", (_call("c1", "Screenshot"),)),
        Message("user", (_result("c1", "captured", screenshot), Text("what do you see?"))),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    tool, user = wire[2], wire[3]
    assert tool["role"] == "tool" and tool["content"].startswith("captured")
    assert user == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "what do you see?"},
        ],
    }
    # Without image support the image becomes a note inside the tool message.
    no_images = codec.render_request(_req(messages), Quirks(images=False))["messages"]
    assert "image omitted" in no_images[2]["content"]
    assert no_images[3] == {"role": "user", "content": "what do you see?"}


def test_error_result_is_marked() -> None:
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (_call("c1"),)),
        Message("user", (ToolResult(call_id="c1", content=(Text("exit 1"),), is_error=True),)),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert wire[2]["content"] == "Error: exit 1"


def test_images_and_documents_in_user_messages() -> None:
    pdf = Document(media_type="application/pdf", data="JVBERi0x", filename="spec.pdf")
    notes = Document(text="line one", title="notes.txt")
    url_image = Image(url="https://example.com/a.png", detail="high")
    message = Message("user", (Text("read these"), url_image, pdf, notes))
    with_docs = codec.render_request(_req([message]), Quirks(documents=True))["messages"][0]
    assert with_docs["content"] == [
        {"type": "text", "text": "read these"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {
            "type": "file",
            "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        },
        {"type": "text", "text": "Document: notes.txt\nline one"},
    ]
    plain = codec.render_request(_req([message]), Quirks(images=False))["messages"][0]
    assert isinstance(plain["content"], str)  # text only: one string
    assert "image omitted" in plain["content"]
    assert "application/pdf" in plain["content"] and "JVBERi0x" not in plain["content"]


def test_deepseek_echoes_reasoning_on_assistant_turns() -> None:
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (Reasoning(text="need ls", origin="openai"), _call("c1"))),
        Message("user", (_result("c1", "a.py"),)),
        Message("assistant", (_call("c2"),)),  # a turn from another model: no reasoning
        Message("user", (_result("c2", "b.py"),)),
        Message("assistant", (Reasoning(text="done", origin="openai"), Text("All good."))),
        Message("user", (Text("thanks"),)),
    ]
    wire = codec.render_request(_req(messages), DEEPSEEK)["messages"]
    assistants = [m for m in wire if m["role"] == "assistant"]
    assert [a.get("reasoning_content") for a in assistants] == ["need ls", "", "done"]
    # Other upstreams never see the field.
    plain = codec.render_request(_req(messages), OPENAI)["messages"]
    assert not any("reasoning_content" in m for m in plain)
    # OpenRouter-style upstreams take it under their own name.
    router = codec.render_request(
        _req(messages), Quirks(echo_reasoning=True, reasoning_field="reasoning")
    )["messages"]
    assert next(m.get("reasoning") for m in router if m["role"] == "assistant") == "need ls"


LONG = "mcp__claude_ai_Atlassian__searchConfluenceUsingCqlWithPaginationAndExpansion"


def test_long_and_invalid_tool_names_are_shortened_and_mapped_back() -> None:
    tools = (
        Tool(name=LONG, description="search", parameters={"type": "object"}),
        Tool(name="server.tool:v2", parameters={"type": "object"}),
        Tool(name="Bash", parameters={"type": "object"}),
    )
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (_call("c1", LONG, q="x"),)),
        Message("user", (_result("c1", "found"),)),
    ]
    request = _req(messages, tools=tools, tool_choice=ToolChoice(mode="tool", name=LONG))
    body = codec.render_request(request, OPENAI)
    names = [t["function"]["name"] for t in body["tools"]]
    assert names[2] == "Bash"
    for name in names:
        assert len(name) <= 64 and all(c.isalnum() or c in "_-" for c in name)
    assert len(set(names)) == 3
    assert names[0] == wire_name(LONG)  # deterministic
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == names[0]
    assert body["tool_choice"] == {"type": "function", "function": {"name": names[0]}}
    # And back: the upstream calls the short name, the client sees its own.
    response = codec.parse_response(
        {
            "choices": [
                {
                    "message": {
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": names[1], "arguments": "{}"},
                            },
                            {
                                "id": "call_8",
                                "type": "function",
                                "function": {"name": names[0], "arguments": "{}"},
                            },
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
        request,
    )
    assert [p.name for p in response.parts if isinstance(p, ToolCall)] == ["server.tool:v2", LONG]


def test_long_call_ids_shortened_consistently() -> None:
    long_id = "toolu_01ABCDEFGHIJKLMNOPQRSTUV__bg1_eyJ0aG91Z2h0X3NpZ25hdHVyZSI6ImFiYyJ9"
    messages = [
        Message("user", (Text("go"),)),
        Message("assistant", (_call(long_id),)),
        Message("user", (_result(long_id, "ok"),)),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    sent = wire[1]["tool_calls"][0]["id"]
    assert len(sent) <= 40 and sent == wire_call_id(long_id)
    assert wire[2]["tool_call_id"] == sent


def test_tools_custom_hosted_choice_and_parallel() -> None:
    tools = [
        Tool(
            name="Read",
            description="Read a file",
            parameters={"type": "object", "properties": {"path": {"type": "string"}}},
            strict=True,
            cache=True,
        ),
        Tool(
            name="apply_patch",
            kind="custom",
            description="Patch files",
            format={"type": "grammar", "syntax": "lark", "definition": "start: 'x'"},
        ),
        Tool(name="web_search", kind="hosted", hosted_type="web_search_20250305"),
    ]
    body = codec.render_request(
        _req(
            [Message("user", (Text("go"),))],
            tools=tools,
            tool_choice=ToolChoice(mode="required"),
            parallel_tool_calls=False,
        ),
        OPENAI,
    )
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "Read",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            "strict": True,
        },
    }
    custom = body["tools"][1]["function"]
    assert custom["parameters"]["required"] == ["input"]
    assert custom["parameters"]["properties"]["input"]["type"] == "string"
    assert "start: 'x'" in custom["parameters"]["properties"]["input"]["description"]
    assert len(body["tools"]) == 2  # hosted tool dropped
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False


def test_no_tools_means_no_tool_choice_or_parallel_flag() -> None:
    body = codec.render_request(
        _req(
            [Message("user", (Text("go"),))],
            tools=[Tool(name="web_search", kind="hosted")],
            tool_choice=ToolChoice(mode="auto"),
            parallel_tool_calls=True,
        ),
        OPENAI,
    )
    assert "tools" not in body and "tool_choice" not in body
    assert "parallel_tool_calls" not in body


def test_max_tokens_clamped_and_named_per_quirk() -> None:
    request = _req([Message("user", (Text("go"),))], max_tokens=32000)
    assert codec.render_request(request, DEEPSEEK)["max_tokens"] == 8192
    openai = codec.render_request(request, OPENAI)
    assert openai["max_completion_tokens"] == 32000 and "max_tokens" not in openai
    small = _req([Message("user", (Text("go"),))], max_tokens=100)
    assert codec.render_request(small, DEEPSEEK)["max_tokens"] == 100


@pytest.mark.parametrize(
    ("control", "config", "expected"),
    [
        ("reasoning_effort", ReasoningConfig(effort="high"), {"reasoning_effort": "high"}),
        ("reasoning_effort", ReasoningConfig(effort="max"), {"reasoning_effort": "high"}),
        (
            "reasoning_effort",
            ReasoningConfig(enabled=True, budget_tokens=2000),
            {"reasoning_effort": "low"},
        ),
        (
            "reasoning_effort",
            ReasoningConfig(enabled=True, budget_tokens=10000),
            {"reasoning_effort": "medium"},
        ),
        (
            "reasoning_effort",
            ReasoningConfig(enabled=True, budget_tokens=31999),
            {"reasoning_effort": "high"},
        ),
        ("reasoning_effort", ReasoningConfig(enabled=False), {}),
        (
            "thinking",
            ReasoningConfig(enabled=True, budget_tokens=8000),
            {"thinking": {"type": "enabled"}},
        ),
        ("thinking", ReasoningConfig(enabled=False), {"thinking": {"type": "disabled"}}),
        ("thinking", ReasoningConfig(adaptive=True), {"thinking": {"type": "enabled"}}),
        (
            "enable_thinking",
            ReasoningConfig(enabled=True, budget_tokens=4096),
            {"enable_thinking": True, "thinking_budget": 4096},
        ),
        ("enable_thinking", ReasoningConfig(effort="none"), {"enable_thinking": False}),
        ("reasoning", ReasoningConfig(effort="medium"), {"reasoning": {"effort": "medium"}}),
        (
            "reasoning",
            ReasoningConfig(enabled=True, budget_tokens=5000),
            {"reasoning": {"max_tokens": 5000}},
        ),
        ("reasoning", ReasoningConfig(enabled=False), {"reasoning": {"enabled": False}}),
        (
            "chat_template_kwargs",
            ReasoningConfig(enabled=True),
            {"chat_template_kwargs": {"enable_thinking": True}},
        ),
        ("none", ReasoningConfig(enabled=True, budget_tokens=9000), {}),
        ("thinking", ReasoningConfig(), {}),
    ],
)
def test_reasoning_control_per_quirk(
    control: str, config: ReasoningConfig, expected: dict[str, object]
) -> None:
    body = codec.render_request(
        _req([Message("user", (Text("go"),))], reasoning=config),
        Quirks(reasoning_control=control),  # type: ignore[arg-type]
    )
    keys = {
        "reasoning_effort",
        "thinking",
        "enable_thinking",
        "thinking_budget",
        "reasoning",
        "chat_template_kwargs",
    }
    assert {k: v for k, v in body.items() if k in keys} == expected


def test_stream_options_and_sampling_fields() -> None:
    request = _req(
        [Message("user", (Text("go", cache=True),))],
        stream=True,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop=["a", "b", "c", "d", "e"],
        user="user-123",
        response_format={"type": "json_object"},
        n=3,
        previous_response_id="resp_1",
        store=False,
    )
    body = codec.render_request(request, OPENAI)
    assert body == {
        "model": "up-model",
        "messages": [{"role": "user", "content": "go"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["a", "b", "c", "d"],
        "user": "user-123",
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    loose = codec.render_request(request, Quirks(strict_fields=False, stream_usage=False))
    assert loose["top_k"] == 40 and len(loose["stop"]) == 5
    assert "stream_options" not in loose and loose["stream"] is True


def test_empty_assistant_turn_is_dropped() -> None:
    messages = [
        Message("user", (Text("a"),)),
        Message("assistant", (Text(""),)),
        Message("user", (Text("b"),)),
    ]
    wire = codec.render_request(_req(messages), OPENAI)["messages"]
    assert all(m.get("content") != "" for m in wire)
    assert [m["role"] for m in wire] == ["user", "user"]


def test_long_end_user_id_is_hashed_stably() -> None:
    claude_code_user = "user_" + "ab" * 32 + "_account_1b2c3d4e_session_0f1e2d3c-4b5a-6978-8a9b"
    request = _req([Message("user", (Text("go"),))], user=claude_code_user)
    first = codec.render_request(request, OPENAI)["user"]
    assert len(first) <= 64 and first == codec.render_request(request, OPENAI)["user"]
    short = _req([Message("user", (Text("go"),))], user="dev-42")
    assert codec.render_request(short, OPENAI)["user"] == "dev-42"
