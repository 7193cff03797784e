"""A canonical request as the CLI's input: one stream-json `user` line.

In a session the CLI keeps the history itself, so only the new turn goes in: the user
messages after the last assistant message. A one-off request (no session) sends its whole
history in that one message: the earlier turns as a transcript, then the last user turn's
own content. The client's system prompt goes to the CLI as `--append-system-prompt` (the
CLI's own prompt, which its tools need, stays first). Images reach the CLI as image blocks.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import GatewayError, invalid
from babelgate.canonical.model import (
    Document,
    Image,
    Message,
    Part,
    Reasoning,
    Request,
    Text,
    ToolCall,
    ToolResult,
)

JSON = dict[str, Any]

TOOLS_LIMIT = (
    "this model is served by the local Claude Code CLI, which runs only its own tools: "
    "a request that defines client tools cannot go to it (route the model to a provider "
    "that takes tools, or add one as a fallback target)"
)


def tools_refused() -> GatewayError:
    return invalid(TOOLS_LIMIT, "tools")


def user_line(blocks: list[JSON]) -> JSON:
    """The stream-json line that gives the CLI one user turn."""
    return {"type": "user", "message": {"role": "user", "content": blocks}}


def new_turn(request: Request) -> list[JSON]:
    """The content of the user messages after the last assistant message."""
    blocks: list[JSON] = []
    for message in _trailing_user(request.messages):
        blocks += _blocks(message.parts)
    if not blocks:
        raise invalid("the conversation must end with a user message that has content",
                      "messages")
    return blocks


def whole_conversation(request: Request) -> list[JSON]:
    """A one-off request's history and new turn in one user message."""
    turn = _trailing_user(request.messages)
    earlier = request.messages[: len(request.messages) - len(turn)]
    transcript: list[str] = []
    images: list[JSON] = []
    for message in earlier:
        if message.role == "system":
            continue  # with the system prompt (system_prompt)
        speaker = "User" if message.role == "user" else "Assistant"
        for block in _blocks(message.parts):
            if block["type"] == "text":
                transcript.append(f"{speaker}: {block['text']}")
            else:
                images.append(block)
    blocks = new_turn(request)
    if not transcript and not images:
        return blocks
    head = ("The conversation so far (continue it; answer the last user message):\n\n"
            + "\n\n".join(transcript))
    return [{"type": "text", "text": head}, *images, *blocks]


def system_prompt(request: Request) -> str | None:
    """The client's system prompt (and system messages inside the conversation)."""
    texts = [part.text for part in request.system if part.text]
    for message in request.messages:
        if message.role == "system":
            texts += [p.text for p in message.parts if isinstance(p, Text) and p.text]
    return "\n\n".join(texts) if texts else None


def _trailing_user(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    start = len(messages)
    while start > 0 and messages[start - 1].role != "assistant":
        start -= 1
    return tuple(m for m in messages[start:] if m.role == "user")


def _blocks(parts: tuple[Part, ...]) -> list[JSON]:
    blocks: list[JSON] = []
    for part in parts:
        if isinstance(part, Text):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            blocks.append(_image(part))
        elif isinstance(part, Document):
            blocks.append(_document(part))
        elif isinstance(part, ToolResult):
            text = "".join(p.text for p in part.content if isinstance(p, Text))
            blocks.append({"type": "text", "text": f"[tool result] {text}"})
        elif isinstance(part, ToolCall):
            blocks.append({"type": "text", "text": f"[tool call {part.name}] {part.arguments}"})
        elif isinstance(part, Reasoning):
            continue  # the CLI's upstream would refuse a signature it did not issue
    return blocks


def _image(image: Image) -> JSON:
    if image.data is not None:
        return {"type": "image", "source": {"type": "base64",
                                            "media_type": image.media_type or "image/png",
                                            "data": image.data}}
    return {"type": "image", "source": {"type": "url", "url": image.url or ""}}


def _document(document: Document) -> JSON:
    if document.text is not None:
        return {"type": "text", "text": document.text}
    if document.data is not None:
        return {"type": "document", "source": {"type": "base64",
                                               "media_type": document.media_type
                                               or "application/pdf",
                                               "data": document.data}}
    return {"type": "document", "source": {"type": "url", "url": document.url or ""}}
