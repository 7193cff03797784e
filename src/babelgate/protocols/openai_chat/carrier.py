"""What a Chat Completions client carries back for us in tool call ids.

Chat has no field for a thinking signature, but every client echoes `tool_calls[].id`
unchanged, on the assistant message and on each tool message's `tool_call_id`. So on a turn
with tool calls:
- the FIRST call's id (`canonical.carry.attach_to_id`) carries the turn's reasoning parts that
  an upstream needs back (those with a signature, redacted data or provider_metadata: an
  Anthropic thinking signature, a Gemini thought signature on a text part, Responses
  encrypted reasoning);
- each call's own provider_metadata (Gemini's thought signature on a functionCall) rides on
  that call's own id.
parse_request splits the ids back (`restore_calls`, `restore_reasoning`).

Size: the reasoning text is already in `reasoning_content`, which we emit and most clients
echo on the assistant message; repeating it would double the id (a thinking text is often
several KB). So when every reasoning part of the turn is carried, an entry holds only its
text's length, and the texts are cut back out of the echoed `reasoning_content`; only when
the turn also has reasoning we do not carry does an entry hold its own text. What is left is
dominated by the signature: Anthropic's are a few hundred to a few thousand characters, so a
first id is typically 0.5-4 KB (the payload is JSON in base64, about 4/3 of the signature).
A client that does not echo `reasoning_content` loses the texts: those parts are dropped
(an Anthropic upstream then runs that turn without thinking, as before), while a Gemini
call's signature, which needs no text, still comes back.

Payload keys (short, since the client sends the id back on every later turn): `m` the call's
provider_metadata, `r` the reasoning entries; in an entry `o` origin, `s` signature, `d`
redacted data, `md` provider_metadata, `u` summaries, `n` text length, `t` text.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import JSON, Reasoning, ToolCall
from babelgate.canonical.carry import attach_to_id, split_id

# ------------------------------------------------------------------ to the client


def carried(part: Reasoning) -> bool:
    """Reasoning an upstream needs back, beyond its text (which reasoning_content carries)."""
    return bool(part.signature or part.redacted or part.provider_metadata)


def reasoning_entries(reasoning: list[Reasoning]) -> list[JSON]:
    """The `r` entries for a turn whose reasoning parts are `reasoning`, in order."""
    by_length = all(carried(p) for p in reasoning)
    entries: list[JSON] = []
    for part in reasoning:
        if carried(part):
            entries.append(_entry(part, by_length))
    return entries


def _entry(part: Reasoning, by_length: bool) -> JSON:
    entry: JSON = {"o": part.origin}
    if part.signature:
        entry["s"] = part.signature
    if part.redacted:
        entry["d"] = part.redacted
    if part.provider_metadata:
        entry["md"] = part.provider_metadata
    if part.summary is not None:
        entry["u"] = list(part.summary)
    if by_length:
        entry["n"] = len(part.text)
    elif part.text:
        entry["t"] = part.text
    return entry


def client_call_id(call: ToolCall, entries: list[JSON] | None = None) -> str:
    """The id a client sees for `call`; `entries` only for the turn's first call."""
    payload: JSON = {}
    if call.provider_metadata:
        payload["m"] = call.provider_metadata
    if entries:
        payload["r"] = entries
    return attach_to_id(call.id, payload)


def client_call_ids(calls: list[ToolCall], reasoning: list[Reasoning]) -> list[str]:
    """The ids of a whole turn's calls, the first one carrying the turn's reasoning."""
    entries = reasoning_entries(reasoning)
    return [client_call_id(c, entries if i == 0 else None) for i, c in enumerate(calls)]


# ------------------------------------------------------------------ from the client


def open_call_id(call_id: str) -> tuple[str, JSON | None, list[Any]]:
    """A client's call id -> (our original id, the call's provider_metadata, reasoning
    entries). Ids we did not make come back unchanged with nothing attached."""
    head, payload = split_id(call_id)
    if payload is None:
        return call_id, None, []
    metadata = payload.get("m")
    entries = payload.get("r")
    return (
        head,
        metadata if isinstance(metadata, dict) else None,
        entries if isinstance(entries, list) else [],
    )


def restore_reasoning(entries: list[Any], echoed: str) -> tuple[list[Reasoning], bool]:
    """(the Reasoning parts the entries describe, whether they account for `echoed`, the
    client's reasoning_content). A part whose text cannot be recovered (the client did not
    echo reasoning_content, or changed it) is dropped unless it had no text: an Anthropic
    signature is only valid with its exact text."""
    valid = [e for e in entries if isinstance(e, dict)]
    with_text = any(isinstance(e.get("t"), str) for e in valid)
    lengths = [e.get("n") for e in valid if not isinstance(e.get("t"), str)]
    sliceable = all(isinstance(n, int) and n >= 0 for n in lengths) and sum(
        n for n in lengths if isinstance(n, int)
    ) == len(echoed)
    out: list[Reasoning] = []
    offset = 0
    for entry in valid:
        length = entry.get("n")
        if isinstance(entry.get("t"), str):
            text = str(entry["t"])
        elif sliceable and isinstance(length, int):
            text, offset = echoed[offset : offset + length], offset + length
        elif not length:
            text = ""
        else:
            continue  # its text is lost
        out.append(_reasoning(entry, text))
    return out, bool(valid) and (sliceable or with_text)


def _reasoning(entry: JSON, text: str) -> Reasoning:
    summary = entry.get("u")
    metadata = entry.get("md")
    return Reasoning(
        text=text,
        signature=_str_or_none(entry.get("s")),
        origin=_str_or_none(entry.get("o")),
        redacted=_str_or_none(entry.get("d")),
        summary=tuple([str(s) for s in summary]) if isinstance(summary, list) else None,
        provider_metadata=metadata if isinstance(metadata, dict) else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
