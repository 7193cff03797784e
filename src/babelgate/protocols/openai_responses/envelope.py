"""Reasoning that must survive a trip through a Responses client (Codex).

A Responses client keeps reasoning items and sends them back unchanged on the next turn,
`encrypted_content` included. That field is where reasoning from other upstreams rides:
an Anthropic thinking signature or redacted block, a Gemini thought signature, DeepSeek's
reasoning text. It is packed with `canonical.carry.pack`, so the envelope is recognisable
and a real OpenAI `encrypted_content` (origin `openai-responses`) passes through untouched.

The reasoning text is shown to the client as the item's summary. The envelope repeats the
text only when the summary is not simply that text (a part with its own `summary` list),
so the usual case does not carry long thinking twice.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import Reasoning
from babelgate.canonical.carry import pack, unpack

ORIGIN = "openai-responses"


def summary_texts(part: Reasoning) -> list[str]:
    """What the client sees of a reasoning part: its summaries, else its text."""
    if part.summary:
        return list(part.summary)
    return [part.text] if part.text else []


def encrypted_content(part: Reasoning) -> str | None:
    """The `encrypted_content` for a reasoning part: OpenAI's own, or our envelope."""
    if part.origin == ORIGIN:
        return part.redacted
    payload: dict[str, Any] = {}
    if part.signature is not None:
        payload["signature"] = part.signature
    if part.redacted is not None:
        payload["redacted"] = part.redacted
    if part.provider_metadata:
        payload["metadata"] = part.provider_metadata
    if part.summary:
        payload["text"] = part.text
    if not payload and part.origin is None:
        return None  # nothing to bring back and nobody to bring it to
    return pack(part.origin or "", payload)


def reasoning_from_client(
    summaries: list[str], encrypted: str | None, raw_text: str = ""
) -> Reasoning:
    """A client's reasoning item -> Reasoning, restoring what an envelope carried.
    `raw_text` is the item's reasoning_text content, the text when there is no summary."""
    envelope = unpack(encrypted)
    if envelope is None:
        return Reasoning(
            text="\n\n".join(summaries) if summaries else raw_text,
            origin=ORIGIN,
            redacted=encrypted,
            summary=tuple(summaries) or None,
        )
    origin, payload = envelope
    if "text" in payload:
        text, summary = str(payload["text"]), tuple(summaries) or None
    else:
        text, summary = (summaries[0] if summaries else ""), None
    metadata = payload.get("metadata")
    return Reasoning(
        text=text,
        signature=_str_or_none(payload.get("signature")),
        origin=origin or None,
        redacted=_str_or_none(payload.get("redacted")),
        summary=summary,
        provider_metadata=metadata if isinstance(metadata, dict) else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
