"""Upstream Chat Completions streams -> canonical events, over recorded-style fixtures fed
whole and in random splits."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.protocols.contract import check_stream_contract

from babelgate.canonical import (
    Accumulator,
    Event,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    Reasoning,
    Request,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
)
from babelgate.protocols.openai_chat import codec
from babelgate.protocols.openai_chat.names import wire_name

STREAMS = Path(__file__).parent.parent / "fixtures" / "openai_chat" / "streams"

LONG_TOOL = "mcp__github_enterprise__search_issues_and_pull_requests_across_all_repositories"
TOOLS = tuple(
    Tool(name=n, parameters={"type": "object"})
    for n in ("Read", "Bash", "Glob", "Grep", "Edit", "Write")
)


def _request(**kwargs: Any) -> Request:
    base: dict[str, Any] = {
        "model": "client-model",
        "messages": (Message("user", (Text("hi"),)),),
        "stream": True,
        "tools": TOOLS,
    }
    return Request(**{**base, **kwargs})


def _decode(data: bytes, request: Request | None = None, splits: int = 0) -> list[Event]:
    decoder = codec.stream_decoder(request or _request())
    events: list[Event] = []
    if splits:
        rng = random.Random(splits)
        cuts = sorted(rng.sample(range(1, len(data)), min(splits, len(data) - 1)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    else:
        pieces = [data]
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def _comparable(events: list[Event]) -> list[object]:
    """Events with errors as plain values (exceptions compare by identity)."""
    return [
        (e.error.kind, e.error.message, e.error.status) if isinstance(e, StreamError) else e
        for e in events
    ]


def _load(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def _fold(events: list[Event]) -> Accumulator:
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    return acc


ALL = sorted(p.name for p in STREAMS.glob("*.sse"))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("splits", [1, 7, 40, 400])
def test_random_splits_give_the_same_events(name: str, splits: int) -> None:
    whole = _decode(_load(name))
    check_stream_contract(whole)
    assert _comparable(_decode(_load(name), splits=splits)) == _comparable(whole)


@pytest.mark.parametrize("name", ALL)
def test_byte_by_byte(name: str) -> None:
    data = _load(name)
    decoder = codec.stream_decoder(_request())
    events: list[Event] = []
    for i in range(len(data)):
        events.extend(decoder.feed(data[i : i + 1]))
    events.extend(decoder.close())
    assert _comparable(events) == _comparable(_decode(data))


def test_openai_text_with_usage_chunk() -> None:
    events = _decode(_load("openai_text_usage.sse"))
    start = events[0]
    assert isinstance(start, MessageStart)
    assert (start.id, start.model) == ("chatcmpl-CXl1", "gpt-4.1-2025-04-14")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["The tests", " pass — all 42 of them ✅."]
    final = _fold(events).response()
    assert list(final.parts) == [Text("The tests pass — all 42 of them ✅.")]
    assert final.stop_reason == "end_turn"
    # The usage chunk comes after the finish_reason; MessageDelta must wait for it.
    assert final.usage.input_tokens == 128
    assert final.usage.cache_read_tokens == 3072
    assert final.usage.output_tokens == 14
    assert isinstance(events[-2], MessageDelta) and isinstance(events[-1], MessageStop)


def test_deepseek_reasoning_then_text_then_tool() -> None:
    events = _decode(_load("deepseek_reasoning_tool.sse"))
    starts = [e.part for e in events if isinstance(e, PartStart)]
    assert [type(p) for p in starts] == [Reasoning, Text, ToolCall]
    final = _fold(events).response()
    reasoning, text, call = final.parts
    assert reasoning == Reasoning(text="需要先看一下配置文件。", origin="openai")
    assert text == Text("我来读取配置。")
    assert isinstance(call, ToolCall)
    assert call.id == "call_0_8b1e6c5a-5d0e-4c2f-9a47-3b1f2e6d7c80"
    assert call.arguments == {"file_path": "/etc/app/配置.toml"}
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 180
    assert final.usage.cache_read_tokens == 1920
    assert final.usage.reasoning_tokens == 40


def test_tool_call_is_one_args_delta_of_valid_json() -> None:
    events = _decode(_load("deepseek_reasoning_tool.sse"))
    args = [e for e in events if isinstance(e, ToolArgsDelta)]
    assert len(args) == 1
    assert orjson.loads(args[0].json) == {"file_path": "/etc/app/配置.toml"}
    start = next(e for e in events if isinstance(e, PartStart) and isinstance(e.part, ToolCall))
    assert isinstance(start.part, ToolCall) and start.part.arguments == {}


def test_kimi_ids_made_safe_and_usage_inside_choice() -> None:
    final = _fold(_decode(_load("kimi_whole_calls.sse"))).response()
    calls = [p for p in final.parts if isinstance(p, ToolCall)]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("functions_Bash_0", "Bash", {"command": "ls -la"}),
        ("functions_Glob_1", "Glob", {"pattern": "**/*.py"}),
    ]
    assert final.parts[0] == Text("Listing files.")
    assert final.usage.cache_read_tokens == 4096
    assert final.usage.input_tokens == 4


def test_interleaved_parallel_calls_keep_their_own_arguments() -> None:
    final = _fold(_decode(_load("interleaved_parallel.sse"))).response()
    calls = [(p.id, p.name, p.arguments) for p in final.parts if isinstance(p, ToolCall)]
    assert calls == [
        ("call_a1", "Read", {"file_path": "a.py"}),
        ("call_b2", "Grep", {"pattern": "TODO", "path": "src"}),
    ]
    assert final.usage.input_tokens == 188


def test_repeated_ids_do_not_duplicate_calls() -> None:
    final = _fold(_decode(_load("repeated_ids.sse"))).response()
    assert list(final.parts) == [
        ToolCall(
            id="call_7f3a",
            name="Edit",
            arguments={"file_path": "main.go", "old_string": "a", "new_string": "b"},
        )
    ]


def test_stop_after_tool_calls_means_tool_use() -> None:
    final = _fold(_decode(_load("stop_after_tools.sse"))).response()
    assert final.stop_reason == "tool_use"
    assert list(final.parts) == [
        ToolCall(id="call_m2x9rk1q", name="Bash", arguments={"command": "git status"})
    ]
    assert final.usage.output_tokens == 21


def test_broken_and_concatenated_json_repaired() -> None:
    events = _decode(_load("broken_tool_json.sse"))
    for delta in (e for e in events if isinstance(e, ToolArgsDelta)):
        orjson.loads(delta.json)  # every emitted fragment is valid JSON
    calls = [p for p in _fold(events).response().parts if isinstance(p, ToolCall)]
    assert calls[0].arguments == {"file_path": "x.txt", "content": "hi"}
    assert calls[1].arguments == {"command": 'echo "done'}


def test_every_call_numbered_zero_still_two_calls() -> None:
    final = _fold(_decode(_load("index_zero_calls.sse"))).response()
    assert [(p.id, p.arguments) for p in final.parts if isinstance(p, ToolCall)] == [
        ("call_one", {"file_path": "a.py"}),
        ("call_two", {"file_path": "b.py"}),
    ]


def test_error_chunk_becomes_stream_error_after_closing_text() -> None:
    events = _decode(_load("error_chunk.sse"))
    assert isinstance(events[-1], StreamError)
    error = events[-1].error
    assert error.message == "Provider returned error: upstream connect error"
    assert error.kind == "connection" and error.status == 502
    assert events[-2] == PartStop(0, Text("Let me"))
    assert not any(isinstance(e, MessageStop | MessageDelta) for e in events)


def test_truncated_stream_is_an_error_and_drops_the_half_call() -> None:
    events = _decode(_load("truncated.sse"))
    assert isinstance(events[-1], StreamError)
    assert events[-1].error.kind == "connection" and events[-1].error.status == 502
    assert events[-1].error.message == "upstream stream ended early"
    assert events[-2] == PartStop(0, Text("Running the build"))
    # A half-received command must never reach the client as a call.
    assert not any(isinstance(e, PartStart) and isinstance(e.part, ToolCall) for e in events)


def test_finish_without_done_still_completes() -> None:
    data = _load("openai_text_usage.sse").replace(b"data: [DONE]\n\n", b"")
    events = _decode(data)
    assert isinstance(events[-1], MessageStop)
    assert _fold(events).response().usage.cache_read_tokens == 3072


def test_empty_body_is_an_error() -> None:
    events = _decode(b"")
    assert len(events) == 1 and isinstance(events[0], StreamError)


def test_long_tool_names_map_back_and_custom_tools_are_custom() -> None:
    tools = (
        Tool(name=LONG_TOOL),
        Tool(name="apply_patch", kind="custom", format={"type": "grammar"}),
    )
    wire = wire_name(LONG_TOOL)
    chunks = [
        {
            "id": "c",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": wire, "arguments": "{}"},
                            },
                            {
                                "index": 1,
                                "id": "call_2",
                                "function": {
                                    "name": "apply_patch",
                                    "arguments": '{"input":"*** Begin Patch"}',
                                },
                            },
                        ]
                    },
                }
            ],
        },
        {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        },
    ]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    final = _fold(_decode(body, _request(tools=tools))).response()
    first, second = final.parts
    assert isinstance(first, ToolCall) and first.name == LONG_TOOL
    assert isinstance(second, ToolCall) and second.kind == "custom"
    assert second.arguments == {"input": "*** Begin Patch"}


def test_reasoning_interleaved_with_text_opens_new_parts() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"reasoning": "think"}}]},
        {"choices": [{"index": 0, "delta": {"content": "say"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "more"}}]},
        {"choices": [{"index": 0, "delta": {"content": "done"}, "finish_reason": "stop"}]},
    ]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    events = _decode(body)
    check_stream_contract(events)
    assert list(_fold(events).response().parts) == [
        Reasoning(text="think", origin="openai"),
        Text("say"),
        Reasoning(text="more", origin="openai"),
        Text("done"),
    ]


def test_openrouter_reasoning_with_details_is_not_doubled() -> None:
    chunks = [
        {
            "id": "gen-1",
            "model": "deepseek/deepseek-r1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": "",
                        "reasoning": "Check the",
                        "reasoning_details": [{"type": "reasoning.text", "text": "Check the"}],
                    },
                }
            ],
        },
        {
            "id": "gen-1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "content": "",
                        "reasoning": " file.",
                        "reasoning_details": [{"type": "reasoning.text", "text": " file."}],
                    },
                }
            ],
        },
        {
            "id": "gen-1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "Done.", "reasoning": None, "reasoning_details": []},
                    "finish_reason": "stop",
                }
            ],
        },
    ]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    final = _fold(_decode(body)).response()
    assert list(final.parts) == [Reasoning(text="Check the file.", origin="openai"), Text("Done.")]
