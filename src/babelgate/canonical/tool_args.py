"""Tool-call arguments: parse what upstreams send, repairing what they break.

Upstreams send arguments as JSON text, sometimes broken: two objects back to back
(`{"a":1}{"a":1}`, seen when a provider repeats a call), text cut off by max_tokens, a
markdown fence around the object, or an empty string for "no arguments". Clients validate
arguments strictly, so the gateway always hands them one JSON object.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_decoder = json.JSONDecoder()
_CLOSERS = {"{": "}", "[": "]"}


def parse_arguments(text: str | None) -> dict[str, Any]:
    """The arguments object in `text`, repaired if need be; `{}` for nothing usable. A value
    that is valid JSON but not an object is wrapped as `{"value": ...}`."""
    if text is None:
        return {}
    text = text.strip()
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = _repair(text)
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    return {"value": value}


def client_arguments(text: str | None, where: str) -> dict[str, Any]:
    """Arguments a client sends back in its history, as JSON text: repaired as an upstream's
    are (the model wrote them). Too deep, they fail where they are rendered (see nesting)."""
    return parse_arguments(text)


def _repair(text: str) -> Any:
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    start = text.find("{")
    if start < 0:
        return None
    # Concatenated objects: the first complete one wins (the rest repeat or extend it).
    try:
        value, _ = _decoder.raw_decode(text, start)
        return value
    except json.JSONDecodeError:
        pass
    return _close_truncated(text[start:])


def _scan(text: str) -> tuple[list[str], bool, bool]:
    """The closers still owed at the end of `text`, whether it ends inside a string, and
    whether it ends on a dangling backslash."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = ch == "\\"
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]" and stack:
            stack.pop()
    return stack, in_string, escaped


def _close_truncated(text: str) -> Any:
    """Close the strings, arrays and objects a truncated text left open."""
    stack, in_string, escaped = _scan(text)
    candidate = text
    if in_string:
        if escaped:  # a dangling backslash escapes nothing
            candidate = candidate[:-1]
        candidate += '"'
    candidate = candidate.rstrip().rstrip(",")
    if candidate.endswith(":"):
        candidate += "null"
    candidate += "".join(reversed(stack))
    try:
        return orjson.loads(candidate)
    except orjson.JSONDecodeError:
        return None


def dump_arguments(arguments: dict[str, Any]) -> str:
    """Arguments as compact JSON text, keeping non-ASCII characters as they are."""
    return orjson.dumps(arguments).decode()
