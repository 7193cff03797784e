"""Tool names and ids each wire accepts: one rule per protocol (protocols/wire_names.py), and
what the Chat codec remembers of them kept by the caller's reuse table, read-only."""

from __future__ import annotations

import pytest

from babelgate.canonical import Request, Tool
from babelgate.protocols.anthropic.tool_names import upstream_name as anthropic_name
from babelgate.protocols.gemini.names import gemini_name
from babelgate.protocols.openai_chat.names import (
    tools_by_wire_name,
    wire_call_id,
    wire_name,
    wire_user,
)
from babelgate.protocols.openai_responses.names import upstream_name as responses_name
from babelgate.protocols.reuse import Reuse

RULES = {"chat": (wire_name, 64), "chat call id": (wire_call_id, 40),
         "responses": (responses_name, 64), "anthropic": (anthropic_name, 128),
         "gemini": (gemini_name, 128)}


@pytest.mark.parametrize("rule", list(RULES))
def test_valid_names_pass_and_others_become_distinct_stand_ins(rule: str) -> None:
    name_for, most = RULES[rule]
    assert name_for("Read") == "Read"
    long = "mcp__server__" + "x" * 200
    assert len(name_for(long)) == most and name_for(long) != name_for(long + "y")
    assert name_for("a b") != name_for("a_b")  # the hash keeps near twins apart
    assert name_for("a b") == name_for("a b")  # and the same name gives the same stand-in


@pytest.mark.parametrize("rule", list(RULES))
def test_a_name_ending_in_a_newline_is_not_taken_as_valid(rule: str) -> None:
    """`$` in a pattern also matches before a final newline: the whole name must match."""
    name_for, _ = RULES[rule]
    assert "\n" not in name_for("Read\n")


def test_gemini_names_begin_with_a_letter_or_underscore() -> None:
    assert gemini_name("9lives").startswith("_9lives_")
    assert gemini_name("").startswith("__")


def test_the_chat_tool_map_is_read_only_and_the_callers_own() -> None:
    request = Request("m", (), tools=(Tool("mcp__a.b"), Tool("Read")))
    table, other = Reuse(), Reuse()
    found = tools_by_wire_name(request, table)
    assert found[wire_name("mcp__a.b")].name == "mcp__a.b"
    with pytest.raises(TypeError):
        found["Evil"] = Tool("Evil")  # type: ignore[index]
    # The same tool names in another request: found again by this table, not another's.
    again = Request("m", (), tools=(Tool("mcp__a.b", description="x"), Tool("Read")))
    assert tools_by_wire_name(again, table) is found
    assert tools_by_wire_name(again, other) is not found


def test_a_long_user_id_is_hashed_to_64_characters_once_per_table() -> None:
    user = "user_" + "a" * 150
    table = Reuse()
    hashed = wire_user(user, table)
    assert len(hashed) == 64 and hashed.startswith("u_")
    assert wire_user(user, table) is hashed and wire_user(user, Reuse()) == hashed
    assert wire_user("short", table) == "short"
