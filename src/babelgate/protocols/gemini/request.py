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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from babelgate.canonical import (
    Document,
    Image,
    Message,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from babelgate.protocols.base import Quirks
from babelgate.reuse import derive

from .names import gemini_name
from .parts import GEMINI_ID_KEY, media_part, render_model_parts
from .schema import clean_parameters, clean_schema

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


def render_request(request: Request, quirks: Quirks) -> JSON:
    body = _render_prompt(request, quirks)
    config = _generation_config(request, quirks)
    if config:
        body["generationConfig"] = config
    return body


def render_count_tokens(request: Request, quirks: Quirks) -> JSON:
    """The `:countTokens` body. The `generateContentRequest` form counts the system
    instruction and the tool declarations too, as generateContent would."""
    prompt = _render_prompt(request, quirks)
    prompt.pop("toolConfig", None)
    return {"generateContentRequest": {"model": f"models/{request.model}", **prompt}}


def _render_prompt(request: Request, quirks: Quirks) -> JSON:
    history = _History(quirks)
    for text in request.system:
        if text.text:
            history.system.append({"text": text.text})
    for message in request.messages:
        history.add(message)
    body: JSON = {"contents": history.finish()}
    if history.system:
        body["systemInstruction"] = {"parts": history.system}
    # Rendered once per distinct tool list (babelgate.reuse): agents resend theirs every turn.
    tools, has_functions = derive(request.tools, _TOOLS, render_tools, request.tools)
    if tools:
        body["tools"] = tools
    if has_functions and request.tool_choice is not None:
        body["toolConfig"] = _tool_config(request)
    return body


# ---------------------------------------------------------------- history


@dataclass(slots=True)
class _History:
    quirks: Quirks
    system: list[JSON] = field(default_factory=list)
    contents: list[JSON] = field(default_factory=list)
    calls: dict[str, ToolCall] = field(default_factory=dict)
    turn_calls: list[str] = field(default_factory=list)  # call ids of the latest model turn
    # Place of each rendered functionResponse (by object id) in its model turn's call order.
    positions: dict[int, int] = field(default_factory=dict)
    started: bool = False

    def add(self, message: Message) -> None:
        if message.role == "system":
            self._system(message)
        elif message.role == "assistant":
            self._model(message)
        else:
            self._user(message)

    def finish(self) -> list[JSON]:
        while self.contents and self.contents[-1]["role"] == "model":
            self.contents.pop()  # a prefill: see the module docstring
        for content in self.contents:
            if content["role"] == "model":
                _ensure_call_signature(content["parts"])
            elif self.positions:
                content["parts"] = self._responses_first(content["parts"])
        return self.contents

    def _responses_first(self, parts: list[JSON]) -> list[JSON]:
        """Function responses first, in call order (results may have come in several
        messages, in any order), then everything else in its own order."""
        keyed = [
            ((0, self.positions[id(p)]) if id(p) in self.positions else (1, i), p)
            for i, p in enumerate(parts)
        ]
        keyed.sort(key=lambda item: item[0])
        return [p for _, p in keyed]

    def _system(self, message: Message) -> None:
        texts = [{"text": p.text} for p in message.parts if isinstance(p, Text) and p.text]
        if not self.started:
            self.system.extend(texts)
            return
        text = "\n\n".join(t["text"] for t in texts)
        if text:
            self._append("user", [{"text": MID_SYSTEM_PREFIX + text}])

    def _model(self, message: Message) -> None:
        parts = render_model_parts(message.parts, upstream=True)
        if not parts:
            return
        if not self.contents or self.contents[-1]["role"] != "model":
            self.turn_calls = []
        for part in message.parts:
            if isinstance(part, ToolCall):
                self.calls[part.id] = part
                self.turn_calls.append(part.id)
        self._append("model", parts)

    def _user(self, message: Message) -> None:
        responses: list[JSON] = []
        attached: list[JSON] = []
        others: list[JSON] = []
        for part in message.parts:
            if isinstance(part, ToolResult):
                response = self._response(part)
                self.positions[id(response)] = self._call_position(part.call_id)
                responses.append(response)
                attached.extend(self._result_media(part))
            elif isinstance(part, Text):
                if part.text:
                    others.append({"text": part.text})
            elif isinstance(part, Image | Document):
                media = self._media(part)
                if media is not None:
                    others.append(media)
        parts = responses + attached + others
        if parts:
            self._append("user", parts)

    def _append(self, role: str, parts: list[JSON]) -> None:
        self.started = True
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})

    def _call_position(self, call_id: str) -> int:
        try:
            return self.turn_calls.index(call_id)
        except ValueError:
            return len(self.turn_calls)

    def _response(self, result: ToolResult) -> JSON:
        call = self.calls.get(result.call_id)
        name = call.name if call is not None else (result.name or "unknown_tool")
        text = "\n".join(_result_texts(result))
        response: JSON = {"name": gemini_name(name), "response": {}}
        response["response"] = {"error": text} if result.is_error else {"output": text}
        gemini_id = (call.provider_metadata or {}).get(GEMINI_ID_KEY) if call else None
        if isinstance(gemini_id, str):
            response["id"] = gemini_id
        return {"functionResponse": response}

    def _result_media(self, result: ToolResult) -> list[JSON]:
        out = []
        for part in result.content:
            if isinstance(part, Image) or (isinstance(part, Document) and part.text is None):
                media = self._media(part)
                if media is not None:
                    out.append(media)
        return out

    def _media(self, part: Image | Document) -> JSON | None:
        if isinstance(part, Image) and not self.quirks.images:
            return None  # this upstream model cannot read images
        return media_part(part)


def _result_texts(result: ToolResult) -> list[str]:
    texts = []
    for part in result.content:
        if isinstance(part, Text) or (isinstance(part, Document) and part.text is not None):
            texts.append(part.text or "")
    return texts


def _ensure_call_signature(parts: list[JSON]) -> None:
    calls = [p for p in parts if "functionCall" in p]
    if calls and not any("thoughtSignature" in p for p in calls):
        calls[0]["thoughtSignature"] = PLACEHOLDER_SIGNATURE


# ---------------------------------------------------------------- tools


_TOOLS = "gemini.tools"  # what babelgate.reuse keeps per shared tool list


def render_tools(tools: list[Tool]) -> tuple[list[JSON], bool]:
    """(the `tools` list, whether it declares functions). Web search becomes `googleSearch`
    only when no function is declared: older models reject the mix, and a coding agent needs
    its functions more than search."""
    declarations: list[JSON] = []
    search = False
    for tool in tools:
        if tool.kind == "hosted":
            search = search or _live_search(tool)
            continue
        declarations.append(_declaration(tool))
    if declarations:
        return [{"functionDeclarations": declarations}], True
    if search:
        return [{"googleSearch": {}}], False
    return [], False


def _live_search(tool: Tool) -> bool:
    """A web search tool that allows live access (Codex's cached-only mode says
    `external_web_access: false`, and Google Search is always live)."""
    if (tool.hosted_type or "").split("_20")[0] not in WEB_SEARCH_TYPES:
        return False
    return (tool.config or {}).get("external_web_access") is not False


def _declaration(tool: Tool) -> JSON:
    decl: JSON = {"name": gemini_name(tool.name)}
    description = tool.description or ""
    if tool.kind == "custom":
        definition = (tool.format or {}).get("definition")
        if isinstance(definition, str) and definition:
            description = f"{description}\n\nInput format:\n{definition}".strip()
        parameters: JSON | None = CUSTOM_PARAMETERS
    else:
        parameters = clean_parameters(tool.parameters)
    if description:
        decl["description"] = description
    if parameters is not None:
        decl["parameters"] = parameters
    return decl


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
        config["stopSequences"] = request.stop[:MAX_STOP_SEQUENCES]
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
