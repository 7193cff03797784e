"""Repairs that make a rendered Messages history acceptable to Anthropic.

Histories reach us from other protocols and other upstreams, and Anthropic is strict about
their shape. Each repair below answers a 400 that Anthropic returns otherwise:
- every tool_use is answered by a tool_result at the start of the next user turn ("Messages
  following tool_use blocks must begin with a matching number of tool_result blocks");
  a missing answer becomes an error result, a result with no matching call becomes text;
- a final assistant turn (a prefill) must not end in whitespace;
- tool_use blocks need tool definitions, even when the client sent none;
- with thinking on, the last assistant tool turn must start with a thinking block.
All functions work on the rendered turns in place: a turn and its list of blocks are the
request's own, but a block may be shared with other requests (protocols/reuse.py), so a block
is never changed, only replaced.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

JSON = dict[str, Any]
_type = itemgetter("type")
_MISSING_RESULT = "(no result: the tool call was interrupted)"


def repair_history(turns: list[JSON]) -> list[JSON]:
    """Pair tool calls with their results, results first in their turn, trimmed prefill."""
    turns = _pair_tool_calls(turns)
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    return turns


def _pair_tool_calls(turns: list[JSON]) -> list[JSON]:
    fixed: list[JSON] = []
    pending: list[str] = []  # ids the next user turn must answer
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = _answer(turn["content"], pending)
            pending = []
        else:
            if pending:
                fixed.append({"role": "user", "content": _missing(pending)})
            pending = [b["id"] for b in turn["content"] if b["type"] == "tool_use"]
        fixed.append(turn)
    if pending:  # a history that ends on unanswered calls
        fixed.append({"role": "user", "content": _missing(pending)})
    return fixed


def _answer(blocks: list[JSON], pending: list[str]) -> list[JSON]:
    """A user turn's blocks with the results first: one for each of `pending` (an error
    result for a call it does not answer), in the turn's order, then its other blocks.
    Merging a system message or text into a tool-result turn must not put anything before
    the results; a result with no call to attach it to keeps what it said as plain text."""
    if not pending and "tool_result" not in map(_type, blocks):
        return blocks  # a plain user turn: nothing to pair or move
    if len(pending) == 1 and len(blocks) == 1 and blocks[0].get("tool_use_id") == pending[0]:
        return blocks  # the one result the one call asked for (agents' usual turn)
    answered: dict[str, None] = {}  # call ids answered, in the turn's order
    results: list[JSON] = []
    others: list[JSON] = []
    for block in blocks:
        if block["type"] != "tool_result":
            others.append(block)
            continue
        call_id = block["tool_use_id"]
        if call_id in pending and call_id not in answered:
            answered[call_id] = None
            results.append(block)
        else:
            others.append({"type": "text", "text": f"Result of an earlier tool call {call_id}:"})
            others.extend(block.get("content", ()))  # texts, images, documents: no results
    missing = [i for i in pending if i not in answered]
    return _missing(missing) + results + others if missing else results + others


def _missing(call_ids: list[str]) -> list[JSON]:
    return [
        {"type": "tool_result", "tool_use_id": i, "content": _MISSING_RESULT, "is_error": True}
        for i in call_ids
    ]


def _trim_prefill(turns: list[JSON]) -> None:
    blocks = turns[-1]["content"]
    last = blocks[-1]
    if last["type"] == "text":
        text = last["text"].rstrip()
        if text:
            if len(text) != len(last["text"]):
                blocks[-1] = {**last, "text": text}  # a new block: this one may be shared
        else:
            blocks.pop()
    if not blocks:
        turns.pop()


def declare_history_tools(body: JSON) -> None:
    """For a request without tools whose history calls some (clients drop the tool list for
    summaries and titles): declare the tools the history used, and forbid calling them."""
    names: dict[str, None] = {}
    for message in body["messages"]:
        for block in message["content"]:
            if block["type"] == "tool_use":
                names[block["name"]] = None
    if names:
        body["tools"] = [
            {"name": name, "input_schema": {"type": "object", "properties": {}}} for name in names
        ]
        body["tool_choice"] = {"type": "none"}


def unsigned_tool_turn(turns: list[JSON]) -> bool:
    """True when the last assistant turn calls tools without starting with a thinking block
    (its reasoning came from another upstream and was dropped); such a request must go
    without thinking."""
    for turn in reversed(turns):
        if turn["role"] != "assistant":
            continue
        blocks = turn["content"]
        calls = any(b["type"] == "tool_use" for b in blocks)
        return calls and blocks[0]["type"] not in ("thinking", "redacted_thinking")
    return False
