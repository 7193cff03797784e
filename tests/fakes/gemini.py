"""A strict fake of the Gemini API (`/v1beta/models/{model}:generateContent`,
`:streamGenerateContent` (SSE with `alt=sse`, a JSON array without), `:countTokens`).

Enforces: `x-goog-api-key` (or `?key=`); known top-level and generationConfig fields (camel or
snake case); roles user/model; non-empty parts; function declarations free of the JSON Schema
keywords Gemini's Schema rejects; every functionResponse named after a call of the previous
model turn, all of one turn's responses in ONE user turn; history ending on a user turn.
Mode `gemini3`: the first functionCall part of each answer carries a thoughtSignature, and the
current turn's calls must come back with it ("Function call is missing a thought_signature").
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from .core import (
    JSON,
    Conversation,
    FakeUpstream,
    Invalid,
    Resolved,
    estimate_tokens,
    new_id,
    opaque_ok,
    opaque_token,
    pieces,
    resolve,
)

TOP_FIELDS = frozenset(
    {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "model",
    }
)
GENERATION_FIELDS = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "mediaResolution",
        "imageConfig",
    }
)
PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
PART_FIELDS = frozenset(
    {*PART_DATA, "thought", "thoughtSignature", "videoMetadata", "partMetadata"}
)
# JSON Schema keywords that Gemini's `parameters` Schema does not know.
FORBIDDEN_SCHEMA_KEYS = frozenset(
    {
        "$schema",
        "additionalProperties",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "propertyNames",
        "const",
        "$ref",
        "$defs",
        "definitions",
        "patternProperties",
        "unevaluatedProperties",
    }
)
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
# Google documents this value as "skip validation" for histories made elsewhere.
SKIP_SIGNATURE = "skip_thought_signature_validator"
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
FINISH = {"end": "STOP", "tool": "STOP", "max_tokens": "MAX_TOKENS", "refusal": "SAFETY"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def normalize(value: Any) -> Any:
    """snake_case keys to lowerCamelCase, as the API accepts both (property names under
    `properties` and function args are user data and stay as they are)."""
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("properties", "args", "response"):
            out[camel(key)] = (
                {k: normalize(v) for k, v in item.items()}
                if key == "properties" and isinstance(item, dict)
                else item
            )
        else:
            out[camel(key)] = normalize(item)
    return out


class FakeGemini(FakeUpstream):
    protocol = "gemini"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self.dispatch)

    def auth_error(self, request: web.Request) -> str | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API."
            )
        if key != self.api_key:
            return "API key not valid. Please pass a valid API key."
        return None

    def error_body(self, status: int, message: str, param: str | None) -> JSON:
        return {
            "error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}
        }

    def view(self, body: JSON) -> Conversation:
        return view(normalize(body))

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["call"].rpartition(":")
        rec, refusal = await self.admit(request)
        if refusal is not None:
            return refusal
        if action not in ("generateContent", "streamGenerateContent", "countTokens"):
            return self.error(404, f"Method not found: {action}")
        body = normalize(rec.body)
        try:
            if action == "countTokens":
                return self.count(body)
            validate(body, "gemini3" in self.modes)
            conversation = self.view(body)
        except Invalid as exc:
            return self.error(exc.status, exc.message)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            # A value of the wrong type somewhere (a client's body passed through as it was):
            # Google's JSON mapping refuses it before anything else looks at the request.
            return self.error(400, f"Invalid JSON payload received. {type(exc).__name__}")
        reply = self.next_reply(conversation)
        res = resolve(reply, body, "", model)
        sse = action == "streamGenerateContent" and request.query.get("alt") == "sse"
        signature = opaque_token() if "gemini3" in self.modes else None
        if action == "streamGenerateContent" and not sse:
            # Without alt=sse the API answers one JSON array of all chunks.
            return await self.answer(
                request, reply, False, lambda: render_chunks(res, signature), list
            )
        return await self.answer(
            request,
            reply,
            sse,
            lambda: render_json(res, signature),
            lambda: render_chunks(res, signature),
        )

    def count(self, body: JSON) -> web.StreamResponse:
        inner = body.get("generateContentRequest") or body
        if not isinstance(inner.get("contents"), list):
            raise Invalid("contents is not specified")
        tokens = estimate_tokens(inner)
        return web.json_response(
            {
                "totalTokens": tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
            }
        )


# -- validation


def unknown(name: str, where: str) -> Invalid:
    at = f" at '{where}'" if where else ""
    return Invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def validate(body: JSON, gemini3: bool) -> None:
    for key in body:
        if key not in TOP_FIELDS:
            raise unknown(key, "")
    for key in body.get("generationConfig") or {}:
        if key not in GENERATION_FIELDS:
            raise unknown(key, "generation_config")
    system = body.get("systemInstruction")
    if system is not None:
        check_parts(system.get("parts"), "system_instruction")
    validate_tools(body.get("tools"))
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        check_parts(content.get("parts"), f"contents[{i}]")
    check_function_turns(contents)
    if contents[-1]["role"] == "model":
        raise Invalid(
            "Please ensure that multiturn requests end with a user turn or a function response."
        )
    if gemini3:
        check_signatures(contents)


def check_parts(parts: Any, where: str) -> None:
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    for j, part in enumerate(parts):
        for key in part:
            if key not in PART_FIELDS:
                raise unknown(key, f"{where}.parts[{j}]")
        data = [k for k in PART_DATA if k in part]
        if len(data) != 1:
            raise Invalid(
                f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof "
                "field 'data' must have one initialized field"
            )
        if "text" in part and part["text"] == "":
            raise Invalid(
                "Unable to submit request because it has an empty text parameter. Add "
                "a value to the parameter and try again."
            )
        call = part.get("functionResponse") or part.get("functionCall")
        if call is not None and not call.get("name"):
            raise Invalid(
                f"* GenerateContentRequest.{where}.parts[{j}].function_call.name: "
                "Name cannot be empty."
            )


def validate_tools(tools: Any) -> None:
    for i, tool in enumerate(tools or []):
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            if not FUNCTION_NAME.match(str(decl.get("name"))):
                raise Invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. "
                    "Must start with a letter or an underscore. Must be a-z, A-Z, "
                    "0-9, or contain underscores, dots, colons and dashes, with a "
                    "maximum length of 128."
                )
            if "parameters" in decl:
                check_schema(decl["parameters"], f"{where}.parameters")


def check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in FORBIDDEN_SCHEMA_KEYS:
            raise unknown(key, where)
        if key == "type" and not isinstance(value, str):
            raise Invalid(
                f"Invalid JSON payload received. Proto field is not repeating, cannot "
                f"start list. (at '{where}.type')"
            )
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                check_schema(sub, f"{where}.properties[{name}].value")
        elif key in ("items", "anyOf") or isinstance(value, dict):
            subs = value if isinstance(value, list) else [value]
            for sub in subs:
                check_schema(sub, f"{where}.{key}")


def calls_of(content: JSON) -> list[str]:
    return [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]


def responses_of(content: JSON) -> list[str]:
    return [p["functionResponse"]["name"] for p in content["parts"] if "functionResponse" in p]


def check_function_turns(contents: list[JSON]) -> None:
    for i, content in enumerate(contents):
        answers = responses_of(content)
        if not answers:
            continue
        previous = contents[i - 1] if i else None
        if (
            content["role"] != "user"
            or previous is None
            or previous["role"] != "model"
            or not calls_of(previous)
        ):
            raise Invalid(
                "Please ensure that function response turn comes immediately after a "
                "function call turn."
            )
        calls = calls_of(previous)
        if sorted(answers) != sorted(calls):
            raise Invalid(
                "Please ensure that the number of function response parts is equal to "
                "the number of function call parts of the function call turn."
            )
    for i, content in enumerate(contents[:-1]):
        if calls_of(content) and not responses_of(contents[i + 1]):
            raise Invalid(
                "Please ensure that function call turn comes immediately after a user "
                "turn or after a function response turn."
            )


def check_signatures(contents: list[JSON]) -> None:
    """Only the current turn (after the last user turn with text) is checked, like Gemini 3."""
    start = 0
    for i, content in enumerate(contents):
        if content["role"] == "user" and any("text" in p for p in content["parts"]):
            start = i
    for i in range(start, len(contents)):
        parts = [p for p in contents[i]["parts"] if "functionCall" in p]
        if contents[i]["role"] != "model" or not parts:
            continue
        signature = parts[0].get("thoughtSignature")
        if signature != SKIP_SIGNATURE and not opaque_ok(signature):
            name = parts[0]["functionCall"]["name"]
            raise Invalid(
                "Function call is missing a thought_signature in functionCall parts. "
                "This is required for tools to work correctly, and missing "
                "thought_signature may lead to degraded model performance. Additional "
                f"data, function call `default_api:{name}` , position {i + 1}. Please "
                "refer to https://ai.google.dev/gemini-api/docs/thought-signatures for "
                "more details."
            )


# -- what the brain sees


def view(body: JSON) -> Conversation:
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    conv = Conversation(wants_reasoning=bool(thinking.get("includeThoughts")))
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            conv.tools[decl["name"]] = (
                decl.get("parameters") or decl.get("parametersJsonSchema") or {}
            )
    last = body["contents"][-1]
    conv.tool_results = [
        response_text(p["functionResponse"].get("response"))
        for p in last["parts"]
        if "functionResponse" in p
    ]
    texts = [
        "".join(p.get("text", "") for p in c["parts"] if not p.get("thought"))
        for c in body["contents"]
        if c["role"] == "user"
    ]
    texts = [t for t in texts if t]
    conv.last_user_text = texts[-1] if texts else ""
    return conv


def response_text(response: Any) -> str:
    if isinstance(response, dict):
        for key in ("output", "result", "content"):
            if isinstance(response.get(key), str):
                return str(response[key])
    return str(response)


# -- rendering


def usage_json(res: Resolved, final: bool) -> JSON:
    usage: JSON = {
        "promptTokenCount": res.input_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": res.input_tokens}],
    }
    if not final:
        usage["totalTokenCount"] = res.input_tokens
        return usage
    answer = res.output_tokens - res.reasoning_tokens
    usage["candidatesTokenCount"] = max(0, answer)
    usage["totalTokenCount"] = res.input_tokens + res.output_tokens
    if res.reasoning_tokens:
        usage["thoughtsTokenCount"] = res.reasoning_tokens
    if res.cached_tokens:
        usage["cachedContentTokenCount"] = res.cached_tokens
    return usage


def call_parts(res: Resolved, signature: str | None) -> list[JSON]:
    parts: list[JSON] = []
    for _, name, args in res.calls:
        try:
            value = orjson.loads(args)
        except orjson.JSONDecodeError:
            value = {"_raw": args}
        part: JSON = {"functionCall": {"name": name, "args": value}}
        if signature and not parts:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def envelope(res: Resolved, parts: list[JSON], finish: bool, response_id: str) -> JSON:
    candidate: JSON = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = FINISH.get(res.stop, "STOP")
    return {
        "candidates": [candidate],
        "usageMetadata": usage_json(res, finish),
        "modelVersion": res.model,
        "responseId": response_id,
    }


def render_json(res: Resolved, signature: str | None) -> JSON:
    parts: list[JSON] = []
    if res.reasoning:
        parts.append({"text": res.reasoning, "thought": True})
    if res.text:
        parts.append({"text": res.text})
    parts += call_parts(res, signature)
    if signature and not res.calls and parts:
        parts[-1]["thoughtSignature"] = signature
    return envelope(res, parts or [{"text": ""}], True, new_id("resp", 16))


def render_chunks(res: Resolved, signature: str | None) -> list[JSON]:
    rid = new_id("resp", 16)
    bodies: list[list[JSON]] = [
        [{"text": p, "thought": True}] for p in pieces(res.reasoning or "", 24) if p
    ]
    bodies += [[{"text": p}] for p in pieces(res.text or "", 24) if p]
    if res.calls:
        bodies.append(call_parts(res, signature))
    elif signature and bodies:
        bodies[-1][-1]["thoughtSignature"] = signature
    if not bodies:
        bodies = [[{"text": ""}]]
    return [envelope(res, parts, i == len(bodies) - 1, rid) for i, parts in enumerate(bodies)]
