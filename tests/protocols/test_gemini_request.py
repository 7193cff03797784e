"""Canonical Request -> Gemini generateContent / countTokens bodies."""

from __future__ import annotations

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
from babelgate.protocols import get_codec
from babelgate.protocols.base import Quirks
from babelgate.protocols.gemini import codec
from babelgate.protocols.gemini.request import PLACEHOLDER_SIGNATURE

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42"
    "mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
SEARCH = "mcp__my server/search"


def tools() -> tuple[Tool, ...]:
    schema = {"type": "object", "properties": {"file_path": {"type": "string"}}}
    return (
        Tool(name="Read", description="Read a file", parameters=schema),
        Tool(name=SEARCH, parameters={"type": "object", "properties": {"q": {"type": "string"}}}),
    )


def claude_code_history() -> Request:
    """A Claude Code conversation: parallel calls answered out of order, an error result, an
    image inside a result, and reasoning from Gemini and from Anthropic."""
    calls = [
        ToolCall(
            "toolu_a",
            "Read",
            {"file_path": "/repo/app.py"},
            provider_metadata={"thought_signature": "SIG_A"},
        ),
        ToolCall("toolu_b", "Read", {"file_path": "/repo/missing.py"}),
        ToolCall("toolu_c", SEARCH, {"q": "fixture"}),
    ]
    return Request(
        model="gemini-3-pro-preview",
        system=(Text("You are Claude Code."), Text("")),
        messages=(
            Message("system", (Text("Environment: linux"),)),
            Message("user", (Text("Fix the bug"), Image(media_type="image/png", data=PNG))),
            Message(
                "assistant",
                (
                    Reasoning("Plan: read both files.", signature="THOUGHT_SIG", origin="gemini"),
                    Reasoning("anthropic thoughts", signature="EqQBanthropic", origin="anthropic"),
                    Text("Reading the files."),
                    *calls,
                ),
            ),
            Message(
                "user",
                (
                    ToolResult("toolu_c", (Text("3 matches"),)),
                    ToolResult("toolu_b", (Text("No such file"),), is_error=True),
                    ToolResult(
                        "toolu_a",
                        (Text("print('hi')"), Image(media_type="image/png", data=PNG)),
                    ),
                    Text("Also check the README."),
                ),
            ),
            Message("assistant", (Text("Done: the bug was in app.py."),)),
            Message("system", (Text("The user is now in plan mode."),)),
            Message("user", (Text("Thanks! Now summarize."),)),
            Message("assistant", (Text("Summary:"),)),  # a prefill
        ),
        tools=tools(),
        max_tokens=64000,
    )


def render(request: Request, quirks: Quirks | None = None) -> dict[str, Any]:
    return codec.render_request(request, quirks or Quirks())


def test_registry_exposes_the_codec() -> None:
    assert get_codec("gemini") is codec
    assert codec.name == "gemini"


def test_system_and_roles() -> None:
    body = render(claude_code_history())
    assert "model" not in body
    assert body["systemInstruction"] == {
        "parts": [{"text": "You are Claude Code."}, {"text": "Environment: linux"}]
    }
    roles = [c["role"] for c in body["contents"]]
    assert roles == ["user", "model", "user", "model", "user"]
    # The later system message stays in place as user text, merged with the next user turn.
    last = body["contents"][-1]["parts"]
    assert last[0]["text"].endswith("The user is now in plan mode.")
    assert last[1] == {"text": "Thanks! Now summarize."}


def test_trailing_prefill_is_dropped() -> None:
    body = render(claude_code_history())
    assert body["contents"][-1]["role"] == "user"
    assert all("Summary:" not in str(c) for c in body["contents"])


def test_model_turn_parts_and_signatures() -> None:
    model = render(claude_code_history())["contents"][1]["parts"]
    assert model[0] == {
        "text": "Plan: read both files.",
        "thought": True,
        "thoughtSignature": "THOUGHT_SIG",
    }
    assert model[1] == {"text": "Reading the files."}  # the Anthropic thought is gone
    assert model[2] == {
        "functionCall": {"name": "Read", "args": {"file_path": "/repo/app.py"}},
        "thoughtSignature": "SIG_A",
    }
    assert model[3] == {"functionCall": {"name": "Read", "args": {"file_path": "/repo/missing.py"}}}
    assert model[4]["functionCall"]["name"].startswith("mcp__my_server_search_")
    assert "thoughtSignature" not in model[4]


def test_parallel_results_in_one_turn_in_call_order() -> None:
    results = render(claude_code_history())["contents"][2]["parts"]
    responses = [p["functionResponse"] for p in results if "functionResponse" in p]
    assert [r["name"] for r in responses] == [
        "Read",
        "Read",
        results[2]["functionResponse"]["name"],
    ]
    assert responses[2]["name"].startswith("mcp__my_server_search_")
    assert responses[0]["response"] == {"output": "print('hi')"}
    assert responses[1]["response"] == {"error": "No such file"}
    assert responses[2]["response"] == {"output": "3 matches"}
    assert all("id" not in r for r in responses)  # Claude Code's ids are not Gemini's
    # The image from the result, then the user's own text, after all responses.
    assert results[3] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert results[4] == {"text": "Also check the README."}
    assert len(results) == 5


def test_results_split_over_messages_still_form_one_ordered_turn() -> None:
    request = Request(
        model="gemini-2.5-flash",
        messages=(
            Message("user", (Text("go"),)),
            Message("assistant", (ToolCall("c1", "Read", {}), ToolCall("c2", "Read", {}))),
            Message("user", (ToolResult("c2", (Text("two"),)),)),
            Message("user", (ToolResult("c1", (Text("one"),)),)),
        ),
    )
    contents = render(request)["contents"]
    assert len(contents) == 3
    outputs = [p["functionResponse"]["response"]["output"] for p in contents[2]["parts"]]
    assert outputs == ["one", "two"]


def test_result_name_falls_back_to_tool_result_name() -> None:
    request = Request(
        model="m",
        messages=(Message("user", (ToolResult("unknown", (Text("x"),), name="Glob"),)),),
    )
    part = render(request)["contents"][0]["parts"][0]
    assert part["functionResponse"]["name"] == "Glob"


def test_foreign_calls_get_the_placeholder_signature_on_the_first_only() -> None:
    request = Request(
        model="gemini-3-pro-preview",
        messages=(
            Message("user", (Text("go"),)),
            Message("assistant", (ToolCall("call_1", "Read", {}), ToolCall("call_2", "Read", {}))),
            Message("user", (ToolResult("call_1", (Text("a"),)),
                             ToolResult("call_2", (Text("b"),)))),
        ),
    )
    calls = render(request)["contents"][1]["parts"]
    assert calls[0]["thoughtSignature"] == PLACEHOLDER_SIGNATURE
    assert "thoughtSignature" not in calls[1]


def test_gemini_call_ids_go_back_on_call_and_response() -> None:
    call = ToolCall("fc_1", "Read", {}, provider_metadata={"gemini_id": "fc_1"})
    request = Request(
        model="m",
        messages=(
            Message("user", (Text("go"),)),
            Message("assistant", (call,)),
            Message("user", (ToolResult("fc_1", (Text("ok"),)),)),
        ),
    )
    contents = render(request)["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc_1"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc_1"


def test_media_parts() -> None:
    request = Request(
        model="m",
        messages=(
            Message(
                "user",
                (
                    Image(url="https://example.com/shot.jpg"),
                    Image(url=f"data:image/png;base64,{PNG}"),
                    Document(media_type="application/pdf", data="JVBERi0x"),
                    Document(text="plain notes", title="notes.txt"),
                ),
            ),
        ),
    )
    parts = render(request)["contents"][0]["parts"]
    assert parts == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/shot.jpg"}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
        {"text": "notes.txt\n\nplain notes"},
    ]
    no_images = render(request, Quirks(images=False))["contents"][0]["parts"]
    assert no_images == parts[2:]  # an upstream without vision gets the documents only


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", SEARCH), {"mode": "ANY", "allowedFunctionNames": ["__SEARCH__"]}),
    ],
)
def test_tool_choice(choice: ToolChoice, expected: dict[str, Any]) -> None:
    request = Request(
        model="m", messages=(Message("user", (Text("x"),)),), tools=tools(), tool_choice=choice
    )
    body = render(request)
    sent_search = body["tools"][0]["functionDeclarations"][1]["name"]
    if "allowedFunctionNames" in expected:
        expected = {**expected, "allowedFunctionNames": [sent_search]}
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_hosted_web_search_only_without_functions() -> None:
    search = Tool(name="web_search", kind="hosted", hosted_type="web_search_20250305")
    alone = Request(model="m", messages=(Message("user", (Text("x"),)),), tools=(search,))
    assert render(alone)["tools"] == [{"googleSearch": {}}]
    mixed = Request(model="m", messages=(Message("user", (Text("x"),)),), tools=(search, *tools()))
    body = render(mixed)
    assert len(body["tools"]) == 1 and "functionDeclarations" in body["tools"][0]


def test_custom_tool_becomes_a_one_string_function() -> None:
    patch = Tool(
        name="apply_patch",
        description="Apply a patch",
        kind="custom",
        format={"type": "grammar", "syntax": "lark", "definition": "start: patch"},
    )
    request = Request(model="m", messages=(Message("user", (Text("x"),)),), tools=(patch,))
    decl = render(request)["tools"][0]["functionDeclarations"][0]
    assert decl["parameters"]["properties"] == {
        "input": {"type": "string", "description": "The raw input for the tool."}
    }
    assert decl["parameters"]["required"] == ["input"]
    assert "start: patch" in decl["description"]


def test_generation_config_clamps_and_maps() -> None:
    request = replace(
        claude_code_history(),
        temperature=0.2, top_p=0.9, top_k=40, stop=("a", "b", "c", "d", "e", "f"),
    )
    config = render(request, Quirks(max_tokens=32768))["generationConfig"]
    assert config == {
        "maxOutputTokens": 32768,
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["a", "b", "c", "d", "e"],
    }


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (
            ReasoningConfig(enabled=True, budget_tokens=10000),
            {"includeThoughts": True, "thinkingBudget": 10000},
        ),
        (ReasoningConfig(effort="low"), {"includeThoughts": True, "thinkingBudget": 2048}),
        (ReasoningConfig(effort="high"), {"includeThoughts": True, "thinkingBudget": 24576}),
        (ReasoningConfig(adaptive=True), {"includeThoughts": True, "thinkingBudget": -1}),
        # Off: the model's default, since budget 0 is a 400 on 2.5 Pro and Gemini 3.
        (ReasoningConfig(enabled=False), None),
        (ReasoningConfig(effort="none"), None),
        # Claude Code's largest budget is out of range for Flash: clamped.
        (
            ReasoningConfig(enabled=True, budget_tokens=31999),
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        (ReasoningConfig(), None),
    ],
)
def test_thinking_config(reasoning: ReasoningConfig, expected: dict[str, Any] | None) -> None:
    request = Request(model="m", messages=(Message("user", (Text("x"),)),), reasoning=reasoning)
    config = render(request).get("generationConfig", {})
    assert config.get("thinkingConfig") == expected


def test_json_response_format() -> None:
    request = Request(model="m", messages=(Message("user", (Text("x"),)),), response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "additionalProperties": False,
            },
        },
    })
    config = render(request)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
    }


def test_count_tokens_body_counts_system_and_tools() -> None:
    body = codec.render_count_tokens(claude_code_history(), Quirks())
    inner = body["generateContentRequest"]
    assert inner["model"] == "models/gemini-3-pro-preview"
    assert inner["systemInstruction"]["parts"][0] == {"text": "You are Claude Code."}
    assert inner["tools"][0]["functionDeclarations"][0]["name"] == "Read"
    assert inner["contents"][0]["role"] == "user"
    assert "generationConfig" not in inner
    assert codec.parse_count_tokens({"totalTokens": 31337}) == 31337
