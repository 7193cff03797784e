"""Canonical conversation -> Chat Completions `messages`.

What this module promises an upstream:
- System text comes first as one `system` message. A system Message mid-conversation stays a
  `system` message in place where the upstream takes that (`Quirks.system_anywhere`: OpenAI);
  elsewhere its text is folded into the first one, which most chat templates require.
- Every assistant `tool_calls` entry is answered by a `tool` message right after that
  assistant message, in call order. Results are looked up in the user turns that follow (up
  to the next assistant turn), so a result stored late or a user turn that mixes results and
  text still lands in the right place; a call with no result gets a tool message saying so,
  because strict upstreams reject unanswered calls.
- Images and documents inside a tool result cannot ride in a `tool` message on most
  upstreams: their text stays in the tool message and the images follow in the next user
  message.
- Results that answer no call become plain user text rather than orphan tool messages.
- Assistant `content` is a string or null, never an empty string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from babelgate.canonical import (
    JSON,
    Document,
    Image,
    Message,
    Reasoning,
    Text,
    ToolCall,
    ToolResult,
)
from babelgate.canonical.tool_args import dump_arguments

from ..base import Quirks
from ..reuse import Reuse
from .names import wire_call_id, wire_name

MISSING_RESULT = "Error: no result was recorded for this tool call (it was interrupted)."
_IMAGE_PLACEHOLDER = "[image omitted: this model does not accept images]"
_EMPTY_RESULT = "(no output)"


def render_messages(
    system: tuple[Text, ...], messages: tuple[Message, ...], quirks: Quirks, reuse: Reuse
) -> list[Any]:
    builder = _Builder(quirks, reuse)
    system_message = reuse.derive(_system_message, system)
    if system_message is not None:
        builder.out.append(reuse.serialised(system_message))
    for position, message in enumerate(messages):
        if message.role == "assistant":
            builder.assistant(message, _answers(messages, position))
        elif message.role == "user":
            builder.user(message)
        else:
            builder.system(message)
    builder.flush_pending()
    if builder.late_system:
        _fold_system(builder.out, system, builder.late_system, system_message is not None)
    return builder.out


def _fold_system(
    out: list[Any], system: tuple[Text, ...], late: list[str], has_first: bool
) -> None:
    """The leading system message with the text of later ones appended, in their order."""
    text = "\n\n".join([_join_text(system), *late] if has_first else late)
    first = {"role": "system", "content": text}
    if has_first:
        out[0] = first
    else:
        out.insert(0, first)


def _answers(messages: tuple[Message, ...], position: int) -> dict[str, ToolResult]:
    """Results in the user turns after `messages[position]`, up to the next assistant turn."""
    found: dict[str, ToolResult] = {}
    for message in messages[position + 1 :]:
        if message.role == "assistant":
            break
        for part in message.parts:
            if isinstance(part, ToolResult):
                found.setdefault(part.call_id, part)
    return found


class _Builder:
    """Appends wire messages, holding tool-result images until the next user message."""

    __slots__ = ("answered", "late_system", "out", "pending", "quirks", "reuse")

    def __init__(self, quirks: Quirks, reuse: Reuse) -> None:
        self.quirks = quirks
        self.reuse = reuse
        self.out: list[Any] = []  # wire messages: dicts, or orjson Fragments of shared ones
        self.pending: list[JSON] = []  # content parts owed to the next user message
        self.answered: set[int] = set()  # id() of ToolResult parts already rendered
        self.late_system: list[str] = []  # mid-conversation system text, to fold into the first

    def flush_pending(self) -> None:
        if self.pending:
            self.out.append({"role": "user", "content": self.pending})
            self.pending = []

    def system(self, message: Message) -> None:
        text = _join_text([p for p in message.parts if isinstance(p, Text)])
        if not text:
            return
        if not self.quirks.system_anywhere:
            self.late_system.append(text)
            return
        self.flush_pending()
        self.out.append({"role": "system", "content": text})

    def assistant(self, message: Message, answers: dict[str, ToolResult]) -> None:
        self.flush_pending()
        # The message's own rendering and each result's do not depend on the rest of the
        # conversation: kept for messages a session resends (protocols/reuse.py).
        reuse = self.reuse
        wire, calls = reuse.derive(_assistant, message, self.quirks, reuse)
        if wire is None:
            return  # nothing the upstream would accept; an empty turn carries no meaning
        self.out.append(reuse.serialised(wire))
        for call_id, wire_id in calls:
            result = answers.get(call_id)
            if result is None:
                text = MISSING_RESULT
            else:
                self.answered.add(id(result))
                text, images = reuse.derive(_result, result, self.quirks)
                if images:
                    self.pending.extend(images)
            self.out.append({"role": "tool", "tool_call_id": wire_id, "content": text})

    def user(self, message: Message) -> None:
        if not self.pending:
            # Without images owed from earlier results, a user message with no results of
            # its own renders the same in every conversation: kept (protocols/reuse.py).
            plain, wire = self.reuse.derive(_plain_user, message, self.quirks)
            if plain:
                if wire is not None:
                    self.out.append(self.reuse.serialised(wire))
                return
        content = list(self.pending)
        self.pending = []
        self.user_parts(message, content)

    def user_parts(self, message: Message, content: list[JSON]) -> None:
        """Append `message` as a user message whose content starts with `content`."""
        wire = _user_message(message, content, self.answered, self.quirks)
        if wire is not None:
            self.out.append(wire)


def _user_message(
    message: Message, content: list[JSON], answered: set[int], quirks: Quirks
) -> JSON | None:
    """`message` as a user message whose content starts with `content` (None if it says
    nothing); `answered`: id() of the tool results already rendered as tool messages."""
    for part in message.parts:
        if isinstance(part, ToolResult):
            if id(part) not in answered:
                content.append(_text_part(_orphan_result_text(part)))
        elif isinstance(part, Text):
            if part.text:
                content.append(_text_part(part.text))
        elif isinstance(part, Image):
            content.append(_image(part, quirks))
        elif isinstance(part, Document):
            content.append(_document(part, quirks))
    return {"role": "user", "content": _compact(content)} if content else None


def _document(doc: Document, quirks: Quirks) -> JSON:
    if doc.text is None and doc.data and quirks.documents:
        media_type = doc.media_type or "application/pdf"
        return {
            "type": "file",
            "file": {
                "filename": doc.filename or doc.title or "document.pdf",
                "file_data": f"data:{media_type};base64,{doc.data}",
            },
        }
    return _text_part(_document_text(doc))


def _system_message(system: tuple[Text, ...]) -> JSON | None:
    text = _join_text(system)
    return {"role": "system", "content": text} if text else None


def _plain_user(message: Message, quirks: Quirks) -> tuple[bool, JSON | None]:
    """(True, the wire message or None if it says nothing) for a user message without tool
    results, rendered on its own (no images owed to it); (False, None) for one with
    results, which depend on the conversation."""
    texts: list[str] = []
    only_text = True
    for part in message.parts:
        if isinstance(part, Text):
            if part.text:
                texts.append(part.text)
        elif isinstance(part, ToolResult):
            return False, None
        else:
            only_text = False
    if only_text:
        # Text only (a user's prompt): the texts joined, as `_compact` joins them, without
        # a part dict for each.
        text = "\n\n".join(texts)
        return True, ({"role": "user", "content": text} if text else None)
    return True, _user_message(message, [], set(), quirks)


def _assistant(message: Message, quirks: Quirks, reuse: Reuse,
               ) -> tuple[JSON | None, list[tuple[str, str]]]:
    """An assistant message's wire message (None when it says nothing) and its calls as
    (call id, wire call id), the order their results must follow in."""
    # One pass over the parts and each call written in place: in a conversation nothing of
    # which was seen before, every assistant turn comes here, and a function call or a
    # comprehension costs about what writing one call does.
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in message.parts:
        if isinstance(part, Text):
            if part.text:
                texts.append(part.text)
        elif isinstance(part, ToolCall):
            calls.append(part)
    if not texts and not calls:
        return None, []
    wire: JSON = {"role": "assistant", "content": "\n\n".join(texts) or None}
    ids: list[tuple[str, str]] = []
    if calls:
        memo, tool_calls = reuse.memo, []
        for call in calls:
            wire_id = wire_call_id(call.id)
            ids.append((call.id, wire_id))
            tool_calls.append({"id": wire_id, "type": "function", "function": {
                # the name through the table's memo: a few names, called again and again
                "name": memo(wire_name, call.name),
                "arguments": dump_arguments(call.arguments)}})
        wire["tool_calls"] = tool_calls
    if quirks.echo_reasoning:
        _echo_reasoning(wire, message, quirks, bool(calls))
    return wire, ids


def _result(result: ToolResult, quirks: Quirks) -> tuple[str, list[JSON]]:
    """A tool result as the text of its `tool` message, and the images that must follow in
    the next user message (most upstreams take none in a tool message)."""
    texts: list[str] = []  # none empty
    images: list[JSON] = []
    for item in result.content:
        if isinstance(item, Text):
            if item.text:
                texts.append(item.text)
        elif isinstance(item, Document):
            texts.append(_document_text(item))
        elif quirks.images:
            images.append(_image(item, quirks))
        else:
            texts.append(_IMAGE_PLACEHOLDER)
    text = "\n".join(texts)
    if images:
        note = f"[{len(images)} image(s) from this result follow in the next user message]"
        text = f"{text}\n{note}" if text else note
    if result.is_error:
        text = f"Error: {text}" if text else "Error"
    return text or _EMPTY_RESULT, images


def _image(image: Image, quirks: Quirks) -> JSON:
    if not quirks.images:
        return _text_part(_IMAGE_PLACEHOLDER)
    url = image.url or f"data:{image.media_type or 'image/png'};base64,{image.data or ''}"
    body: JSON = {"url": url}
    if image.detail:
        body["detail"] = image.detail
    return {"type": "image_url", "image_url": body}


def _echo_reasoning(wire: JSON, message: Message, quirks: Quirks, has_calls: bool) -> None:
    """DeepSeek-style upstreams want their reasoning back; on tool-call turns they reject the
    turn without the field, so it is sent (empty) even when the history has no reasoning."""
    text = "".join(p.text for p in message.parts if isinstance(p, Reasoning) and p.text)
    if text or has_calls:
        wire[quirks.reasoning_field] = text


def _document_text(doc: Document) -> str:
    header = f"Document: {doc.title}" if doc.title else "Document"
    if doc.text is not None:
        body = doc.text
    elif doc.url:
        body = f"(available at {doc.url}; not attached: this model does not read documents)"
    else:
        body = f"(a {doc.media_type or 'binary'} file, not attached: this model cannot read it)"
    if doc.context:
        header = f"{header} ({doc.context})"
    return f"{header}\n{body}"


def _orphan_result_text(result: ToolResult) -> str:
    texts = [c.text for c in result.content if isinstance(c, Text)]
    texts += [_document_text(c) for c in result.content if isinstance(c, Document)]
    prefix = "Error result" if result.is_error else "Result"
    return f"[{prefix} of tool call {result.call_id}]\n" + "\n".join(texts)


def _text_part(text: str) -> JSON:
    return {"type": "text", "text": text}


def _compact(content: list[JSON]) -> Any:
    """Text-only content as one string: every upstream accepts that, not all accept arrays."""
    if all(part["type"] == "text" for part in content):
        return "\n\n".join(part["text"] for part in content)
    return content


def _join_text(parts: Sequence[Text]) -> str:
    return "\n\n".join([p.text for p in parts if p.text])
