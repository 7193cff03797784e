"""Canonical parts -> Gemini `Part` dicts, shared by the upstream request renderer and the
client-facing response renderer.

Rules kept here:
- A Gemini thought signature is a part-level sibling (`{"functionCall": ..., "thoughtSignature":
  ...}`), never inside the call. A ToolCall keeps it in `provider_metadata["thought_signature"]`.
- A signature Gemini put on a plain text part is held, in canonical form, by an empty-text
  `Reasoning(origin="gemini")` placed right AFTER that text (see response.py); rendering puts
  it back on the text part just before it.
- Upstream, reasoning from other providers is dropped (Gemini must not see foreign thoughts).
  Towards a Gemini-SDK client, foreign reasoning is shown as thought text, and its signature is
  packed (canonical/carry.py, then base64: `foreign_signature`) into `thoughtSignature`,
  which the client echoes back.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import Any

from babelgate.canonical import Document, Image, Part, Reasoning, Text, ToolCall
from babelgate.canonical.carry import pack, unpack

from .names import gemini_name

JSON = dict[str, Any]

ORIGIN = "gemini"
SIGNATURE_KEY = "thought_signature"  # ToolCall.provider_metadata key
GEMINI_ID_KEY = "gemini_id"  # ToolCall.provider_metadata key: the id Gemini itself gave
# Our envelopes in a `thoughtSignature` are base64 (the Gemini SDKs hold the field as bytes,
# base64 in JSON, and refuse anything else), of these marker bytes and the envelope: six
# bytes, so the base64 text always begins with the same eight characters, in both alphabets.
_MARK = b"bgsig1"
SIGNATURE_PREFIX = base64.b64encode(_MARK).decode()
TURN_ORIGIN = "turn"  # the envelope on a function call that holds its turn's reasoning
# Reasoning.provider_metadata of an empty-text Reasoning that stands for a thought part with
# only a signature (rather than for a signature Gemini put on a text part).
BARE_THOUGHT: JSON = {"part": "thought"}


def media_part(part: Image | Document) -> JSON | None:
    """An image or document -> inlineData (base64) or fileData (a URL); a text document ->
    text. None when there is nothing to send."""
    if isinstance(part, Document) and part.text is not None:
        title = f"{part.title}\n\n" if part.title else ""
        return {"text": title + part.text} if part.text or title else None
    default = "application/pdf" if isinstance(part, Document) else "image/png"
    if part.data:
        return {"inlineData": {"mimeType": part.media_type or default, "data": part.data}}
    if not part.url:
        return None
    if part.url.startswith("data:"):
        head, _, data = part.url[5:].partition(",")
        mime = head.split(";", 1)[0] or part.media_type or default
        return {"inlineData": {"mimeType": mime, "data": data}}
    mime = part.media_type or mimetypes.guess_type(part.url)[0] or default
    return {"fileData": {"mimeType": mime, "fileUri": part.url}}


def render_model_parts(
    parts: tuple[Part, ...], *, upstream: bool, foreign: list[Reasoning] | None = None
) -> list[JSON]:
    """An assistant turn's parts -> Gemini model parts. `upstream=True` renders for Gemini
    itself (tool names made valid, foreign reasoning dropped, `functionCall.id` only when
    Gemini gave one); `False` renders for a Gemini-SDK client, the turn's foreign reasoning
    also carried by its first function call (`turn_reasoning`; `foreign`: that reasoning
    when it is not among `parts`, as in a stream)."""
    out: list[JSON] = []
    carrier: str | None = None
    if not upstream:
        if foreign is None:
            foreign = [p for p in parts if isinstance(p, Reasoning) and p.origin != ORIGIN]
        carrier = turn_reasoning(foreign)
    for part in parts:
        if isinstance(part, Text):
            if part.text:
                out.append({"text": part.text})
        elif isinstance(part, Reasoning):
            _reasoning(part, out, upstream)
        elif isinstance(part, ToolCall):
            out.append(_function_call(part, upstream, carrier))
            carrier = None
        elif isinstance(part, Image | Document):
            media = media_part(part)
            if media is not None:
                out.append(media)
    return out


def _reasoning(part: Reasoning, out: list[JSON], upstream: bool) -> None:
    if part.origin == ORIGIN:
        if part.text:
            thought: JSON = {"text": part.text, "thought": True}
            if part.signature:
                thought["thoughtSignature"] = part.signature
            out.append(thought)
        elif part.signature and part.provider_metadata == BARE_THOUGHT:
            out.append({"text": "", "thought": True, "thoughtSignature": part.signature})
        elif part.signature:
            _attach_text_signature(part.signature, out)
        return
    if upstream:
        return  # foreign thoughts are not Gemini's to read
    foreign: JSON = {"text": part.text, "thought": True}
    packed = foreign_signature(part)
    if packed is not None:
        foreign["thoughtSignature"] = packed
    if part.text or packed is not None:
        out.append(foreign)


def foreign_signature(part: Reasoning) -> str | None:
    """Another provider's reasoning signature (or redacted data) packed for a Gemini client,
    which echoes `thoughtSignature` back; client.py unpacks it (`carried`)."""
    if not (part.signature or part.redacted):
        return None
    return _wrapped(pack(part.origin or "unknown", {"s": part.signature, "r": part.redacted}))


def _wrapped(envelope: str) -> str:
    return base64.b64encode(_MARK + envelope.encode()).decode()


def carried(signature: str) -> str | None:
    """The envelope (canonical/carry.py) inside a thoughtSignature we gave a client, or None
    for a real Gemini signature. Either base64 alphabet is read: the SDKs decode the field to
    bytes and may encode it again URL-safe."""
    if not signature.startswith(SIGNATURE_PREFIX):
        return None
    text = signature.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None
    return raw[len(_MARK):].decode("utf-8", "replace") if raw.startswith(_MARK) else None



def _attach_text_signature(signature: str, out: list[JSON]) -> None:
    """Put a text part's signature back on that text part (the one just rendered)."""
    last = out[-1] if out else None
    if (
        last is not None
        and "text" in last
        and not last.get("thought")
        and "thoughtSignature" not in last
    ):
        last["thoughtSignature"] = signature
        return
    out.append({"text": "", "thoughtSignature": signature})


def turn_reasoning(foreign: list[Reasoning]) -> str | None:
    """A turn's reasoning from another provider, packed for its first function call's
    `thoughtSignature`. Gemini CLI keeps no thought parts in its history, but it does keep a
    call's signature (as Gemini 3 wants): what DeepSeek needs echoed (its reasoning text) and
    what Anthropic needs to go on thinking in a tool loop (the signed thinking) comes back
    this way. client.py restores it (`restored_turn`)."""
    kept = [{"o": p.origin, "t": p.text, "s": p.signature, "r": p.redacted}
            for p in foreign if p.text or p.signature or p.redacted]
    if not kept:
        return None
    return _wrapped(pack(TURN_ORIGIN, {"parts": kept}))


def restored_turn(signature: str) -> list[Reasoning] | None:
    """The reasoning `turn_reasoning` packed, or None when `signature` is something else."""
    envelope = unpack(carried(signature))
    if envelope is None or envelope[0] != TURN_ORIGIN:
        return None
    out = []
    for item in envelope[1].get("parts") or []:
        if isinstance(item, dict):
            out.append(Reasoning(text=str(item.get("t") or ""), signature=item.get("s"),
                                 redacted=item.get("r"), origin=str(item.get("o") or "")))
    return out


def _function_call(call: ToolCall, upstream: bool, carrier: str | None = None) -> JSON:
    meta = call.provider_metadata or {}
    fc: JSON = {"name": gemini_name(call.name) if upstream else call.name, "args": call.arguments}
    if not upstream:
        fc["id"] = call.id
    elif isinstance(meta.get(GEMINI_ID_KEY), str):
        fc["id"] = meta[GEMINI_ID_KEY]
    rendered: JSON = {"functionCall": fc}
    signature = meta.get(SIGNATURE_KEY)
    if isinstance(signature, str) and signature:
        rendered["thoughtSignature"] = signature
    elif carrier is not None:
        rendered["thoughtSignature"] = carrier
    return rendered
