"""A rule's edits (routing/rules.py `Edits`) applied to a client's body that goes to an
upstream of its own protocol unchanged otherwise (passthrough.py).

Why edit the body rather than translate an edited request: pass-through keeps every field
babelgate does not model (Claude Code's `context_management`, `output_config`, new betas),
and costs a shallow copy here instead of a render. Each edit has its wire form per protocol
below; an edit a protocol has no wire form for here (`set: {reasoning: ...}`, `top_k` for
OpenAI) makes `edit_body` return None, and the call is translated instead, which applies the
edits to the canonical request. Nothing the client sent is changed: the body and every list
or object an edit touches are copied (the reuse table shares pieces between requests).
"""

from __future__ import annotations

from typing import Any

from babelgate.routing.rules import Edits

from .passthrough import SPECS, fit_thinking_budget

JSON = dict[str, Any]
_SYSTEM_ROLES = ("system", "developer")

# Canonical field -> the body keys that hold it, per protocol. Removing the field pops them
# all; setting it writes the first (fields with another shape are handled in _set_user and
# _set_max_tokens). A field missing here has no pass-through form: the call is translated.
_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "anthropic": {
        "temperature": ("temperature",), "top_p": ("top_p",), "top_k": ("top_k",),
        "max_tokens": ("max_tokens",), "stop": ("stop_sequences",),
        "tools": ("tools", "tool_choice"), "tool_choice": ("tool_choice",),
        "user": ("metadata",),
    },
    "openai": {
        "temperature": ("temperature",), "top_p": ("top_p",),
        "max_tokens": ("max_completion_tokens", "max_tokens"), "stop": ("stop",),
        "tools": ("tools", "tool_choice", "parallel_tool_calls"),
        "tool_choice": ("tool_choice",), "parallel_tool_calls": ("parallel_tool_calls",),
        "user": ("user", "metadata"), "n": ("n",), "response_format": ("response_format",),
        "reasoning": ("reasoning_effort",),
    },
    "openai-responses": {
        "temperature": ("temperature",), "top_p": ("top_p",),
        "max_tokens": ("max_output_tokens",),
        "tools": ("tools", "tool_choice", "parallel_tool_calls"),
        "tool_choice": ("tool_choice",), "parallel_tool_calls": ("parallel_tool_calls",),
        "user": ("user", "metadata"), "reasoning": ("reasoning",),
    },
}
# Fields whose value cannot be written as is (reasoning's shapes differ too much to set).
_NOT_SETTABLE = frozenset({"reasoning", "tools", "tool_choice", "response_format"})


def edit_body(protocol: str, data: JSON, edits: Edits) -> JSON | None:
    """A copy of `data` with `edits` applied, or None when one of them has no form in
    `protocol`'s body (translate instead)."""
    keys = _KEYS.get(protocol)
    if keys is None:
        return None
    if any(name not in keys and name != "system" for name in edits.remove) or any(
            name not in keys or name in _NOT_SETTABLE for name, _ in edits.set):
        return None
    out = dict(data)
    for name, value in edits.set:
        if name == "user":
            _set_user(protocol, out, value)
        elif name == "max_tokens":
            _set_max_tokens(protocol, out, value)
        else:
            out[keys[name][0]] = list(value) if isinstance(value, tuple) else value
    for name in edits.remove:
        if name == "system":
            _SYSTEM_FORMS[protocol].remove(out)
            continue
        for key in keys[name]:
            out.pop(key, None)
    system = _SYSTEM_FORMS[protocol]
    if edits.prepend is not None:
        system.prepend(out, edits.prepend.text)
    if edits.append is not None:
        system.append(out, edits.append.text)
    if edits.max_tokens is not None:
        _clamp(protocol, out, edits.max_tokens)
    return out


def _set_user(protocol: str, body: JSON, user: str) -> None:
    if protocol == "anthropic":
        metadata = body.get("metadata")
        body["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "user_id": user}
    else:
        body["user"] = user


def _set_max_tokens(protocol: str, body: JSON, value: int) -> None:
    fields = SPECS[protocol].max_tokens_fields
    present = [field for field in fields if field in body]
    # Where the client put it; an OpenAI Chat body without either gets `max_tokens` (first in
    # the list), the field translation sends to an OpenAI upstream too.
    for field in present or [fields[0]]:
        body[field] = value
    fit_thinking_budget(body, value)


def _clamp(protocol: str, body: JSON, limit: int) -> None:
    for field in SPECS[protocol].max_tokens_fields:
        requested = body.get(field)
        if isinstance(requested, int) and requested > limit:
            body[field] = limit
            fit_thinking_budget(body, limit)


# ---------------------------------------------------------------- the system prompt


def _leading_system(items: list[Any]) -> int:
    """How many of `items` are system/developer messages before any other item."""
    for index, item in enumerate(items):
        if not (isinstance(item, dict) and item.get("role") in _SYSTEM_ROLES
                and item.get("type", "message") == "message"):
            return index
    return len(items)


class _SystemForm:
    """Where a protocol's body keeps the system prompt, and how an edit changes it."""

    @staticmethod
    def prepend(body: JSON, text: str) -> None:
        raise NotImplementedError

    @staticmethod
    def append(body: JSON, text: str) -> None:
        raise NotImplementedError

    @staticmethod
    def remove(body: JSON) -> None:
        raise NotImplementedError


class _Anthropic(_SystemForm):
    """`system`: absent, a string, or a list of text blocks."""

    @staticmethod
    def _blocks(body: JSON) -> list[Any]:
        system = body.get("system")
        if isinstance(system, str):
            return [{"type": "text", "text": system}] if system else []
        return list(system) if isinstance(system, list) else []

    @classmethod
    def prepend(cls, body: JSON, text: str) -> None:
        body["system"] = [{"type": "text", "text": text}, *cls._blocks(body)]

    @classmethod
    def append(cls, body: JSON, text: str) -> None:
        body["system"] = [*cls._blocks(body), {"type": "text", "text": text}]

    @staticmethod
    def remove(body: JSON) -> None:
        body.pop("system", None)


class _Chat(_SystemForm):
    """Leading system/developer messages of `messages` are the system prompt."""

    @staticmethod
    def prepend(body: JSON, text: str) -> None:
        body["messages"] = [{"role": "system", "content": text}, *body.get("messages", [])]

    @staticmethod
    def append(body: JSON, text: str) -> None:
        messages = list(body.get("messages", []))
        messages.insert(_leading_system(messages), {"role": "system", "content": text})
        body["messages"] = messages

    @staticmethod
    def remove(body: JSON) -> None:
        messages = body.get("messages", [])
        body["messages"] = messages[_leading_system(messages):]


class _Responses(_SystemForm):
    """`instructions`, then the system/developer messages that lead `input` (a list; a
    string input has none)."""

    @staticmethod
    def prepend(body: JSON, text: str) -> None:
        instructions = body.get("instructions")
        body["instructions"] = f"{text}\n\n{instructions}" if instructions else text

    @staticmethod
    def append(body: JSON, text: str) -> None:
        items = body.get("input")
        leading = _leading_system(items) if isinstance(items, list) else 0
        if isinstance(items, list) and leading:
            body["input"] = [*items[:leading], {"role": "developer", "content": text},
                             *items[leading:]]
            return
        instructions = body.get("instructions")
        body["instructions"] = f"{instructions}\n\n{text}" if instructions else text

    @staticmethod
    def remove(body: JSON) -> None:
        body.pop("instructions", None)
        items = body.get("input")
        if isinstance(items, list):
            body["input"] = items[_leading_system(items):]


_SYSTEM_FORMS: dict[str, type[_SystemForm]] = {
    "anthropic": _Anthropic,
    "openai": _Chat,
    "openai-responses": _Responses,
}
