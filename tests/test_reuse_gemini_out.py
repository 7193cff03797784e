"""Gemini upstream rendering reusing its work across requests (babelgate.protocols.reuse).

A request decoded through `reuse.loads` shares its unchanged messages with earlier requests,
and the Gemini renderer keeps what each one rendered to. Where a message lands still depends
on its conversation (same-role turns merge, function responses are named after the call they
answer and put in call order, a turn of signature-less calls gets the placeholder signature),
so every test here renders the same messages in several conversations and checks that:
- the body sent upstream is byte for byte what a plain render (`orjson.loads`) gives;
- a body already rendered does not change when later requests are rendered;
- what Gemini is promised still holds (the oracle checks, which do not compare two renders
  of the same code and so catch a wrong memo that both paths would share).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
from msgspec.structs import replace
from tests.reuse_support import wire

from babelgate.canonical import Message, Request, Text, Tool, ToolCall
from babelgate.protocols import Quirks, get_codec, reuse
from babelgate.protocols.gemini.request import MID_SYSTEM_PREFIX, PLACEHOLDER_SIGNATURE
from babelgate.protocols.reuse import Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS

JSON = dict[str, Any]
CHAT, ANTHROPIC = "openai", "anthropic"
GEMINI = DEFAULT_QUIRKS["gemini"]
NO_IMAGES = Quirks(images=False)
PAD = "lorem ipsum dolor sit amet " * 12  # ~320 bytes: every padded item is kept
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
       "AAAABJRU5ErkJggg==")
TOOLS = (Tool(name="Read"), Tool(name="Grep"), Tool(name="Bash"))


# ------------------------------------------------------------------ helpers


def gemini_answer(client: str, parts: list[JSON]) -> JSON:
    """The assistant message `client` echoes back after Gemini answered with `parts`: made by
    the gateway's own codecs, so signatures ride the way that protocol carries them."""
    request = Request(model="gemini-3-pro-preview", messages=(Message("user", (Text("hi"),)),),
                      tools=TOOLS)
    body = {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": "STOP"}]}
    response = get_codec("gemini").parse_response(body, request)
    rendered = get_codec(client).render_response(response, request)
    if client == CHAT:
        message: JSON = rendered["choices"][0]["message"]
        return {k: v for k, v in message.items() if v is not None}
    return {"role": "assistant", "content": rendered["content"]}


def call_ids(message: JSON) -> list[str]:
    """The ids a client answers `message`'s calls with."""
    if "tool_calls" in message:
        return [call["id"] for call in message["tool_calls"]]
    return [block["id"] for block in message["content"] if block["type"] == "tool_use"]


def render(client: str, body: JSON, quirks: Quirks, table: Reuse | None) -> JSON:
    """`body` rendered for Gemini through `table`, or decoded in one go without one."""
    raw = orjson.dumps(body)
    assert len(raw) >= reuse.MIN_BODY  # else nothing is shared and the test proves nothing
    decoded = table.loads(raw) if table is not None else orjson.loads(raw)
    request = get_codec(client).parse_request(decoded, table)
    return get_codec("gemini").render_request(request, quirks, table)


class Renders:
    """Renders bodies both ways, and keeps every shared render to check later that rendering
    other requests did not change it."""

    def __init__(self, table: Reuse) -> None:
        self.table = table
        self.kept: list[tuple[JSON, bytes]] = []

    def check(self, client: str, body: JSON, quirks: Quirks) -> Any:
        plain = wire(render(client, body, quirks, None))
        shared = render(client, body, quirks, self.table)
        sent = orjson.dumps(shared)
        assert orjson.loads(sent) == plain
        self.kept.append((shared, sent))
        return plain

    def unchanged(self) -> None:
        for body, sent in self.kept:
            assert orjson.dumps(body) == sent


def roles_alternate(body: JSON) -> None:
    roles = [content["role"] for content in body["contents"]]
    assert roles[0] == "user" and roles[-1] == "user"
    assert all(a != b for a, b in pairwise(roles)), roles


def calls_of(content: JSON) -> list[JSON]:
    return [part for part in content["parts"] if "functionCall" in part]


def responses_of(content: JSON) -> list[JSON]:
    return [part["functionResponse"] for part in content["parts"] if "functionResponse" in part]


# ------------------------------------------------------------------ Chat Completions clients


def chat_steps() -> list[list[JSON]]:
    """A Chat client's session, step by step: each step is what one turn adds."""
    first = gemini_answer(CHAT, [
        {"text": "Which files?", "thought": True, "thoughtSignature": "SIG_THOUGHT"},
        {"text": "I will read both files. " + PAD},
        {"functionCall": {"name": "Read", "args": {"file_path": "/repo/app.py"}},
         "thoughtSignature": "SIG_CALL"},
        {"functionCall": {"name": "Read", "args": {"file_path": "/repo/test_app.py"}}},
    ])
    app, test = call_ids(first)
    foreign = {"role": "assistant", "content": None, "tool_calls": [  # calls from elsewhere
        {"id": "call_foreign_1", "type": "function",
         "function": {"name": "Grep", "arguments": orjson.dumps({"q": PAD}).decode()}},
        {"id": "call_foreign_2", "type": "function",
         "function": {"name": "Bash", "arguments": '{"cmd": "pytest -q"}'}}]}
    return [
        [{"role": "system", "content": "You are a careful coding agent. " + PAD * 6},
         {"role": "developer", "content": "Repository rules: " + PAD},
         {"role": "user", "content": [
             {"type": "text", "text": "Fix the failing test. " + PAD},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}],
        [first,
         # answered out of call order, in two tool messages
         {"role": "tool", "tool_call_id": test, "content": "test_app.py: " + PAD},
         {"role": "tool", "tool_call_id": app, "content": "app.py: " + PAD},
         {"role": "user", "content": "Look closer at the slicing. " + PAD},
         {"role": "system", "content": "Note: the tests run on Python 3.11. " + PAD}],
        [foreign,
         {"role": "assistant", "content": "Searching and testing at once. " + PAD},
         {"role": "tool", "tool_call_id": "call_foreign_2", "content": "1 failed " + PAD},
         {"role": "tool", "tool_call_id": "call_foreign_1", "content": "found: " + PAD}],
        [{"role": "assistant", "content": "The slice end is off by one. " + PAD},
         {"role": "user", "content": [
             {"type": "text", "text": "Here is the screenshot. " + PAD},
             {"type": "image_url", "image_url": {"url": "https://example.com/shot.png"}}]}],
    ]


def chat_body(steps: list[list[JSON]], last: str) -> JSON:
    messages = [message for step in steps for message in step]
    messages.append({"role": "user", "content": last})
    return {"model": "gemini-3-pro-preview", "messages": messages, "tool_choice": "auto",
            "tools": [{"type": "function", "function": {
                "name": tool.name, "description": f"{tool.name} tool. {PAD}",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
                for tool in TOOLS]}


def test_a_chat_session_renders_as_without_reuse_turn_after_turn(table: Reuse) -> None:
    steps = chat_steps()
    renders = Renders(table)
    for _ in range(2):  # the second time round, every earlier piece is found again
        for turn in range(1, len(steps) + 1):
            for quirks in (GEMINI, NO_IMAGES):  # the same shared messages, two upstreams
                plain = renders.check(CHAT, chat_body(steps[:turn], f"turn {turn}"), quirks)
                roles_alternate(plain)
                if not quirks.images:
                    assert "inlineData" not in orjson.dumps(plain).decode()
    renders.unchanged()
    assert table.stats()["hits"] > 0
    # Reuse did take place: a later turn sends earlier turns pre-serialised.
    last = renders.kept[-1][0]
    assert any(isinstance(content, orjson.Fragment) for content in last["contents"])
    assert isinstance(last["tools"], orjson.Fragment)


def test_a_chat_session_keeps_gemini_s_promises(table: Reuse) -> None:
    """The oracle: checked on the shared render of the whole session, after earlier turns
    filled the table."""
    steps = chat_steps()
    for turn in range(1, len(steps) + 1):
        render(CHAT, chat_body(steps[:turn], f"turn {turn}"), GEMINI, table)
    body = wire(render(CHAT, chat_body(steps, "last"), GEMINI, table))
    roles_alternate(body)
    system = [part["text"] for part in body["systemInstruction"]["parts"]]
    assert system[0].startswith("You are a careful") and system[1].startswith("Repository")
    contents = body["contents"]
    assert [part.get("inlineData", {}).get("mimeType") for part in contents[0]["parts"]] == [
        None, "image/png"]

    # The first model turn: its own signatures, no placeholder.
    model = contents[1]
    assert model["parts"][0] == {"text": "Which files?", "thought": True,
                                 "thoughtSignature": "SIG_THOUGHT"}
    assert [call.get("thoughtSignature") for call in calls_of(model)] == ["SIG_CALL", None]
    # Both results in the one user turn after it, in call order though they came the other
    # way round; then the user's text, then the system note that came mid-conversation.
    answer = contents[2]
    assert [(r["name"], r["response"]["output"].split(":")[0]) for r in responses_of(answer)] \
        == [("Read", "app.py"), ("Read", "test_app.py")]
    rest = [part["text"] for part in answer["parts"][2:]]
    assert rest[0].startswith("Look closer") and rest[1].startswith(MID_SYSTEM_PREFIX)
    assert len(answer["parts"]) == 4

    # Two assistant messages in a row make one model turn; its calls came from another
    # provider, so the first one carries the placeholder signature.
    merged = contents[3]
    assert [call["functionCall"]["name"] for call in calls_of(merged)] == ["Grep", "Bash"]
    assert [call.get("thoughtSignature") for call in calls_of(merged)] == [
        PLACEHOLDER_SIGNATURE, None]
    assert merged["parts"][-1]["text"].startswith("Searching and testing")
    assert [r["name"] for r in responses_of(contents[4])] == ["Grep", "Bash"]
    # The model turn that follows a results turn stands alone; the final user turn holds the
    # screenshot message and the new question.
    assert contents[5]["parts"] == [{"text": "The slice end is off by one. " + PAD}]
    assert contents[6]["parts"][1] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://example.com/shot.png"}}
    assert contents[6]["parts"][2] == {"text": "last"}


def test_the_same_chat_messages_in_other_conversations(table: Reuse) -> None:
    """One tool message after differently named calls, one assistant message alone, merged
    after a signed call and merged before one, a user message alone or joined to results:
    each conversation gets its own rendering, and earlier ones keep theirs."""
    read = gemini_answer(CHAT, [
        {"text": "Reading it. " + PAD},
        {"functionCall": {"name": "Read", "args": {"file_path": "/x"}, "id": "gem-1"}}])
    grep = {**read, "tool_calls": [{**read["tool_calls"][0], "function": {
        "name": "Grep", "arguments": "{}"}}]}
    signed = gemini_answer(CHAT, [
        {"text": "First a look. " + PAD},
        {"functionCall": {"name": "Bash", "args": {"cmd": "ls"}}, "thoughtSignature": "SIG_B"}])
    (call,) = call_ids(read)
    result = {"role": "tool", "tool_call_id": call, "content": "contents of /x " + PAD}
    ask = {"role": "user", "content": "What does it say? " + PAD}
    intro = {"role": "system", "content": "You read files for a living. " + PAD * 12}
    say = {"role": "assistant", "content": "Let me think about that. " + PAD}
    conversations = {
        "read": [intro, ask, read, result, ask],
        "grep": [intro, ask, grep, result, ask],
        "read then text": [intro, ask, read, say, result],
        "signed then read": [intro, ask, signed, read, result],
        "read then signed": [intro, ask, read, signed, result],
        "twice": [intro, ask, read, result, result, ask],
        "no call": [intro, ask, result, ask],
        "prefill": [intro, ask, read, result, ask, read],
    }
    renders = Renders(table)
    seen: dict[str, Any] = {}
    for _ in range(2):
        for name, messages in conversations.items():
            for quirks in (GEMINI, NO_IMAGES):
                body = {"model": "gemini-3-pro-preview", "messages": messages}
                seen[name] = renders.check(CHAT, body, quirks)
    renders.unchanged()

    def answers(name: str) -> list[JSON]:
        return [r for c in seen[name]["contents"] for r in responses_of(c)]

    # A result is named after the call it answers in its own conversation, and keeps the id
    # Gemini gave that call.
    assert [(r["name"], r.get("id")) for r in answers("read")] == [("Read", "gem-1")]
    assert [(r["name"], r.get("id")) for r in answers("grep")] == [("Grep", "gem-1")]
    assert [r["name"] for r in answers("no call")] == ["unknown_tool"]
    assert len(answers("twice")) == 2
    # The placeholder goes on a merged turn's first call only when no call there is signed.
    for name, expected in (("signed then read", ["SIG_B", None]),
                           ("read then signed", [None, "SIG_B"])):
        signatures = [c.get("thoughtSignature") for c in calls_of(seen[name]["contents"][1])]
        assert signatures == expected
    alone = calls_of(seen["read"]["contents"][1])
    assert alone[0]["thoughtSignature"] == PLACEHOLDER_SIGNATURE
    merged = seen["read then text"]["contents"][1]["parts"]
    assert merged[1]["thoughtSignature"] == PLACEHOLDER_SIGNATURE
    assert merged[2]["text"].startswith("Let me think")
    # A trailing model turn (a prefill) is not sent.
    assert seen["prefill"]["contents"] == seen["read"]["contents"]


def test_count_tokens_bodies_render_as_without_reuse(table: Reuse) -> None:
    steps = chat_steps()
    codec, client = get_codec("gemini"), get_codec(CHAT)
    for turn in range(1, len(steps) + 1):
        raw = orjson.dumps(chat_body(steps[:turn], f"turn {turn}"))
        plain = codec.render_count_tokens(client.parse_request(orjson.loads(raw)), GEMINI)
        shared = codec.render_count_tokens(
            client.parse_request(table.loads(raw), table), GEMINI, table)
        assert wire(shared) == wire(plain)
        assert "toolConfig" not in wire(shared)["generateContentRequest"]


# ------------------------------------------------------------------ Anthropic clients


def anthropic_steps() -> list[list[JSON]]:
    """A Claude Code session against Gemini: thinking with Gemini's signatures, results with
    images, an error result, calls Claude made before the switch to Gemini."""
    claude = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me look. " + PAD, "signature": "claude-sig"},
        {"type": "tool_use", "id": "toolu_claude", "name": "Bash", "input": {"cmd": "ls"}}]}
    gemini = gemini_answer(ANTHROPIC, [
        {"text": "Two reads.", "thought": True, "thoughtSignature": "SIG_THOUGHT"},
        {"text": "Reading the app and its screenshot. " + PAD,
         "thoughtSignature": "SIG_TEXT"},
        {"functionCall": {"name": "Read", "args": {"file_path": "/repo/app.py"}},
         "thoughtSignature": "SIG_CALL"},
        {"functionCall": {"name": "Read", "args": {"file_path": "/repo/shot.png"}}}])
    app, shot = call_ids(gemini)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}
    return [
        [{"role": "user", "content": [{"type": "text", "text": "Fix the layout. " + PAD},
                                      image]}],
        [claude,
         {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "toolu_claude", "is_error": True,
              "content": "ls: permission denied " + PAD}]}],
        [gemini,
         {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": shot,
              "content": [{"type": "text", "text": "the screenshot " + PAD}, image]},
             {"type": "tool_result", "tool_use_id": app, "content": "app.py: " + PAD},
             {"type": "text", "text": "Both are attached. " + PAD}]}],
    ]


def anthropic_body(steps: list[list[JSON]], last: str) -> JSON:
    messages = [message for step in steps for message in step]
    messages.append({"role": "user", "content": [{"type": "text", "text": last}]})
    return {"model": "gemini-3-pro-preview", "max_tokens": 4096,
            "system": [{"type": "text", "text": "You are Claude Code. " + PAD * 8}],
            "tools": [{"name": tool.name, "description": f"{tool.name}. {PAD}",
                       "input_schema": {"type": "object", "properties": {
                           "q": {"type": "string"}}}} for tool in TOOLS],
            "messages": messages}


def test_a_claude_code_session_renders_as_without_reuse(table: Reuse) -> None:
    steps = anthropic_steps()
    renders = Renders(table)
    for _ in range(2):
        for turn in range(1, len(steps) + 1):
            for quirks in (GEMINI, NO_IMAGES):
                body = anthropic_body(steps[:turn], f"turn {turn}")
                roles_alternate(renders.check(ANTHROPIC, body, quirks))
    # The same steps in another order: the Gemini turn first, Claude's after it.
    reordered = [steps[0], steps[2], steps[1]]
    for quirks in (GEMINI, NO_IMAGES):
        renders.check(ANTHROPIC, anthropic_body(reordered, "again"), quirks)
    renders.unchanged()
    last = renders.kept[-1][0]
    assert isinstance(last["systemInstruction"]["parts"], orjson.Fragment)


def test_a_claude_code_session_keeps_gemini_s_promises(table: Reuse) -> None:
    steps = anthropic_steps()
    for turn in range(1, len(steps) + 1):
        render(ANTHROPIC, anthropic_body(steps[:turn], f"turn {turn}"), GEMINI, table)
    body = wire(render(ANTHROPIC, anthropic_body(steps, "last"), GEMINI, table))
    roles_alternate(body)
    contents = body["contents"]
    # Claude's own thinking is not Gemini's to read; its signature-less call gets the
    # placeholder, and its error result goes back as an error.
    assert contents[1]["parts"] == [{"functionCall": {"name": "Bash", "args": {"cmd": "ls"}},
                                     "thoughtSignature": PLACEHOLDER_SIGNATURE}]
    assert responses_of(contents[2])[0]["response"]["error"].startswith("ls: permission")
    # Gemini's thought, text and call signatures all come back where Gemini put them.
    model = contents[3]["parts"]
    assert model[0] == {"text": "Two reads.", "thought": True, "thoughtSignature": "SIG_THOUGHT"}
    assert model[1]["thoughtSignature"] == "SIG_TEXT"
    assert [call.get("thoughtSignature") for call in calls_of(contents[3])] == ["SIG_CALL", None]
    # Results in call order, then the image a result held, then the user's own text, and the
    # new question joins the same user turn.
    answer = contents[4]["parts"]
    assert [r["response"]["output"].split(" ")[0] for r in responses_of(contents[4])] == [
        "app.py:", "the"]
    assert answer[2] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert answer[3]["text"].startswith("Both are attached")
    assert answer[4] == {"text": "last"}
    assert len(contents) == 5


# ------------------------------------------------------------------ canonical requests


def test_a_shared_result_is_named_after_whichever_call_it_answers(table: Reuse) -> None:
    """The renderer's input is a canonical Request, and a codec may combine shared messages
    as it likes: a shared result answering a call of another name, or the same call with
    another id from Gemini, must be rendered for that call, as it is when nothing is shared."""
    read = gemini_answer(CHAT, [
        {"text": "Reading it. " + PAD},
        {"functionCall": {"name": "Read", "args": {"file_path": "/x"}, "id": "gem-1"}}])
    (call,) = call_ids(read)
    body = {"model": "gemini-3-pro-preview", "messages": [
        {"role": "system", "content": "You read files for a living. " + PAD * 12},
        {"role": "user", "content": "What does /x say? " + PAD}, read,
        {"role": "tool", "tool_call_id": call, "content": "contents of /x " + PAD}]}
    raw = orjson.dumps(body)
    assert len(raw) >= reuse.MIN_BODY
    request = get_codec(CHAT).parse_request(table.loads(raw), table)
    ask, model, results = request.messages
    # The same conversation decoded without the table: nothing in it is shared.
    plain_request = get_codec(CHAT).parse_request(orjson.loads(raw))
    plain_ask, plain_model, plain_results = plain_request.messages
    renders = Renders(table)

    def check(message: Message, plain_message: Message) -> JSON:
        """The result as rendered with shared messages around `message`, once checked to be
        what the plain conversation with `plain_message` in its place renders to."""
        shared = get_codec("gemini").render_request(
            replace(request, messages=(ask, message, results)), GEMINI, table)
        plain = get_codec("gemini").render_request(
            replace(plain_request, messages=(plain_ask, plain_message, plain_results)), GEMINI)
        assert wire(shared) == wire(plain)
        renders.kept.append((shared, orjson.dumps(shared)))
        return responses_of(wire(shared)["contents"][2])[0]

    (tool_call,) = [part for part in model.parts if isinstance(part, ToolCall)]
    (plain_call,) = [part for part in plain_model.parts if isinstance(part, ToolCall)]
    for _ in range(2):  # its own call: the result's rendering kept, then found again
        assert check(model, plain_model) == {
            "name": "Read", "id": "gem-1", "response": {"output": "contents of /x " + PAD}}
    renamed, plain_renamed = (replace(call, name="Grep") for call in (tool_call, plain_call))
    assert check(Message("assistant", (renamed,)),
                 Message("assistant", (plain_renamed,)))["name"] == "Grep"
    other_id, plain_other_id = (replace(call, provider_metadata={"gemini_id": "gem-2"})
                                for call in (tool_call, plain_call))
    assert check(Message("assistant", (other_id,)),
                 Message("assistant", (plain_other_id,)))["id"] == "gem-2"
    assert check(model, plain_model)["id"] == "gem-1"
    renders.unchanged()
