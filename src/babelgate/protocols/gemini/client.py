"""Client-facing Gemini: a Gemini-SDK request body -> canonical Request, and a canonical
Response -> GenerateContentResponse.

Rules:
- Keys are accepted in lowerCamelCase and snake_case alike (the API accepts both).
- The model name comes from the URL: `parse_request` leaves `model` empty for the server.
- A functionCall without an id gets `call_<n>` (its position in the conversation); a
  functionResponse is matched to its call by id, else by name among the previous model
  turn's unanswered calls, in order.
- A `thoughtSignature` that holds one of our envelopes (canonical/carry.py) restores the
  foreign reasoning it carried (an Anthropic thinking signature, say), joined again with the
  thought pieces a stream showed it as; a real one is Gemini's.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from msgspec.structs import replace

from babelgate.canonical import (
    Document,
    Effort,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    Role,
    StopReason,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
    invalid,
)
from babelgate.canonical.carry import unpack

from ..reuse import Reuse, unshared
from .parts import (
    BARE_THOUGHT,
    ORIGIN,
    SIGNATURE_KEY,
    render_model_parts,
    restored_turn,
)
from .parts import carried as carried_envelope
from .schema import to_json_schema

JSON = dict[str, Any]
ChoiceMode = Literal["auto", "none", "required", "tool"]

_CAMEL_KEYS = (
    "systemInstruction",
    "functionDeclarations",
    "parametersJsonSchema",
    "toolConfig",
    "functionCallingConfig",
    "allowedFunctionNames",
    "generationConfig",
    "maxOutputTokens",
    "topP",
    "topK",
    "stopSequences",
    "candidateCount",
    "thinkingConfig",
    "includeThoughts",
    "thinkingBudget",
    "thinkingLevel",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "generateContentRequest",
    "inlineData",
    "fileData",
    "mimeType",
    "fileUri",
    "functionCall",
    "functionResponse",
    "thoughtSignature",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
)
SNAKE = {key: re.sub(r"([A-Z])", r"_\1", key).lower() for key in _CAMEL_KEYS}
HOSTED_TOOLS = {
    "googleSearch": "web_search",
    "googleSearchRetrieval": "web_search",
    "codeExecution": "code_execution",
    "urlContext": "url_context",
}
CHOICE_MODES: dict[str, ChoiceMode] = {
    "AUTO": "auto",
    "ANY": "required",
    "NONE": "none",
    "VALIDATED": "auto",
}
LEVEL_EFFORT: dict[str, Effort] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
}
FINISH_BY_STOP: dict[StopReason, str] = {
    "end_turn": "STOP",
    "tool_use": "STOP",
    "stop_sequence": "STOP",
    "pause_turn": "STOP",
    "max_tokens": "MAX_TOKENS",
    "context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
    "error": "OTHER",
}


def get(obj: Any, camel: str) -> Any:
    """`obj[camel]`, or its snake_case spelling; None when absent or obj is not a dict."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(SNAKE.get(camel, camel)) if value is None else value


# ---------------------------------------------------------------- request


def parse_count_tokens_request(body: JSON, reuse: Reuse | None = None) -> Request:
    """A `:countTokens` body: `contents` alone, or a whole `generateContentRequest`."""
    inner = get(body, "generateContentRequest")
    return parse_request(inner if isinstance(inner, dict) else body, reuse)


def parse_request(body: JSON, reuse: Reuse | None = None) -> Request:
    # Gemini CLI resends its ~30 KB system instruction and its function declarations on every
    # turn: parsed once per distinct piece (protocols/reuse.py). The contents are parsed
    # whole each time, since a functionResponse takes its call's id from an earlier entry.
    table = unshared(reuse)
    contents = body.get("contents")
    if not isinstance(contents, list):
        raise invalid("`contents` must be a list of Content objects", "contents")
    config = get(body, "generationConfig")
    if not isinstance(config, dict):
        config = {}
    stops = get(config, "stopSequences")
    return Request(
        model="",
        messages=_Conversation().messages(contents),
        system=table.derive(_system, get(body, "systemInstruction")),
        tools=table.derive(_tools, body.get("tools")),
        tool_choice=_tool_choice(get(body, "toolConfig")),
        max_tokens=get(config, "maxOutputTokens"),
        temperature=config.get("temperature"),
        top_p=get(config, "topP"),
        top_k=get(config, "topK"),
        stop=tuple([str(s) for s in stops]) if isinstance(stops, list) else (),
        n=_candidate_count(get(config, "candidateCount")),
        reasoning=_reasoning(get(config, "thinkingConfig")),
        response_format=_response_format(config),
    )


def _candidate_count(value: object) -> int | None:
    """How many answers the client wants: an integer (translating compares it with 1)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid("generationConfig.candidateCount: must be an integer",
                      "generationConfig.candidateCount")
    return value


class _Conversation:
    __slots__ = ("_count", "_pending", "_turn_reasoning")

    def __init__(self) -> None:
        self._count = 0
        self._pending: list[ToolCall] = []  # calls of the last model turn not yet answered
        # The reasoning a model turn's function call carried back (parts.turn_reasoning).
        self._turn_reasoning: list[Reasoning] | None = None

    def messages(self, contents: list[Any]) -> tuple[Message, ...]:
        out: list[Message] = []
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                raise invalid(f"contents[{i}] must be an object", f"contents[{i}]")
            role: Role = "assistant" if content.get("role") == "model" else "user"
            parts = content.get("parts")
            if not isinstance(parts, list):
                raise invalid(f"contents[{i}].parts must be a list", f"contents[{i}].parts")
            if role == "assistant":
                self._pending = []
                self._turn_reasoning = None
            message_parts: list[Part] = []
            for raw in parts:
                if isinstance(raw, dict):
                    message_parts.extend(self._part(raw))
            if role == "assistant":
                message_parts = self._model_turn(message_parts)
            if message_parts:
                out.append(Message(role=role, parts=tuple(message_parts)))
        return tuple(out)

    def _part(self, raw: JSON) -> list[Part]:
        call = get(raw, "functionCall")
        if isinstance(call, dict):
            return [self._call(call, get(raw, "thoughtSignature"))]
        response = get(raw, "functionResponse")
        if isinstance(response, dict):
            return [self._result(response)]
        media = get(raw, "inlineData") or get(raw, "fileData")
        if isinstance(media, dict):
            return [_media(media)]
        return _text_part(raw)

    def _model_turn(self, parts: list[Part]) -> list[Part]:
        carried = self._turn_reasoning
        if carried is None:
            return _join_streamed_thoughts(parts)
        # The turn came from another provider: its thought parts, if the client kept them,
        # only showed what the call carried in full.
        return [*carried, *(p for p in parts if not isinstance(p, Reasoning))]

    def _call(self, call: JSON, signature: Any) -> ToolCall:
        self._count += 1
        call_id = call.get("id") or f"call_{self._count}"
        args = call.get("args")
        if isinstance(signature, str) and self._turn_reasoning is None:
            restored = restored_turn(signature)
            if restored is not None:
                self._turn_reasoning = restored
                signature = None
        metadata = {SIGNATURE_KEY: signature} if isinstance(signature, str) and signature else None
        parsed = ToolCall(
            id=str(call_id),
            name=str(call.get("name") or ""),
            arguments=args if isinstance(args, dict) else {},
            provider_metadata=metadata,
        )
        self._pending.append(parsed)
        return parsed

    def _result(self, response: JSON) -> ToolResult:
        name = str(response.get("name") or "")
        call = self._match(response.get("id"), name)
        payload = response.get("response")
        is_error = isinstance(payload, dict) and "error" in payload and "output" not in payload
        content: list[Text | Image | Document] = [Text(text=_response_text(payload))]
        for raw in response.get("parts") or []:
            media = get(raw, "inlineData") or get(raw, "fileData")
            if isinstance(media, dict):
                content.append(_media(media))
        call_id = call.id if call is not None else str(response.get("id") or f"call_{name}")
        return ToolResult(call_id=call_id, content=tuple(content), is_error=is_error, name=name)

    def _match(self, call_id: Any, name: str) -> ToolCall | None:
        for i, call in enumerate(self._pending):
            if (call_id and call.id == call_id) or (not call_id and call.name == name):
                return self._pending.pop(i)
        return None


def _join_streamed_thoughts(parts: list[Part]) -> list[Part]:
    """A streamed foreign thought reached the client as its text in pieces (one thought part
    each) and then an empty thought part carrying the packed signature (stream_encode.py); a
    client that keeps them sends them back so. The signature is bound to the whole text: the
    pieces just before it become that one signed Reasoning again."""
    out: list[Part] = []
    for part in parts:
        joined = part
        if (
            isinstance(part, Reasoning)
            and part.origin != ORIGIN
            and not part.text
            and (part.signature or part.redacted)
        ):
            start = len(out)
            while start and _unsigned_thought(out[start - 1]):
                start -= 1
            if start < len(out):
                text = "".join(p.text for p in out[start:] if isinstance(p, Reasoning))
                del out[start:]
                joined = replace(part, text=text)
        out.append(joined)
    return out


def _unsigned_thought(part: Part) -> bool:
    return (isinstance(part, Reasoning) and part.origin == ORIGIN and part.signature is None
            and bool(part.text))


def _text_part(raw: JSON) -> list[Part]:
    text = raw.get("text")
    text = text if isinstance(text, str) else ""
    signature = get(raw, "thoughtSignature")
    signature = signature if isinstance(signature, str) and signature else None
    carried = unpack(carried_envelope(signature)) if signature is not None else None
    if carried is not None:  # foreign reasoning we showed the client as thought text
        origin, payload = carried
        signed, redacted = payload.get("s"), payload.get("r")
        return [Reasoning(text=text, signature=signed, redacted=redacted, origin=origin)]
    if raw.get("thought"):
        bare = dict(BARE_THOUGHT) if not text and signature else None
        return [Reasoning(text=text, signature=signature, origin=ORIGIN, provider_metadata=bare)]
    out: list[Part] = [Text(text=text)] if text else []
    if signature is not None:
        out.append(Reasoning(text="", signature=signature, origin=ORIGIN))
    return out


def _media(media: JSON) -> Image | Document:
    mime, data, uri = get(media, "mimeType"), media.get("data"), get(media, "fileUri")
    for name, value in (("mimeType", mime), ("data", data), ("fileUri", uri)):
        if value is not None and not isinstance(value, str):  # a renderer reads them as text
            raise invalid(f"the `{name}` of a part's inlineData or fileData must be a string",
                          "contents")
    if isinstance(mime, str) and mime.startswith("image/"):
        return Image(media_type=mime, data=data, url=uri)
    return Document(media_type=mime, data=data, url=uri)


def _response_text(payload: Any) -> str:
    if isinstance(payload, dict) and len(payload) == 1:
        (value,) = payload.values()
        if isinstance(value, str):
            return value
    return orjson.dumps(payload).decode() if payload is not None else ""


def _system(value: Any) -> tuple[Text, ...]:
    if isinstance(value, str):
        return (Text(text=value),) if value else ()
    parts = value.get("parts") if isinstance(value, dict) else None
    texts = []
    for part in parts or []:
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str) and text:
            texts.append(Text(text=text))
    return tuple(texts)


def _tools(value: Any) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for entry in value or []:
        if not isinstance(entry, dict):
            continue
        for decl in get(entry, "functionDeclarations") or []:
            if isinstance(decl, dict):
                tools.append(_function_tool(decl))
        for key, hosted_type in HOSTED_TOOLS.items():
            config = get(entry, key)
            if config is not None:
                tools.append(
                    Tool(
                        name=hosted_type,
                        kind="hosted",
                        hosted_type=hosted_type,
                        config=config if isinstance(config, dict) else None,
                    )
                )
    return tuple(tools)


def _function_tool(decl: JSON) -> Tool:
    schema = get(decl, "parametersJsonSchema")
    if not isinstance(schema, dict):
        raw = decl.get("parameters")
        schema = to_json_schema(raw) if isinstance(raw, dict) else None
    return Tool(
        name=str(decl.get("name") or ""),
        description=decl.get("description"),
        parameters=schema or {"type": "object", "properties": {}},
    )


def _tool_choice(value: Any) -> ToolChoice | None:
    config = get(value, "functionCallingConfig")
    if not isinstance(config, dict):
        return None
    mode = CHOICE_MODES.get(str(config.get("mode") or "AUTO").upper(), "auto")
    names = get(config, "allowedFunctionNames")
    if mode == "required" and isinstance(names, list) and len(names) == 1:
        return ToolChoice(mode="tool", name=str(names[0]))
    return ToolChoice(mode=mode)


def _reasoning(config: Any) -> ReasoningConfig | None:
    if not isinstance(config, dict):
        return None
    budget = get(config, "thinkingBudget")
    level = get(config, "thinkingLevel")
    enabled: bool | None = None
    adaptive = False
    budget_tokens = effort = None
    if isinstance(budget, int):
        if budget == 0:
            enabled = False
        elif budget < 0:
            enabled, adaptive = True, True
        else:
            enabled, budget_tokens = True, budget
    if isinstance(level, str) and level.lower() in LEVEL_EFFORT:
        effort = LEVEL_EFFORT[level.lower()]
        enabled = True
    if enabled is None and get(config, "includeThoughts"):
        enabled = True
    return ReasoningConfig(
        enabled=enabled, budget_tokens=budget_tokens, effort=effort, adaptive=adaptive
    )


def _response_format(config: JSON) -> JSON | None:
    if get(config, "responseMimeType") != "application/json":
        return None
    # Gemini CLI sends Schema-style `OBJECT` types even in responseJsonSchema: both are read
    # through to_json_schema, which leaves standard JSON Schema as it is.
    raw = get(config, "responseJsonSchema")
    if not isinstance(raw, dict):
        raw = get(config, "responseSchema")
    schema = to_json_schema(raw) if isinstance(raw, dict) else None
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# ---------------------------------------------------------------- response


def render_response(response: Response, request: Request) -> JSON:
    parts = response.parts
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": render_model_parts(parts, upstream=False)},
                "finishReason": finish_reason(response.stop_reason),
                "index": 0,
            }
        ],
        "usageMetadata": usage_metadata(response.usage),
        "modelVersion": response.model or request.model,
        "responseId": response.id,
    }


def finish_reason(stop: StopReason | None) -> str:
    return FINISH_BY_STOP.get(stop or "end_turn", "STOP")


def usage_metadata(usage: Usage) -> JSON:
    prompt = usage.prompt_tokens
    meta: JSON = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": prompt + usage.output_tokens,
    }
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cache_read_tokens:
        meta["cachedContentTokenCount"] = usage.cache_read_tokens
    return meta
