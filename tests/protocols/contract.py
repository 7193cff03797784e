"""The canonical stream contract (canonical/stream.py), checked the same way for every
upstream stream decoder's output."""

from __future__ import annotations

import json

from babelgate.canonical import (
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    PartStart,
    PartStop,
    ReasoningDelta,
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
)


def check_stream_contract(events: list[Event]) -> None:
    """MessageStart first (or a StreamError for a stream that failed before it began), parts
    strictly sequential with their deltas in between, tool-argument fragments that join into
    the finished call's arguments, at most one MessageDelta after the last part and followed
    by MessageStop, and exactly one MessageStop or StreamError, last. Only a StreamError may
    leave a part open."""
    assert events, "a stream yields at least its ending"
    assert isinstance(events[0], MessageStart | StreamError), events[0]
    assert sum(isinstance(e, MessageStart) for e in events) <= 1
    assert isinstance(events[-1], MessageStop | StreamError), events[-1]
    assert sum(isinstance(e, MessageStop | StreamError) for e in events) == 1
    assert sum(isinstance(e, MessageDelta) for e in events) <= 1
    open_index: int | None = None
    expected = 0
    args: dict[int, str] = {}
    for position, event in enumerate(events):
        if isinstance(event, PartStart):
            assert open_index is None and event.index == expected, event
            open_index = event.index
        elif isinstance(event, TextDelta | ReasoningDelta | SignatureDelta | ToolArgsDelta):
            assert event.index == open_index, event
            if isinstance(event, ToolArgsDelta):
                args[event.index] = args.get(event.index, "") + event.json
        elif isinstance(event, PartStop):
            assert event.index == open_index, event
            if isinstance(event.part, ToolCall) and event.index in args:
                assert json.loads(args[event.index]) == event.part.arguments
            open_index, expected = None, expected + 1
        elif isinstance(event, MessageDelta):
            assert open_index is None
            assert isinstance(events[position + 1], MessageStop)
    assert open_index is None or isinstance(events[-1], StreamError)
