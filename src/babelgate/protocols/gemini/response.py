"""Gemini GenerateContentResponse -> canonical Response (upstream side), and the pieces the
stream decoder shares: finish reasons, usage, function calls.

Choices this module makes (and the stream decoder follows):
- `thought: true` text -> Reasoning(origin="gemini") with its `thoughtSignature`. A thought
  part with only a signature signs the unsigned thought just before it; with no such thought
  it becomes an empty Reasoning marked `provider_metadata == BARE_THOUGHT` (parts.py).
- A `thoughtSignature` on a plain text part -> an empty-text Reasoning(origin="gemini",
  signature=...) placed right AFTER that text (in a stream the signature comes with the text's
  last chunk, so "after" is where both paths can put it). parts.py puts it back on the text.
- functionCall -> ToolCall with Gemini's id when it gave one (also kept in provider_metadata
  so the id goes back to Gemini), else a generated `call_...`; the tool name mapped back to
  the client's; the part's signature in provider_metadata["thought_signature"].
- STOP with function calls -> tool_use. MALFORMED_FUNCTION_CALL / UNEXPECTED_TOOL_CALL ->
  a retryable api_error (the model failed to produce a usable call; an empty end_turn would
  silently end the agent's task).
- promptTokenCount includes cached tokens; canonical input_tokens excludes them.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from babelgate.canonical import (
    NO_USAGE,
    GatewayError,
    Part,
    Reasoning,
    Request,
    Response,
    StopReason,
    Text,
    Tool,
    ToolCall,
    Usage,
)
from babelgate.canonical.ids import new_id, safe_call_id

from ..answer_shape import answer_list, answer_object
from .names import reverse_map
from .parts import BARE_THOUGHT, GEMINI_ID_KEY, ORIGIN, SIGNATURE_KEY

JSON = dict[str, Any]

FINISH_REASONS: dict[str, StopReason] = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
    "IMAGE_SAFETY": "refusal",
    "LANGUAGE": "refusal",
}
FAILED_CALL_REASONS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"})


def parse_response(body: JSON, request: Request) -> Response:
    names = tool_names(request.tools)
    candidates = answer_list(body, "candidates")
    candidate = candidates[0] if candidates else None
    parts: list[Part] = []
    if candidate is not None:
        for raw in answer_list(answer_object(candidate, "content"), "parts"):
            _add(parts, _parse_part(raw, names))
    has_calls = any(isinstance(p, ToolCall) for p in parts)
    reason = candidate.get("finishReason") if candidate else None
    return Response(
        id=body.get("responseId") or new_id("msg_"),
        model=body.get("modelVersion") or request.model,
        parts=tuple(parts),
        stop_reason=stop_reason(reason, has_calls, blocked=is_blocked(body)),
        usage=parse_usage(body.get("usageMetadata")),
    )


class ToolNames:
    """What the response side needs to know about the request's tools: Gemini name ->
    client name, and which tools are free-form (`custom`)."""

    __slots__ = ("back", "custom")

    def __init__(self, tools: tuple[Tool, ...]) -> None:
        self.back = reverse_map(tool.name for tool in tools)
        self.custom = frozenset(t.name for t in tools if t.kind == "custom")


def tool_names(tools: tuple[Tool, ...]) -> ToolNames:
    return ToolNames(tools)


def first_candidate(body: JSON) -> JSON | None:
    candidates = body.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def is_blocked(body: JSON) -> bool:
    """The prompt itself was blocked: no candidates, a promptFeedback.blockReason."""
    feedback = body.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def stop_reason(reason: str | None, has_calls: bool, *, blocked: bool = False) -> StopReason:
    """A Gemini finishReason -> canonical stop reason. Raises GatewayError for a failed
    function call."""
    if reason in FAILED_CALL_REASONS:
        raise GatewayError(
            "api_error",
            f"Gemini could not produce a valid function call (finishReason {reason})",
            upstream=ORIGIN,
        )
    if blocked and reason is None:
        return "refusal"
    mapped = FINISH_REASONS.get(reason or "STOP", "end_turn")
    if mapped == "end_turn" and has_calls:
        return "tool_use"
    return mapped


def parse_usage(meta: Any) -> Usage:
    if not isinstance(meta, dict):
        return NO_USAGE
    prompt = int(meta.get("promptTokenCount") or 0)
    cached = int(meta.get("cachedContentTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    candidates = int(meta.get("candidatesTokenCount") or 0)
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=candidates + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


def parse_function_call(raw: JSON, names: ToolNames) -> ToolCall:
    """A `functionCall` part (with its sibling `thoughtSignature`) -> ToolCall."""
    call = raw["functionCall"]
    metadata: JSON = {}
    gemini_id = call.get("id")
    if isinstance(gemini_id, str) and gemini_id:
        metadata[GEMINI_ID_KEY] = gemini_id
    signature = raw.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        metadata[SIGNATURE_KEY] = signature
    sent = str(call.get("name") or "")
    name = names.back.get(sent, sent)
    args = call.get("args")
    return ToolCall(
        id=safe_call_id(metadata[GEMINI_ID_KEY]) if GEMINI_ID_KEY in metadata else new_id("call_"),
        name=name,
        arguments=args if isinstance(args, dict) else {},
        kind="custom" if name in names.custom else "function",
        provider_metadata=metadata or None,
    )


def _add(parts: list[Part], new: list[Part]) -> None:
    """Append; a bare signature on an empty thought part signs the unsigned thought before
    it, as the stream decoder does (Gemini may send the signature as a part of its own)."""
    if len(new) == 1 and parts:
        part, last = new[0], parts[-1]
        if (
            isinstance(part, Reasoning)
            and isinstance(last, Reasoning)
            and part.provider_metadata == BARE_THOUGHT
            and not part.text
            and last.origin == ORIGIN
            and last.text
            and last.signature is None
        ):
            parts[-1] = replace(last, signature=part.signature)
            return
    parts.extend(new)


def _parse_part(raw: Any, names: ToolNames) -> list[Part]:
    if not isinstance(raw, dict):
        return []
    if "functionCall" in raw:
        return [parse_function_call(raw, names)]
    signature = raw.get("thoughtSignature")
    signature = signature if isinstance(signature, str) and signature else None
    text = raw.get("text")
    if raw.get("thought"):
        bare = None if text else dict(BARE_THOUGHT)
        return [
            Reasoning(text=text or "", signature=signature, origin=ORIGIN, provider_metadata=bare)
        ]
    out: list[Part] = []
    if isinstance(text, str) and text:
        out.append(Text(text=text))
    if signature is not None:
        out.append(Reasoning(text="", signature=signature, origin=ORIGIN))
    return out
