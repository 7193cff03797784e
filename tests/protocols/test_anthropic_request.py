"""Client-facing request parsing: a real Claude Code body in, canonical Request out; bad bodies
rejected with the offending field named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from babelgate.canonical import (
    GatewayError,
    Image,
    Reasoning,
    Text,
    ToolCall,
    ToolResult,
)
from babelgate.protocols import get_codec
from babelgate.protocols.anthropic import codec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def claude_code() -> dict[str, Any]:
    body: dict[str, Any] = load("claude_code_request.json")
    return body


def test_registry_serves_this_codec() -> None:
    assert get_codec("anthropic") is codec
    assert codec.name == "anthropic"


def test_claude_code_request_top_level(claude_code: dict[str, Any]) -> None:
    request = codec.parse_request(claude_code)
    assert request.model == "claude-sonnet-4-5-20250929"
    assert request.max_tokens == 32000
    assert request.stream is True
    assert request.user == claude_code["metadata"]["user_id"]
    assert request.reasoning is not None
    assert request.reasoning.adaptive and request.reasoning.enabled
    assert request.reasoning.effort == "high"
    assert [p.text[:20] for p in request.system] == [
        "x-anthropic-billing-",
        "You are Claude Code,",
        "You are an interacti",
    ]
    assert [p.cache for p in request.system] == [False, True, True]


def test_claude_code_tools(claude_code: dict[str, Any]) -> None:
    request = codec.parse_request(claude_code)
    assert len(request.tools) == 11
    bash = request.tools[1]
    assert (bash.name, bash.kind) == ("Bash", "function")
    assert bash.parameters["required"] == ["command"]
    assert request.tools[9].cache is True  # cache_control with ttl 1h on the last client tool
    search = request.tools[10]
    assert (search.kind, search.hosted_type, search.name) == (
        "hosted",
        "web_search_20250305",
        "web_search",
    )
    assert search.config == {"max_uses": 8, "allowed_domains": ["docs.python.org"]}


def test_claude_code_messages(claude_code: dict[str, Any]) -> None:
    messages = codec.parse_request(claude_code).messages
    assert [m.role for m in messages] == [
        "user",
        "assistant",
        "user",
        "system",
        "assistant",
        "user",
    ]
    image = messages[0].parts[2]
    assert isinstance(image, Image) and image.media_type == "image/png" and image.data

    thinking, text, call = messages[1].parts
    assert isinstance(thinking, Reasoning)
    assert thinking.origin == "anthropic"
    assert thinking.signature == claude_code["messages"][1]["content"][0]["signature"]
    assert isinstance(text, Text) and text.text == "I'll read the file first."
    assert isinstance(call, ToolCall)
    assert call.arguments == {"file_path": "/repo/src/app/parse.py"}
    assert call.provider_metadata is None

    result = messages[2].parts[0]
    assert isinstance(result, ToolResult) and result.call_id == call.id
    assert result.name == "Read"  # looked up from the call it answers
    assert isinstance(result.content[0], Text) and "def parse" in result.content[0].text

    assert list(messages[3].parts) == [Text(claude_code["messages"][3]["content"])]

    redacted = messages[4].parts[0]
    assert isinstance(redacted, Reasoning) and redacted.redacted and not redacted.text

    error_result, note = messages[5].parts
    assert isinstance(error_result, ToolResult) and error_result.is_error
    assert isinstance(note, Text) and note.cache


def test_tool_choice_and_sampling() -> None:
    request = codec.parse_request(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 512,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "temperature": 0,
            "top_k": 5,
            "stop_sequences": ["\n\nHuman:"],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }
    )
    assert request.tool_choice is not None and request.tool_choice.mode == "required"
    assert request.parallel_tool_calls is False
    assert request.temperature == 0.0 and request.top_k == 5
    assert list(request.stop) == ["\n\nHuman:"]
    assert request.reasoning is not None
    assert (request.reasoning.enabled, request.reasoning.budget_tokens) == (True, 2048)


def test_documents_and_tool_result_images() -> None:
    request = codec.parse_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "title": "spec",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0=",
                            },
                        },
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
                        },
                        {
                            "type": "document",
                            "source": {"type": "url", "url": "https://x.test/a.pdf"},
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "screenshot:"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x.test/s.png"},
                                },
                            ],
                        },
                    ],
                }
            ],
        }
    )
    pdf, text_doc, url_doc, result = request.messages[0].parts
    assert pdf.title == "spec" and pdf.data == "JVBERi0="  # type: ignore[union-attr]
    assert text_doc.text == "plain"  # type: ignore[union-attr]
    assert url_doc.url == "https://x.test/a.pdf"  # type: ignore[union-attr]
    assert isinstance(result, ToolResult)
    assert isinstance(result.content[1], Image) and result.content[1].url == "https://x.test/s.png"


def test_count_tokens_needs_no_max_tokens(claude_code: dict[str, Any]) -> None:
    del claude_code["max_tokens"]
    request = codec.parse_count_tokens_request(claude_code)
    assert request.max_tokens is None and len(request.messages) == 6
    with pytest.raises(GatewayError) as caught:
        codec.parse_request(claude_code)
    assert caught.value.param == "max_tokens"


def _broken(body: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "param"),
    [
        (["model"], _DELETE, "model"),
        (["max_tokens"], "lots", "max_tokens"),
        (["messages"], _DELETE, "messages"),
        (["messages", 2, "role"], "tool", "messages.2.role"),
        (["messages", 1, "content"], 42, "messages.1.content"),
        (["messages", 3, "content"], [{"text": "no type"}], "messages.3.content.0.type"),
        (["messages", 5, "content", 1, "type"], "hologram", "messages.5.content.1.type"),
        (["messages", 1, "content", 2, "id"], _DELETE, "messages.1.content.2.id"),
        (["messages", 1, "content", 2, "input"], "[]", "messages.1.content.2.input"),
        (["messages", 2, "content", 0, "tool_use_id"], None, "messages.2.content.0.tool_use_id"),
        (
            ["messages", 0, "content", 2, "source", "data"],
            _DELETE,
            "messages.0.content.2.source.data",
        ),
        (["messages", 0, "content", 1, "text"], None, "messages.0.content.1.text"),
        (["system", 1, "type"], "image", "system.1.type"),
        (["tools", 2, "input_schema"], _DELETE, "tools.2.input_schema"),
        (["tool_choice"], {"type": "sometimes"}, "tool_choice.type"),
        (["thinking"], {"type": "enabled"}, "thinking.budget_tokens"),
    ],
)
def test_invalid_requests_name_the_field(
    claude_code: dict[str, Any], path: list[Any], value: Any, param: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        codec.parse_request(_broken(claude_code, path, value))
    error = caught.value
    assert error.kind == "invalid_request" and error.status == 400
    assert error.param == param
    assert param in error.message
    assert codec.render_error(error)["error"]["type"] == "invalid_request_error"


def test_server_tool_history_blocks_are_skipped() -> None:
    request = codec.parse_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "server_tool_use",
                            "id": "srvtoolu_1",
                            "name": "web_search",
                            "input": {"query": "q"},
                        },
                        {
                            "type": "web_search_tool_result",
                            "tool_use_id": "srvtoolu_1",
                            "content": [],
                        },
                        {"type": "text", "text": "found it"},
                    ],
                }
            ],
        }
    )
    assert list(request.messages[0].parts) == [Text("found it")]
