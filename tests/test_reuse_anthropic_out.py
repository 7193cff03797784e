"""Rendering for an Anthropic upstream reuses what earlier turns rendered
(babelgate.protocols.reuse) without changing a byte of what goes out: each request below is
rendered from a shared decoding (Reuse.loads) and from a plain one (orjson.loads), and the
two must match. Blocks
are shared between requests while cache marks and the prefill trim are per request, so the
tests also check those marks where a user would (at most four, auto-cache on the newest
turn only) and that a later request never changes what an earlier one sent."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from tests.reuse_support import wire

from babelgate.canonical.carry import pack
from babelgate.protocols import Quirks, get_codec, reuse
from babelgate.protocols.reuse import Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS

PAD = "lorem ipsum dolor sit amet " * 40  # ~1 KB: every padded piece is worth keeping
LONG = PAD * 4  # past the length at which a shared block goes out pre-serialised
SIGNATURE = "EuYBCkQYAiJA" + "q7Zx" * 120  # an Anthropic thinking signature (opaque to us)
AUTO_CACHE = DEFAULT_QUIRKS["anthropic"]  # auto_cache on
NO_AUTO_CACHE = Quirks(auto_cache=False)
MARK = {"cache_control": {"type": "ephemeral"}}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
       "AAAABJRU5ErkJggg==")


def render_all(client: str, base: dict[str, Any], key: str, conversations: list[list[Any]],
               quirks: Quirks, table: Reuse) -> list[Any]:
    """Render each conversation (`base` with `key` set to it) for an Anthropic upstream, in
    order, through the shared table; each must equal its plain rendering, and no render may
    change a body rendered before it. Returns the wire bodies."""
    codec, out = get_codec(client), get_codec("anthropic")
    hits = table.stats()["hits"]
    sent: list[tuple[dict[str, Any], bytes]] = []
    for items in conversations:
        raw = orjson.dumps({**base, key: items})
        assert len(raw) >= reuse.MIN_BODY
        plain = out.render_request(codec.parse_request(orjson.loads(raw)), quirks)
        shared = out.render_request(codec.parse_request(table.loads(raw), table), quirks, table)
        assert wire(shared) == wire(plain)
        sent.append((shared, orjson.dumps(shared)))
    for body, first in sent:
        assert orjson.dumps(body) == first  # later requests changed nothing it holds
    if len(conversations) > 1:
        assert table.stats()["hits"] > hits  # later turns found earlier pieces
    return [orjson.loads(first) for _, first in sent]


def turns(items: list[Any], first: int) -> list[list[Any]]:
    """The conversation as a client sends it turn by turn: ever longer prefixes."""
    return [items[:end] for end in range(first, len(items) + 1)]


def marks(body: Any) -> list[tuple[Any, ...]]:
    """Where the cache breakpoints are, in prompt order."""
    found: list[tuple[Any, ...]] = []
    found += [("tools", i) for i, t in enumerate(body.get("tools", ())) if "cache_control" in t]
    found += [("system", i) for i, b in enumerate(body.get("system", ())) if "cache_control" in b]
    for m, message in enumerate(body["messages"]):
        for b, block in enumerate(message["content"]):
            if "cache_control" in block:
                found.append(("messages", m, b))
            if block["type"] == "tool_result" and isinstance(block.get("content"), list):
                found += [("messages", m, b, j) for j, inner in enumerate(block["content"])
                          if "cache_control" in inner]
    return found


def assert_auto_cache(body: Any, quirks: Quirks) -> None:
    """A client without marks of its own: with auto-cache, one mark ends the tools, one the
    system prompt and one the newest turn (its last block, unless that is thinking, which
    takes none); without, none at all."""
    if not quirks.auto_cache:
        assert marks(body) == []
        return
    expected: list[tuple[Any, ...]] = [
        ("tools", len(body["tools"]) - 1), ("system", len(body["system"]) - 1)]
    last = len(body["messages"]) - 1
    newest = body["messages"][last]["content"]
    if newest[-1]["type"] not in ("thinking", "redacted_thinking"):
        expected.append(("messages", last, len(newest) - 1))
    assert marks(body) == expected


# ------------------------------------------------------------------ Codex (Responses)


def codex_items() -> list[Any]:
    """A Codex session: rounds of Anthropic reasoning (its signature carried in
    encrypted_content), a call and its output; a patch; a final answer that ends in
    whitespace (a prefill while it is last); the user's next question."""
    items: list[Any] = [
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "You are Codex. " + LONG}]},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Fix the invoices endpoint. " + PAD}]},
    ]
    for n in range(3):
        call_id = f"toolu_0{n}Ck7Xq3LkP9sVw2"
        items += [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": f"Step {n}"}],
             "encrypted_content": pack("anthropic", {"signature": SIGNATURE + str(n)})},
            {"type": "function_call", "name": "exec_command", "call_id": call_id,
             "arguments": orjson.dumps({"cmd": f"rg -n invoices{n}", "note": PAD}).decode()},
            {"type": "function_call_output", "call_id": call_id,
             "output": f"output {n}\n" + (LONG if n == 1 else PAD)},
        ]
    items += [
        {"type": "custom_tool_call", "name": "apply_patch", "call_id": "toolu_patch",
         "input": "*** Begin Patch\n" + PAD + "\n*** End Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "toolu_patch", "output": "Done. " + PAD},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Fixed it. " + PAD + "  \n"}]},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Now run the suite. " + PAD}]},
    ]
    return items


CODEX_BASE: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "instructions": "Be brief.",
    "store": False,
    "reasoning": {"effort": "medium"},
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Run a command. " + PAD,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "custom", "name": "apply_patch", "description": "Edit files. " + PAD,
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: " + PAD}},
    ],
}


@pytest.mark.parametrize("quirks", [AUTO_CACHE, NO_AUTO_CACHE], ids=["auto-cache", "plain"])
def test_codex_turns_render_as_without_reuse(quirks: Quirks, table: Reuse) -> None:
    items = codex_items()
    bodies = render_all("openai-responses", CODEX_BASE, "input", turns(items, 3), quirks, table)
    for body in bodies:
        assert_auto_cache(body, quirks)
        thinking = [b for m in body["messages"] for b in m["content"] if b["type"] == "thinking"]
        assert thinking and all(b["signature"].startswith(SIGNATURE) for b in thinking)
    # The final answer is trimmed while it ends the conversation (a prefill), and only then:
    # the next turn sends it as the client wrote it.
    prefill, after = bodies[-2], bodies[-1]
    assert prefill["messages"][-1]["content"][-1]["text"] == "Fixed it. " + PAD.rstrip()
    assert after["messages"][-2]["content"][-1]["text"] == "Fixed it. " + PAD + "  \n"


@pytest.mark.parametrize("quirks", [AUTO_CACHE, NO_AUTO_CACHE], ids=["auto-cache", "plain"])
def test_codex_items_in_other_conversations_render_as_without_reuse(
    quirks: Quirks, table: Reuse
) -> None:
    """The same items after a different history: a result whose call is gone becomes text,
    a call whose result is missing gets an error result, and the last block is marked in
    each conversation's own newest turn."""
    items = codex_items()
    call_gone = [item for item in items if item.get("call_id") != "toolu_01Ck7Xq3LkP9sVw2"
                 or item["type"] != "function_call"]
    result_gone = [item for item in items if item.get("call_id") != "toolu_02Ck7Xq3LkP9sVw2"
                   or item["type"] != "function_call_output"]
    rounds_swapped = items[:2] + items[5:8] + items[2:5] + items[8:]
    conversations = [items, call_gone, result_gone, rounds_swapped, items[:-1], items]
    bodies = render_all("openai-responses", CODEX_BASE, "input", conversations, quirks, table)
    for body in bodies:
        assert_auto_cache(body, quirks)
    texts = [b.get("text", "") for m in bodies[1]["messages"] for b in m["content"]]
    assert "Result of an earlier tool call toolu_01Ck7Xq3LkP9sVw2:" in texts
    missing = [b for m in bodies[2]["messages"] for b in m["content"]
               if b["type"] == "tool_result" and b.get("is_error")]
    assert [b["tool_use_id"] for b in missing] == ["toolu_02Ck7Xq3LkP9sVw2"]


# ------------------------------------------------------------------ Chat


def chat_messages() -> list[Any]:
    messages: list[Any] = [
        {"role": "system", "content": "You are a coding assistant. " + LONG},
        {"role": "user", "content": "The invoices endpoint fails. " + PAD},
    ]
    for n in range(3):
        call_id = f"call_{n}Qx2LkP9sVw2mN4c"
        messages += [
            {"role": "assistant", "content": f"Looking ({n}). " + PAD, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "read.file", "arguments": orjson.dumps({"p": PAD}).decode()}},
            ]},
            {"role": "tool", "tool_call_id": call_id, "content": f"file {n}\n" + LONG},
        ]
        if n == 1:  # a mid-conversation instruction: user text in place
            messages.append({"role": "system", "content": "Keep the tests green. " + PAD})
    messages += [
        {"role": "assistant", "content": "Done. " + PAD},
        {"role": "user", "content": "Thanks, and the docs? " + PAD},
    ]
    return messages


CHAT_BASE: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "tools": [{"type": "function", "function": {
        "name": "read.file", "description": "Read a file. " + PAD,
        "parameters": {"type": "object", "properties": {"p": {"type": "string"}}}}}],
}


@pytest.mark.parametrize("quirks", [AUTO_CACHE, NO_AUTO_CACHE], ids=["auto-cache", "plain"])
def test_chat_turns_render_as_without_reuse(quirks: Quirks, table: Reuse) -> None:
    messages = chat_messages()
    others = [messages[:2] + messages[4:], messages[:3] + messages[-2:], messages]
    bodies = render_all("openai", CHAT_BASE, "messages", turns(messages, 2) + others, quirks, table)
    for body in bodies:
        assert_auto_cache(body, quirks)
        assert all(TOOL_NAME.match(t["name"]) for t in body["tools"])  # "read.file" renamed


# ------------------------------------------------------------------ Anthropic clients


def anthropic_messages(marked: bool) -> list[Any]:
    """Claude Code's shape: thinking with Anthropic's signature, calls and their results.
    When `marked`, more client marks than Anthropic allows: on the first message, inside the
    first result's content, on the later calls and on the last two messages."""
    def mark(block: dict[str, Any], on: bool = True) -> dict[str, Any]:
        return {**block, **MARK} if marked and on else block

    messages: list[Any] = [{"role": "user", "content": [
        mark({"type": "text", "text": "<system-reminder>" + LONG + "</system-reminder>"}),
        {"type": "text", "text": "Why does the endpoint fail? " + PAD},
    ]}]
    for n in range(3):
        call_id = f"toolu_0{n}A7bXq3LkP9sVw2mN4c"
        messages += [
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": f"Look at part {n}. " + PAD,
                 "signature": SIGNATURE + str(n)},
                mark({"type": "tool_use", "id": call_id, "name": "Read", "input": {"path": PAD}},
                     on=n > 0),
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                          "content": [mark({"type": "text", "text": LONG},
                                                           on=n == 0)]}]},
        ]
    messages += [
        {"role": "assistant", "content": [mark({"type": "text", "text": "Found it. " + PAD})]},
        {"role": "user", "content": [mark({"type": "text", "text": "Fix it. " + PAD})]},
    ]
    return messages


def anthropic_base(marked: bool) -> dict[str, Any]:
    system: list[dict[str, Any]] = [{"type": "text", "text": "You are Claude Code. " + LONG},
                                    {"type": "text", "text": "Environment: linux. " + PAD}]
    tools: list[dict[str, Any]] = [{"name": name, "description": f"{name} a file. " + PAD,
                                    "input_schema": {"type": "object", "properties": {
                                        "path": {"type": "string"}}}}
                                   for name in ("Read", "Edit")]
    if marked:
        system[-1] = {**system[-1], **MARK}
        tools[-1] = {**tools[-1], **MARK}
    return {"model": "claude-sonnet-4-5", "max_tokens": 16000, "system": system,
            "tools": tools, "thinking": {"type": "enabled", "budget_tokens": 4000}}


def client_marks(value: Any) -> int:
    if isinstance(value, dict):
        return ("cache_control" in value) + sum(client_marks(v) for v in value.values())
    if isinstance(value, list):
        return sum(client_marks(v) for v in value)
    return 0


@pytest.mark.parametrize("quirks", [AUTO_CACHE, NO_AUTO_CACHE], ids=["auto-cache", "plain"])
def test_anthropic_client_with_its_own_marks(quirks: Quirks, table: Reuse) -> None:
    """More marks than Anthropic allows: the last four in prompt order stay (the newest turn's
    among them), in every turn, whatever an earlier turn dropped from a shared block."""
    base, messages = anthropic_base(marked=True), anthropic_messages(marked=True)
    conversations = [*turns(messages, 1), messages[:1] + messages[3:], messages, messages[:3]]
    bodies = render_all("anthropic", base, "messages", conversations, quirks, table)
    for items, body in zip(conversations, bodies, strict=True):
        asked = client_marks({**base, "messages": items})
        kept = marks(body)
        assert len(kept) == min(asked, 4)
        if items[-1]["role"] == "user" and "cache_control" in items[-1]["content"][-1]:
            assert kept[-1] == ("messages", len(body["messages"]) - 1,
                                len(body["messages"][-1]["content"]) - 1)
    # Four marks or fewer all stay, the system's and the one inside the first result too;
    # with eight, the four newest: the first result's mark goes, in that request only.
    first_result = ("messages", 2, 0, 0)
    assert marks(bodies[0]) == [("tools", 1), ("system", 1), ("messages", 0, 0)]
    assert marks(bodies[2])[-1] == marks(bodies[-1])[-1] == first_result
    assert len(marks(bodies[-2])) == 4 and first_result not in marks(bodies[-2])


@pytest.mark.parametrize("quirks", [AUTO_CACHE, NO_AUTO_CACHE], ids=["auto-cache", "plain"])
def test_anthropic_client_without_marks(quirks: Quirks, table: Reuse) -> None:
    base, messages = anthropic_base(marked=False), anthropic_messages(marked=False)
    conversations = [*turns(messages, 1), messages[:1] + messages[3:], messages]
    for body in render_all("anthropic", base, "messages", conversations, quirks, table):
        assert_auto_cache(body, quirks)


def test_a_block_marked_in_one_conversation_is_plain_in_another(table: Reuse) -> None:
    """The same message is the newest turn of one request (auto-cache marks its last block)
    and an earlier turn of the next: only the first request carries that mark, whichever
    order they come in."""
    items = codex_items()
    short, long = items[:-1], items
    bodies = render_all("openai-responses", CODEX_BASE, "input", [short, long, short, long],
                        AUTO_CACHE, table)
    for body in bodies:
        assert sum(1 for m in marks(body) if m[0] == "messages") == 1
    assert bodies[0] == bodies[2] and bodies[1] == bodies[3]
    answer = bodies[1]["messages"][-2]["content"][-1]
    assert answer["text"].startswith("Fixed it.") and "cache_control" not in answer



def test_upstreams_with_and_without_auto_cache_share_one_table(table: Reuse) -> None:
    """One provider's auto-cache marks never reach another's requests, though both render
    the same shared system prompt, tools and messages."""
    hits = table.stats()["hits"]
    for quirks in [AUTO_CACHE, NO_AUTO_CACHE, AUTO_CACHE, NO_AUTO_CACHE]:
        for client, base, key, items in [
            ("openai", CHAT_BASE, "messages", chat_messages()),
            ("openai-responses", CODEX_BASE, "input", codex_items()),
            ("anthropic", anthropic_base(False), "messages", anthropic_messages(False)),
        ]:
            assert_auto_cache(render_all(client, base, key, [items], quirks, table)[0], quirks)
    assert table.stats()["hits"] > hits


def test_one_table_serves_upstreams_with_different_quirks(table: Reuse) -> None:
    """Blocks kept for one upstream's quirks are not sent to another's: a PDF goes as a
    document only where documents are accepted, an image only where images are."""
    base, messages = anthropic_base(marked=False), anthropic_messages(marked=False)
    pdf = {"type": "document", "title": "spec",
           "source": {"type": "base64", "media_type": "application/pdf", "data": PNG * 40}}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    messages[0]["content"].append(pdf)
    messages[2]["content"][0]["content"].append(image)
    everything = Quirks(documents=True, auto_cache=True)
    no_images = Quirks(images=False, documents=True)
    neither = Quirks(images=False, auto_cache=False)
    order = [everything, no_images, neither] * 2
    hits = table.stats()["hits"]
    sent = [render_all("anthropic", base, "messages", [messages], q, table)[0] for q in order]
    assert table.stats()["hits"] > hits
    documents = [body["messages"][0]["content"][-1]["type"] for body in sent[:3]]
    assert documents == ["document", "document", "text"]
    images = [body["messages"][2]["content"][0]["content"][-1]["type"] for body in sent[:3]]
    assert images == ["image", "text", "text"]
    assert sent[:3] == sent[3:]
