"""OpenAI Responses codec: client requests in (Codex's real shape) and upstream requests out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from babelgate.canonical import (
    Document,
    GatewayError,
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
from babelgate.protocols import get_codec
from babelgate.protocols.base import Quirks

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses"
codec = get_codec("openai-responses")

GEMINI_SIGNATURE = "CiQB0e2Kb5+dX3ZsQpTUMrr6N4Q6d8pXx9u4Qm2aVb0kYvq1cU8="
ANTHROPIC_SIGNATURE = (
    "EqQBCkgIARABGAIiQL7dXlGPL5m0cZ3Xr0h2vQ1g0d3cR+Ym8qFj9xV0bYkC3tHq2cYq4Zp4nJ2bHk4Q1hX7"
    "nqP3Xl2Z1Q2kQzIgYFxkPjQjD0J8"
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def invalid_param(body: dict[str, Any]) -> str | None:
    with pytest.raises(GatewayError) as info:
        codec.parse_request(body)
    assert info.value.kind == "invalid_request"
    assert info.value.status == 400
    return info.value.param


# ---------------------------------------------------------------- Codex first turn


def test_codex_first_turn_system_and_user_messages() -> None:
    request = codec.parse_request(load("codex_request_first_turn.json"))
    assert request.model == "gpt-5.1-codex"
    assert request.stream is True
    # instructions, then the leading developer message, become the system prompt in order
    assert [t.text[:30] for t in request.system] == [
        "You are Codex, based on GPT-5.",
        "<permissions instructions>\nFil",
    ]
    # the three user items join one user turn: AGENTS.md, environment_context, the prompt
    assert len(request.messages) == 1
    user = request.messages[0]
    assert user.role == "user"
    texts = [p.text for p in user.parts if isinstance(p, Text)]
    assert texts[0].startswith("# AGENTS.md instructions")
    assert texts[1].startswith("<environment_context>")
    assert texts[2] == "Fix the failing test in tests/test_parser.py"
    image = user.parts[3]
    assert isinstance(image, Image)
    assert image.media_type == "image/png"
    assert image.data is not None and image.data.startswith("iVBORw0KGgo")
    assert image.url is None


def test_codex_first_turn_tools() -> None:
    request = codec.parse_request(load("codex_request_first_turn.json"))
    by_name = {t.name: t for t in request.tools}
    assert list(by_name) == [
        "shell",
        "exec_command",
        "update_plan",
        "apply_patch",
        "tool_search",
        "web_search",
        "view_image",
    ]
    shell = by_name["shell"]
    assert shell.kind == "function" and shell.strict is False
    assert shell.parameters["required"] == ["command"]
    patch = by_name["apply_patch"]
    assert patch.kind == "custom"
    assert patch.format is not None and patch.format["syntax"] == "lark"
    assert patch.format["definition"].startswith("start: begin_patch")
    search = by_name["tool_search"]
    # Client-executed: a plain function every upstream can offer, marked for the way back.
    assert search.kind == "function"
    assert search.description == "Search the available MCP tools by keyword."
    assert search.parameters["required"] == ["query"]
    assert search.config is not None
    assert search.config["client_tool_search"]["execution"] == "client"
    web = by_name["web_search"]
    assert web.kind == "hosted" and web.config == {"external_web_access": False}


def test_codex_first_turn_settings_and_dropped_fields() -> None:
    request = codec.parse_request(load("codex_request_first_turn.json"))
    assert request.tool_choice == ToolChoice("auto")
    assert request.parallel_tool_calls is False
    assert request.reasoning == ReasoningConfig(enabled=True, effort="medium", summary="auto")
    assert request.store is False
    assert request.response_format is None  # text.verbosity alone has no canonical meaning
    # Codex-only fields are not carried anywhere on the canonical request
    flat = repr(request)
    for leaked in ("client_metadata", "x-codex-turn-metadata", "prompt_cache_key", "0199d8e4"):
        assert leaked not in flat


# ---------------------------------------------------------------- Codex second turn


def second_turn() -> Request:
    return codec.parse_request(load("codex_request_second_turn.json"))


def test_second_turn_turn_structure() -> None:
    request = second_turn()
    roles = [m.role for m in request.messages]
    # user | assistant (reasoning, text, call) | results | assistant (reasoning, call) |
    # result | assistant (reasoning, custom call) | result | assistant text | mid system |
    # user (web_search_call skipped)
    assert roles == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "system",
        "user",
    ]
    assert len(request.system) == 2  # instructions + the leading developer message
    assert list(request.messages[8].parts) == [
        Text(
            "<permissions instructions>\nApproval policy is now on-request.\n"
            "</permissions instructions>"
        )
    ]


def test_second_turn_anthropic_envelope_restored() -> None:
    assistant = second_turn().messages[1]
    thinking, text, call = assistant.parts
    assert thinking == Reasoning(
        text="I should look at the test first, then the parser.",
        signature=ANTHROPIC_SIGNATURE,
        origin="anthropic",
    )
    assert text == Text("Let me read the test.")
    assert isinstance(call, ToolCall)
    assert call.id == "toolu_01A9xY2bQ3cR4dS5eT6fU7gV"
    assert call.arguments == {
        "command": ["bash", "-lc", "sed -n 1,40p tests/test_parser.py"],
        "workdir": "/home/dev/project",
    }


def test_second_turn_gemini_call_id_split_back() -> None:
    request = second_turn()
    reasoning, call = request.messages[3].parts
    assert isinstance(reasoning, Reasoning)
    assert reasoning.origin == "gemini"
    assert reasoning.provider_metadata == {"thought_signature": GEMINI_SIGNATURE}
    assert isinstance(call, ToolCall)
    assert call.id == "call_gem1"  # the upstream's own id, metadata split off
    assert call.provider_metadata == {"thought_signature": GEMINI_SIGNATURE}
    (result,) = request.messages[4].parts
    assert isinstance(result, ToolResult)
    assert result.call_id == "call_gem1"
    assert result.name == "exec_command"  # looked up from the call, for Gemini
    assert list(result.content) == [Text("src/parser.py:12:def parse(text):")]


def test_second_turn_openai_reasoning_and_custom_call() -> None:
    request = second_turn()
    reasoning, call = request.messages[5].parts
    assert isinstance(reasoning, Reasoning)
    assert reasoning.origin == "openai-responses"
    assert reasoning.redacted is not None and reasoning.redacted.startswith("gAAAAAB")
    assert list(reasoning.summary) == [
        "**Fixing the empty case**\n\nThe parser returns None for empty input."
    ]
    assert isinstance(call, ToolCall)
    assert call.kind == "custom" and call.name == "apply_patch"
    assert call.arguments["input"].startswith("*** Begin Patch\n*** Update File: src/parser.py")
    (result,) = request.messages[6].parts
    assert isinstance(result, ToolResult)
    assert result.kind == "custom" and result.call_id == "call_Pq8rS9tU0vW1xY2z"
    output = result.content[0]
    assert isinstance(output, Text) and "Updated the following files" in output.text


# ---------------------------------------------------------------- other input shapes


def test_string_input_and_short_message_form() -> None:
    request = codec.parse_request({"model": "m", "input": "hello"})
    assert list(request.messages) == [Message("user", (Text("hello"),))]
    request = codec.parse_request(
        {
            "model": "m",
            "input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        }
    )
    assert list(request.system) == [Text("be brief")]
    assert list(request.messages) == [Message("user", (Text("hi"),))]


def test_image_url_file_and_tool_output_content_list() -> None:
    body = {
        "model": "m",
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/a.png",
                        "detail": "high",
                    },
                    {
                        "type": "input_file",
                        "filename": "spec.pdf",
                        "file_data": "data:application/pdf;base64,JVBERi0x",
                    },
                    {"type": "input_file", "file_url": "https://example.com/b.pdf"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": ""},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [
                    {"type": "input_text", "text": "screenshot:"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/4AAQ"},
                ],
            },
        ],
    }
    request = codec.parse_request(body)
    image, pdf, linked = request.messages[0].parts
    assert image == Image(url="https://example.com/a.png", detail="high")
    assert pdf == Document(media_type="application/pdf", data="JVBERi0x", filename="spec.pdf")
    assert isinstance(linked, Document) and linked.url == "https://example.com/b.pdf"
    call = request.messages[1].parts[0]
    assert isinstance(call, ToolCall) and call.arguments == {}
    result = request.messages[2].parts[0]
    assert isinstance(result, ToolResult)
    assert list(result.content) == [
        Text("screenshot:"), Image(media_type="image/jpeg", data="/9j/4AAQ")
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": 5}, "input"),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"type": "function_call_output", "output": "x"},
                ],
            },
            "input[2].call_id",
        ),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}
                ],
            },
            "input[0].content[0].file_id",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
        ),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"model": "m", "input": "x", "max_output_tokens": "lots"}, "max_output_tokens"),
    ],
)
def test_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    assert invalid_param(body) == param


def test_file_id_error_says_what_to_send_instead() -> None:
    body = {
        "model": "m",
        "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}],
    }
    with pytest.raises(GatewayError, match="image_url"):
        codec.parse_request(body)


def test_tool_choice_forms_and_text_format() -> None:
    body = {
        "model": "m",
        "input": "x",
        "tool_choice": {"type": "custom", "name": "apply_patch"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "reasoning": {"effort": "none"},
        "previous_response_id": "resp_prev",
    }
    request = codec.parse_request(body)
    assert request.tool_choice == ToolChoice("tool", "apply_patch")
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert request.reasoning is not None and request.reasoning.enabled is False
    assert request.previous_response_id == "resp_prev"


# ---------------------------------------------------------------- upstream requests out


def test_render_request_second_turn_for_openai() -> None:
    request = replace(second_turn(), model="gpt-5.1-codex")
    body = codec.render_request(request, Quirks(max_tokens=32000))
    assert body["model"] == "gpt-5.1-codex"
    assert body["instructions"].startswith("You are Codex")
    assert "<permissions instructions>" in body["instructions"]
    assert body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["parallel_tool_calls"] is True
    assert body["tool_choice"] == "auto"
    assert body["stream"] is True
    for leaked in ("client_metadata", "prompt_cache_key", "text", "top_k", "stop"):
        assert leaked not in body
    types = [(i["type"], i.get("role")) for i in body["input"]]
    assert types == [
        ("message", "user"),  # environment_context and the question: one user turn
        # foreign reasoning (anthropic, gemini) is dropped; only OpenAI's own goes back
        ("message", "assistant"),
        ("function_call", None),
        ("function_call_output", None),
        ("function_call", None),
        ("function_call_output", None),
        ("reasoning", None),
        ("custom_tool_call", None),
        ("custom_tool_call_output", None),
        ("message", "assistant"),
        ("message", "developer"),
        ("message", "user"),
    ]
    items = body["input"]
    assert items[0]["content"][1] == {
        "type": "input_text",
        "text": "Why does test_parse_empty fail?",
    }
    assert items[4]["call_id"] == "call_gem1"  # metadata never reaches other upstreams
    assert items[5] == {
        "type": "function_call_output",
        "call_id": "call_gem1",
        "output": "src/parser.py:12:def parse(text):",
    }
    assert items[6]["encrypted_content"].startswith("gAAAAAB")
    assert "id" not in items[6]
    assert items[7]["input"].startswith("*** Begin Patch")
    assert items[9]["content"] == [
        {"type": "output_text", "text": 'Fixed: `parse("")` now returns an empty list.'}
    ]


def test_render_request_tools_names_and_limits() -> None:
    long_name = "mcp__filesystem__read_text_file_with_a_really_long_descriptive_suffix_v2"
    request = Request(
        model="gpt-5",
        messages=(
            Message("user", (Text("hi"),)),
            Message("assistant", (ToolCall("c1", "mcp.fs/read", {"path": "a"}),)),
            Message("user", (ToolResult("c1", (Text("file"),), name="mcp.fs/read"),)),
        ),
        max_tokens=64000,
        tools=(
            Tool(
                name="mcp.fs/read",
                parameters={"type": "object", "properties": {"path": {"type": "string"}}},
            ),
            Tool(name=long_name),
            Tool(
                name="apply_patch",
                kind="custom",
                format={"type": "grammar", "syntax": "lark", "definition": "x"},
            ),
            Tool(
                name="web_search",
                kind="hosted",
                hosted_type="web_search",
                config={"search_context_size": "low"},
            ),
            Tool(
                name="web_search",
                kind="hosted",
                hosted_type="web_search_20250305",
                config={"max_uses": 5},
            ),
        ),
        tool_choice=ToolChoice("tool", long_name),
        temperature=0.2,
        top_k=40,
        stop=("END",),
        reasoning=ReasoningConfig(enabled=True, budget_tokens=10000),
    )
    body = codec.render_request(request, Quirks(max_tokens=32000))
    tools = body["tools"]
    names = [t.get("name") for t in tools]
    assert names[0] != "mcp.fs/read" and names[0].startswith("mcp_fs_read")
    assert len(names[1]) <= 64 and names[1] != long_name
    assert tools[0]["strict"] is False  # Responses defaults strict to true; say false
    assert tools[2] == {
        "type": "custom",
        "name": "apply_patch",
        "format": {"type": "grammar", "syntax": "lark", "definition": "x"},
    }
    assert tools[3] == {"type": "web_search", "search_context_size": "low"}
    assert len(tools) == 4  # Anthropic's dated web search has no Responses equivalent
    assert body["tool_choice"] == {"type": "function", "name": names[1]}
    assert body["input"][1]["name"] == names[0]  # history uses the same sanitized name
    assert body["max_output_tokens"] == 32000
    assert body["temperature"] == 0.2
    assert "top_k" not in body and "stop" not in body
    assert body["reasoning"] == {"effort": "medium", "summary": "auto"}


def test_render_request_images_documents_and_results_with_images() -> None:
    request = Request(
        model="gpt-5",
        messages=(
            Message(
                "user",
                (
                    Text("look"),
                    Image(media_type="image/jpeg", data="/9j/4AAQ"),
                    Image(url="https://example.com/x.png"),
                    Document(media_type="application/pdf", data="JVBERi0x", title="Spec"),
                ),
            ),
            Message("assistant", (ToolCall("c1", "shot", {}),)),
            Message(
                "user",
                (ToolResult("c1", (Text("here"), Image(media_type="image/png", data="iVBO"))),),
            ),
        ),
    )
    body = codec.render_request(request, Quirks())
    content = body["input"][0]["content"]
    assert content[1] == {
        "type": "input_image",
        "image_url": "data:image/jpeg;base64,/9j/4AAQ",
        "detail": "auto",
    }
    assert content[2]["image_url"] == "https://example.com/x.png"
    assert content[3] == {
        "type": "input_file",
        "file_data": "data:application/pdf;base64,JVBERi0x",
        "filename": "Spec",
    }
    assert body["input"][2]["output"] == [
        {"type": "input_text", "text": "here"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"},
    ]
    assert "reasoning" not in body and "include" not in body


def test_render_request_continuing_a_stored_response() -> None:
    request = Request(
        model="gpt-5",
        messages=(Message("user", (Text("next"),)),),
        previous_response_id="resp_1",
        store=True,
    )
    body = codec.render_request(request, Quirks())
    assert body["previous_response_id"] == "resp_1"
    assert body["store"] is True


# ---------------------------------------------------------------- Codex namespaces


COLLABORATION = {
    "type": "namespace",
    "name": "collaboration",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Spawns an agent.",
            "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
        },
        {"type": "function", "name": "wait_agent", "parameters": {"type": "object"}},
    ],
}


def test_namespace_tools_flatten_and_namespaced_calls_join() -> None:
    body = {
        "model": "m",
        "tools": [COLLABORATION, {"type": "function", "name": "shell"}],
        "input": [
            {"role": "user", "content": "delegate"},
            {
                "type": "function_call",
                "namespace": "collaboration",
                "name": "spawn_agent",
                "arguments": '{"message":"run tests"}',
                "call_id": "call_1",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "agent-7"},
        ],
    }
    request = codec.parse_request(body)
    assert [t.name for t in request.tools] == [
        "collaboration__spawn_agent",
        "collaboration__wait_agent",
        "shell",
    ]
    assert request.tools[0].description == "Spawns an agent."
    assert request.tools[0].parameters["properties"] == {"message": {"type": "string"}}
    call = request.messages[1].parts[0]
    assert isinstance(call, ToolCall) and call.name == "collaboration__spawn_agent"
    result = request.messages[2].parts[0]
    assert isinstance(result, ToolResult) and result.name == "collaboration__spawn_agent"
    # an upstream sees plain function tools
    out = codec.render_request(request, Quirks())
    assert [t["name"] for t in out["tools"]] == [
        "collaboration__spawn_agent",
        "collaboration__wait_agent",
        "shell",
    ]
    assert all(t["type"] == "function" and "namespace" not in t for t in out["tools"])


def test_reasoning_raw_content_is_the_text_without_summaries() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "hi"},
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "raw chain"}],
                "encrypted_content": None,
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        ],
    }
    reasoning = codec.parse_request(body).messages[1].parts[0]
    assert reasoning == Reasoning(text="raw chain", origin="openai-responses")
