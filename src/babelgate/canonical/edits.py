"""Which top-level fields of a canonical `Request` a configured edit may set or clear, and the
canonical value a configured one becomes.

The configuration's rules (`set`, `remove`: babelgate.config, babelgate.routing.rules) name
fields by these names; checking them here, next to the model, keeps the list and the types
in one place. `metadata` is accepted as another name for `user`: it is where Anthropic
clients put the end-user id (`metadata.user_id`).
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from .model import ReasoningConfig, Request

# Fields an edit may give a value: the sampling and limit settings, not the conversation.
SETTABLE = ("temperature", "top_p", "top_k", "max_tokens", "stop", "parallel_tool_calls",
            "user", "n", "reasoning")
# Fields an edit may clear (back to "the client said nothing").
REMOVABLE = ("temperature", "top_p", "top_k", "max_tokens", "stop", "tools", "tool_choice",
             "parallel_tool_calls", "reasoning", "user", "metadata", "response_format", "n",
             "system")
ALIASES = {"metadata": "user"}

_HINTS = typing.get_type_hints(Request)
_DEFAULTS = {
    field.name: field.default if field.default is not msgspec.NODEFAULT else None
    for field in msgspec.structs.fields(Request)
}
_LIMITS: dict[str, tuple[int, str]] = {
    "max_tokens": (1, "a positive whole number"),
    "n": (1, "a positive whole number"),
    "top_k": (0, "a whole number, 0 or more"),
}


class EditError(ValueError):
    """A configured edit names a field it may not touch, or gives it a value of the wrong
    type. The message says which and how to fix it."""


def field_name(name: str) -> str:
    """The Request field `name` stands for (`metadata` is `user`)."""
    return ALIASES.get(name, name)


def cleared(name: str) -> Any:
    """The value of the field `name` when the client did not send it."""
    return _DEFAULTS[field_name(name)]


def check_removable(name: str) -> str:
    if name not in REMOVABLE:
        raise EditError(f"cannot remove {name!r}; removable fields: {', '.join(REMOVABLE)}")
    return field_name(name)


def settable_value(name: str, value: Any) -> Any:
    """`value` as the canonical value of field `name` (a list of stop strings becomes a tuple,
    a reasoning mapping a ReasoningConfig); raises EditError."""
    if name not in SETTABLE:
        raise EditError(f"cannot set {name!r}; settable fields: {', '.join(SETTABLE)}")
    if value is None:
        raise EditError("a value is required (to clear the field, use `remove`)")
    if name == "stop" and isinstance(value, str):
        value = [value]
    if name == "reasoning":
        return _reasoning(value)
    if isinstance(value, bool) and name != "parallel_tool_calls":
        raise EditError(f"expected {_expected(name)}, got a boolean")
    try:
        converted = msgspec.convert(value, _HINTS[name])
    except msgspec.ValidationError:
        raise EditError(f"expected {_expected(name)}") from None
    minimum, what = _LIMITS.get(name, (None, ""))
    if minimum is not None and converted < minimum:
        raise EditError(f"expected {what}")
    return converted


def _reasoning(value: Any) -> ReasoningConfig:
    known = set(ReasoningConfig.__struct_fields__)
    if not isinstance(value, dict) or not set(value) <= known:
        raise EditError(f"expected a mapping with some of: {', '.join(sorted(known))}")
    try:
        return msgspec.convert(value, ReasoningConfig)
    except msgspec.ValidationError as exc:
        raise EditError(str(exc)) from None


def _expected(name: str) -> str:
    return {
        "temperature": "a number", "top_p": "a number", "top_k": "a whole number",
        "max_tokens": "a positive whole number", "n": "a positive whole number",
        "stop": "a string or a list of strings", "parallel_tool_calls": "true or false",
        "user": "a string",
    }.get(name, "a value")
