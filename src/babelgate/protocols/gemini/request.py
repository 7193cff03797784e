"""Canonical Request -> Gemini GenerateContentRequest body (and the `:countTokens` body).

What the body promises Gemini:
- `systemInstruction` holds `request.system` plus every system message that comes before the
  conversation starts. A system message AFTER the conversation started stays where it is, as
  a user text (Gemini has no mid-conversation system role; moving it to the top would change
  what it applies to).
- `contents` alternate user/model: consecutive same-role turns are merged. All function
  responses answering one model turn go in the one user turn right after it, in call order,
  named after their call (looked up by call id), followed by the images the results held and
  then the user's other parts.
- The history never ends on a model turn: a trailing assistant message (an Anthropic-style
  prefill) is dropped, because Gemini cannot continue a model turn and rejects such history.
- Each model turn whose function calls carry no thought signature (calls that came from
  another provider) gets Google's documented placeholder on its first call, because Gemini 3
  rejects signature-less calls in history.
- Only fields Gemini defines; tool names made valid (names.py) and schemas cleaned
  (schema.py).
- Images are dropped when `quirks.images` is false; PDFs are always sent as inlineData
  (every Gemini model reads them, so `quirks.documents` is not consulted).

What a message renders to on its own, the system text and the tool list are kept for the
messages a session resends (protocols/reuse.py) and go out pre-serialised; the body is byte for
byte what it would be without that (tests/test_reuse_gemini_out.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from babelgate.canonical import (
    Document,
    Image,
    JSONText,
    Message,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from babelgate.protocols.base import Quirks
from babelgate.protocols.reuse import Reuse

from .names import gemini_name
from .parts import GEMINI_ID_KEY, media_part, render_model_parts
from .schema import clean_schema, cleaned_parameters

JSON = dict[str, Any]

# Google's documented value for function calls whose real signature is unknown.
PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5  # Gemini rejects more
WEB_SEARCH_TYPES = frozenset({"web_search", "web_search_preview", "google_search"})
CUSTOM_PARAMETERS: JSON = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The raw input for the tool."}},
    "required": ["input"],
}
# Thinking budgets for an effort level (tokens). 24576 is the most every 2.5 model accepts
# (Flash's ceiling; Pro goes to 32768): Claude Code's 31999 would be out of range on Flash.
MAX_THINKING_BUDGET = 24576
EFFORT_BUDGET = {
    "minimal": 512,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
DYNAMIC_BUDGET = -1  # Gemini decides how much to think
TOOL_CHOICE_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
MID_SYSTEM_PREFIX = "System instruction:\n"


def render_request(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    body = _render_prompt(request, quirks, reuse)
    config = _generation_config(request, quirks)
    if config:
        body["generationConfig"] = config
    return body


def render_count_tokens(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    """The `:countTokens` body. The `generateContentRequest` form counts the system
    instruction and the tool declarations too, as generateContent would."""
    prompt = _render_prompt(request, quirks, reuse)
    prompt.pop("toolConfig", None)
    return {"generateContentRequest": {"model": f"models/{request.model}", **prompt}}


def _render_prompt(request: Request, quirks: Quirks, reuse: Reuse) -> JSON:
    history = _History(quirks.images, reuse)
    for message in request.messages:
        history.add(message)
    body: JSON = {"contents": history.finish()}
    # request.system first, then the system messages that came before the conversation.
    # Kept per shared system prompt (an Anthropic client's), and serialised whole.
    system = reuse.derive(_system_parts, request.system, reuse)
    if history.system:
        body["systemInstruction"] = {"parts": [*system, *history.system]}
    elif system:
        body["systemInstruction"] = {"parts": reuse.serialised(system)}
    # Rendered once per distinct tool list (protocols/reuse.py): agents resend theirs every
    # turn.
    tools = reuse.derive(render_tools, request.tools, reuse)
    if tools:
        body["tools"] = reuse.serialised(tools)
        if request.tool_choice is not None and "functionDeclarations" in tools[0]:
            body["toolConfig"] = _tool_config(request)
    return body


# ---------------------------------------------------------------- history
#
# Reuse (protocols/reuse.py): what one message renders to on its own is kept per shared message
# (its "piece"); where that lands depends on the conversation around it (turns merge, results
# are named after their call and ordered by it, a turn's first call may need the placeholder
# signature), so `contents` is assembled per request, in containers of the request's own.
# Pieces and everything in them are shared between requests: never mutated.


class _ModelPiece:
    """An assistant message rendered on its own (it depends on nothing else)."""

    __slots__ = ("calls", "first_call", "parts", "signed", "turn")

    def __init__(self, message: Message) -> None:
        self.parts = render_model_parts(message.parts, upstream=True)
        # (call id, tool name, the id Gemini gave the call), in order: what results need.
        self.calls = [
            (p.id, p.name, _gemini_id(p)) for p in message.parts if isinstance(p, ToolCall)
        ]
        calls = [i for i, p in enumerate(self.parts) if "functionCall" in p]
        self.first_call = calls[0] if calls else -1  # index in parts
        self.signed = any("thoughtSignature" in self.parts[i] for i in calls)
        # The whole turn when no other assistant message joins it (nearly always).
        parts = self.parts
        if self.first_call >= 0 and not self.signed:
            parts = list(parts)
            parts[self.first_call] = _with_placeholder(parts[self.first_call])
        self.turn = {"role": "model", "parts": parts}  # shared with the piece


# A user message rendered on its own, as (its tool results, its other parts, the whole turn
# when nothing joins it or None when it has results). The functionResponse parts of results
# depend on the call they answer, so they are rendered per request; the other parts are each
# result's images and documents, then the message's own parts. A tuple: many user messages
# are the request's own (a Chat client's tool messages, short ones), made on every request.
_UserPiece = tuple[list[ToolResult], list[JSON], JSON | None]


class _History:
    """The turns of `contents` being assembled, in containers of the request's own: a turn
    is its role and its pieces (several when same-role messages merge), and a user turn
    that answers calls has its function responses."""

    __slots__ = ("calls", "images", "pieces", "responses", "reuse", "roles", "started",
                 "system", "turn_calls")

    def __init__(self, images: bool, reuse: Reuse) -> None:
        self.images = images  # quirks.images: the only quirk the history depends on
        self.reuse = reuse
        self.system: list[JSON] = []  # system messages before the conversation started
        self.roles: list[str] = []  # per turn
        self.pieces: list[list[Any]] = []  # per turn
        # turn index -> (place of the answered call in its model turn, functionResponse part)
        self.responses: dict[int, list[tuple[int, Any]]] = {}
        self.calls: dict[str, tuple[str, str | None]] = {}  # call id -> (name, Gemini's id)
        self.turn_calls: list[str] = []  # call ids of the latest model turn
        self.started = False

    def add(self, message: Message) -> None:
        if message.role == "system":
            self._system(message)
        elif message.role == "assistant":
            self._model(message)
        else:
            self._user(message)

    def finish(self) -> list[Any]:
        roles, pieces = self.roles, self.pieces
        while roles and roles[-1] == "model":
            roles.pop()  # a prefill: see the module docstring
            pieces.pop()
        contents: list[Any] = []
        for turn, (role, turn_pieces) in enumerate(zip(roles, pieces, strict=True)):
            responses = self.responses.get(turn)
            if responses is None and len(turn_pieces) == 1:  # most turns: kept whole
                piece = turn_pieces[0]
                turn_whole = piece.turn if role == "model" else piece[2]
                contents.append(self.reuse.serialised(turn_whole))
            elif role == "model":
                contents.append({"role": "model", "parts": _merged_model_parts(turn_pieces)})
            else:
                contents.append({"role": "user", "parts": _user_parts(turn_pieces, responses)})
        return contents

    def _system(self, message: Message) -> None:
        if not self.started:
            self.system.extend(self.reuse.derive(_system_texts, message))
            return
        piece = self.reuse.derive(_mid_system, message)
        if piece is not None:
            self._append("user", piece)

    def _model(self, message: Message) -> None:
        piece = self.reuse.derive(_ModelPiece, message)
        if not piece.parts:
            return
        if not self.roles or self.roles[-1] != "model":
            self.turn_calls = []
        for call_id, name, gemini_id in piece.calls:
            self.calls[call_id] = (name, gemini_id)
            self.turn_calls.append(call_id)
        self._append("model", piece)

    def _user(self, message: Message) -> None:
        piece = self.reuse.derive(_user_piece, message, self.images)
        results, rest, _ = piece
        if not results and not rest:
            return
        turn = self._append("user", piece)
        if not results:
            return
        responses = self.responses.setdefault(turn, [])
        for result in results:
            name, gemini_id = self.calls.get(result.call_id) or (
                result.name or "unknown_tool", None)
            response = self.reuse.derive(_function_response, result, name, gemini_id)
            responses.append((self._call_position(result.call_id), self.reuse.serialised(response)))

    def _append(self, role: str, piece: Any) -> int:
        """Add `piece` to the last turn, or to a new one if that turn has another role; the
        turn's index."""
        self.started = True
        if self.roles and self.roles[-1] == role:
            self.pieces[-1].append(piece)
        else:
            self.roles.append(role)
            self.pieces.append([piece])
        return len(self.roles) - 1

    def _call_position(self, call_id: str) -> int:
        try:
            return self.turn_calls.index(call_id)
        except ValueError:
            return len(self.turn_calls)


def _user_parts(pieces: list[_UserPiece], responses: list[tuple[int, Any]] | None) -> list[Any]:
    """A user turn's parts: function responses first, in call order (results may come in
    several messages, in any order), then everything else in its own order."""
    parts: list[Any] = []
    if responses:
        responses.sort(key=_place)
        parts.extend(response for _, response in responses)
    for _, rest, _ in pieces:
        parts.extend(rest)
    return parts


def _place(response: tuple[int, Any]) -> int:
    return response[0]


def _system_parts(system: tuple[Text, ...], reuse: Reuse) -> list[Any]:
    # A Chat client's system texts are parts of its shared system messages (the tuple is the
    # request's own): each goes out pre-serialised, from `reuse`, the table of the request
    # (an argument, so a part of the key, like all the rest).
    return [reuse.serialised(reuse.derive(_text_part, t)) for t in system if t.text]


def _text_part(text: Text) -> JSON:
    return {"text": text.text}


def _system_texts(message: Message) -> list[JSON]:
    return [{"text": p.text} for p in message.parts if isinstance(p, Text) and p.text]


def _mid_system(message: Message) -> _UserPiece | None:
    text = "\n\n".join(t["text"] for t in _system_texts(message))
    if not text:
        return None
    rest = [{"text": MID_SYSTEM_PREFIX + text}]
    return [], rest, {"role": "user", "parts": rest}


def _user_piece(message: Message, images: bool) -> _UserPiece:
    results: list[ToolResult] = []
    attached: list[JSON] = []
    others: list[JSON] = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            results.append(part)
            attached.extend(_result_media(part, images))
        elif isinstance(part, Text):
            if part.text:
                others.append({"text": part.text})
        elif isinstance(part, Image | Document):
            media = _media(part, images)
            if media is not None:
                others.append(media)
    rest = attached + others
    if results:
        return results, rest, None
    return results, rest, {"role": "user", "parts": rest}


def _merged_model_parts(pieces: list[_ModelPiece]) -> list[JSON]:
    """A model turn of several messages: a new list, and a new dict for a part that needs
    the placeholder signature (the pieces' own are shared)."""
    parts: list[JSON] = []
    first_call, signed = -1, False
    for piece in pieces:
        if first_call < 0 and piece.first_call >= 0:
            first_call = len(parts) + piece.first_call
        signed = signed or piece.signed
        parts.extend(piece.parts)
    if first_call >= 0 and not signed:
        parts[first_call] = _with_placeholder(parts[first_call])
    return parts


def _with_placeholder(call: JSON) -> JSON:
    """A functionCall part with the placeholder signature (see the module docstring for why
    Gemini 3 needs it): a copy, the rendered part may be shared."""
    return {**call, "thoughtSignature": PLACEHOLDER_SIGNATURE}


def _function_response(result: ToolResult, name: str, gemini_id: str | None) -> JSON:
    text = "\n".join(_result_texts(result))
    response: JSON = {"name": gemini_name(name)}
    response["response"] = {"error": text} if result.is_error else {"output": text}
    if gemini_id is not None:
        response["id"] = gemini_id
    return {"functionResponse": response}


def _gemini_id(call: ToolCall) -> str | None:
    gemini_id = (call.provider_metadata or {}).get(GEMINI_ID_KEY)
    return gemini_id if isinstance(gemini_id, str) else None


def _result_media(result: ToolResult, images: bool) -> list[JSON]:
    out = []
    for part in result.content:
        if isinstance(part, Image) or (isinstance(part, Document) and part.text is None):
            media = _media(part, images)
            if media is not None:
                out.append(media)
    return out


def _media(part: Image | Document, images: bool) -> JSON | None:
    if isinstance(part, Image) and not images:
        return None  # this upstream model cannot read images
    return media_part(part)


def _result_texts(result: ToolResult) -> list[str]:
    texts = []
    for part in result.content:
        if isinstance(part, Text) or (isinstance(part, Document) and part.text is not None):
            texts.append(part.text or "")
    return texts


# ---------------------------------------------------------------- tools


def render_tools(tools: tuple[Tool, ...], reuse: Reuse) -> list[JSON]:
    """The `tools` list: `functionDeclarations` when any function is declared. Web search
    becomes `googleSearch` only when no function is declared: older models reject the mix,
    and a coding agent needs its functions more than search."""
    declarations: list[JSON] = []
    search = False
    for tool in tools:
        if tool.kind == "hosted":
            search = search or _live_search(tool)
            continue
        declarations.append(_declaration(tool, reuse))
    if declarations:
        return [{"functionDeclarations": declarations}]
    if search:
        return [{"googleSearch": {}}]
    return []


def _live_search(tool: Tool) -> bool:
    """A web search tool that allows live access (Codex's cached-only mode says
    `external_web_access: false`, and Google Search is always live)."""
    if (tool.hosted_type or "").split("_20")[0] not in WEB_SEARCH_TYPES:
        return False
    return (tool.config or {}).get("external_web_access") is not False


def _declaration(tool: Tool, reuse: Reuse) -> JSON:
    decl: JSON = {"name": gemini_name(tool.name)}
    description = tool.description or ""
    if tool.kind == "custom":
        definition = (tool.format or {}).get("definition")
        if isinstance(definition, str) and definition:
            description = f"{description}\n\nInput format:\n{definition}".strip()
        parameters: JSON | None = CUSTOM_PARAMETERS
    else:
        # Cleaned once per schema for this caller (Claude Code's take ~30 µs each), keyed by
        # the schema's JSON: the client's own bytes when it came as text.
        parameters = reuse.memo(cleaned_parameters, _schema_json(tool))
    if description:
        decl["description"] = description
    if parameters is not None:
        decl["parameters"] = parameters
    return decl


def _schema_json(tool: Tool) -> bytes:
    schema = tool.parameters
    return schema.text if isinstance(schema, JSONText) else orjson.dumps(schema)


def _tool_config(request: Request) -> JSON:
    choice = request.tool_choice
    assert choice is not None
    config: JSON = {"mode": TOOL_CHOICE_MODE[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [gemini_name(choice.name)]
    return {"functionCallingConfig": config}


# ---------------------------------------------------------------- generation config


def _generation_config(request: Request, quirks: Quirks) -> JSON:
    config: JSON = {}
    max_tokens = request.max_tokens
    if max_tokens is not None and quirks.max_tokens is not None:
        max_tokens = min(max_tokens, quirks.max_tokens)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.stop:
        config["stopSequences"] = list(request.stop[:MAX_STOP_SEQUENCES])
    if request.reasoning is not None:
        thinking = thinking_config(request.reasoning)
        if thinking:
            config["thinkingConfig"] = thinking
    config.update(_response_format(request.response_format))
    return config


def thinking_config(reasoning: ReasoningConfig) -> JSON | None:
    """The client's reasoning request -> `thinkingConfig`. Always `thinkingBudget` (Gemini 3
    still accepts it), never `thinkingLevel` alongside it (Gemini rejects both at once).
    A client that turns thinking off gets the model's default: budget 0 would turn it off on
    Flash but is a 400 on 2.5 Pro and Gemini 3 ("this model only works in thinking mode"), and
    a provider serves all of them. Thoughts are not asked for, so none come back."""
    if reasoning.enabled is False or reasoning.effort == "none":
        return None
    if reasoning.budget_tokens:
        budget = min(reasoning.budget_tokens, MAX_THINKING_BUDGET)
    elif reasoning.effort is not None:
        budget = EFFORT_BUDGET[reasoning.effort]
    elif reasoning.adaptive or reasoning.enabled:
        budget = DYNAMIC_BUDGET
    else:
        return None
    return {"includeThoughts": True, "thinkingBudget": budget}


def _response_format(response_format: JSON | None) -> JSON:
    if not response_format:
        return {}
    kind = response_format.get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out: JSON = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            out["responseSchema"] = clean_schema(schema)
        return out
    return {}
