"""server/rule_edits.py: a rule's edits written into a body that passes through, per
protocol, without changing the client's own dicts (the reuse table shares them); an edit
with no pass-through form says so (None)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from babelgate.config import load_settings
from babelgate.routing.rules import Edits, Rules
from babelgate.server.rule_edits import edit_body


def edits(tmp_path: Path, **rule: Any) -> Edits:
    path = tmp_path / "babelgate.yaml"
    path.write_text(yaml.safe_dump({
        "providers": {"p": {"type": "openai", "base_url": "https://p.test/v1"}},
        "rules": [rule]}))
    return Rules(load_settings(path, env={}).rules).rules[0].edits


def edited(protocol: str, body: dict[str, Any], rule: Edits) -> dict[str, Any]:
    before = copy.deepcopy(body)
    out = edit_body(protocol, body, rule)
    assert body == before  # the client's body, and every list in it, untouched
    assert out is not None
    return out


def test_anthropic(tmp_path: Path) -> None:
    rule = edits(tmp_path, system_prepend="P", system_append="A", remove=["metadata", "tools"],
                 set={"stop": "END", "top_k": 3},
                 max_tokens=2000)
    body = {"model": "m", "max_tokens": 32000, "system": "S", "metadata": {"user_id": "u"},
            "tools": [{"name": "t"}], "tool_choice": {"type": "any"},
            "thinking": {"type": "enabled", "budget_tokens": 16000},
            "messages": [{"role": "user", "content": "hi"}]}
    out = edited("anthropic", body, rule)
    assert out["system"] == [{"type": "text", "text": "P"}, {"type": "text", "text": "S"},
                             {"type": "text", "text": "A"}]
    assert (out["stop_sequences"], out["top_k"], out["max_tokens"]) == (["END"], 3, 2000)
    assert out["thinking"]["budget_tokens"] < 2000  # Anthropic wants budget < max_tokens
    assert not {"metadata", "tools", "tool_choice"} & set(out)


def test_chat_system_messages(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "developer", "content": "D"},
                                       {"role": "user", "content": "hi"},
                                       {"role": "system", "content": "later"}]}
    out = edited("openai", body, edits(tmp_path, system_prepend="P", system_append="A"))
    assert [m["content"] for m in out["messages"]] == ["P", "D", "A", "hi", "later"]
    out = edited("openai", body, edits(tmp_path, remove=["system"]))
    assert [m["content"] for m in out["messages"]] == ["hi", "later"]


def test_chat_max_tokens_where_the_client_put_it(tmp_path: Path) -> None:
    rule = edits(tmp_path, set={"max_tokens": 50})
    assert edited("openai", {"model": "m", "max_completion_tokens": 9}, rule)[
        "max_completion_tokens"] == 50
    assert edited("openai", {"model": "m"}, rule)["max_tokens"] == 50


def test_responses_instructions_and_input(tmp_path: Path) -> None:
    rule = edits(tmp_path, system_prepend="P", system_append="A")
    out = edited("openai-responses", {"model": "m", "input": "hi"}, rule)
    assert out["instructions"] == "P\n\nA"
    body = {"model": "m", "instructions": "I",
            "input": [{"role": "developer", "content": "D"}, {"role": "user", "content": "hi"}]}
    out = edited("openai-responses", body, rule)
    assert out["instructions"] == "P\n\nI"
    assert [i["content"] for i in out["input"]] == ["D", "A", "hi"]


def test_no_pass_through_form(tmp_path: Path) -> None:
    body = {"model": "m", "messages": []}
    assert edit_body("openai", body, edits(tmp_path, set={"top_k": 3})) is None
    assert edit_body("anthropic", body, edits(tmp_path, set={"reasoning": {"effort": "low"}})
                     ) is None
    assert edit_body("openai-responses", body, edits(tmp_path, remove=["stop"])) is None
