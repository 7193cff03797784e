"""A client's Chat Completions request body -> canonical Request.

Leading system/developer messages become `Request.system`; later ones stay in place as
system Messages. Consecutive `tool` messages join one user message of ToolResult parts (the
canonical model keeps results in user turns). Tool call ids are split back from what
carrier.py attached to them: a call gets its provider_metadata back, and the reasoning the
first call carried is restored, in order, at the start of its assistant turn. Anything we
cannot carry (audio input, uploaded file ids) is rejected with the offending field named,
e.g. `messages[2].content[0]`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from babelgate.canonical import (
    JSON,
    Document,
    Effort,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    invalid,
)
from babelgate.canonical.tool_args import client_arguments

from ..fields import boolean, integer, mapping, number, string
from ..reuse import Reuse
from .carrier import open_call_id, restore_reasoning

_EFFORTS: dict[str, Effort] = {effort: effort for effort in get_args(Effort)}
def parse_request(body: JSON, reuse: Reuse) -> Request:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("`model` is required and must be a string", "model")
    system, messages = _messages(body.get("messages"), reuse)
    stream = boolean(body, "stream") or False
    options = body.get("stream_options")
    include_usage = not stream or (isinstance(options, dict) and bool(options.get("include_usage")))
    # Agents resend the same tool list on every turn: parsed once (protocols/reuse.py).
    tools = reuse.derive(_tools, body.get("tools"))
    return Request(
        model=model,
        messages=messages,
        system=system,
        max_tokens=_max_tokens(body),
        stream=stream,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        top_k=integer(body, "top_k"),
        stop=_stop(body.get("stop")),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=boolean(body, "parallel_tool_calls"),
        reasoning=_reasoning(body.get("reasoning_effort")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        response_format=_response_format(body.get("response_format")),
        n=integer(body, "n"),
        include_usage=include_usage,
    )


# ------------------------------------------------------------------ messages


def _messages(raw: Any, reuse: Reuse) -> tuple[tuple[Text, ...], tuple[Message, ...]]:
    if not isinstance(raw, list) or not raw:
        raise invalid("`messages` must be a non-empty array", "messages")
    system: list[Text] = []
    messages: list[Message] = []
    calls: dict[str, ToolCall] = {}  # by id, so results can name their tool (Gemini needs it)
    for i, message in enumerate(raw):
        # A message resent unchanged from an earlier turn is parsed once (protocols/reuse.py):
        # the Message (or tool output) is then shared between requests and never changed.
        parsed = reuse.derive(_message, message, i)
        if isinstance(parsed, _ToolOutput):
            call = calls.get(parsed.call_id)
            name, kind = (call.name, call.kind) if call is not None else (None, "function")
            result = reuse.derive(_named_result, parsed, name, kind)
            _add_tool_result(messages, result)
        elif parsed.role == "system" and not messages:
            system.extend(p for p in parsed.parts if isinstance(p, Text))  # all are Texts
        else:
            if parsed.role == "assistant":
                calls.update((p.id, p) for p in parsed.parts if isinstance(p, ToolCall))
            messages.append(parsed)
    return tuple(system), tuple(messages)


class _ToolOutput:
    """A tool message, before it is known which call (and so which tool) it answers."""

    __slots__ = ("call_id", "content")

    def __init__(self, call_id: str, content: tuple[Text | Image | Document, ...]) -> None:
        self.call_id = call_id
        self.content = content


def _message(message: Any, i: int) -> Message | _ToolOutput:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid("each message must be an object", where)
    role = message.get("role")
    if role in ("system", "developer"):
        texts = _text_parts(message.get("content"), f"{where}.content")
        return Message(role="system", parts=tuple(texts))
    if role == "user":
        return Message(role="user", parts=tuple(_user_parts(message, where)))
    if role == "assistant":
        return Message(role="assistant", parts=tuple(_assistant_parts(message, where)))
    if role == "tool":
        return _tool_output(message, where)
    if role == "function":
        raise invalid("the legacy `function` role is not supported; use `tool`", where)
    raise invalid(f"unknown role {role!r}", f"{where}.role")


def _text_parts(content: Any, where: str) -> list[Text]:
    if isinstance(content, str):
        return [Text(text=content)] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise invalid("content must be a string or an array of parts", where)
    texts: list[Text] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise invalid("only text parts are allowed here", f"{where}[{i}]")
        text = part.get("text") if part["type"] == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise invalid("a text part needs a string `text`", f"{where}[{i}].text")
        if text:
            texts.append(Text(text=text))
    return texts


def _user_parts(message: JSON, where: str) -> list[Part]:
    content = message.get("content")
    where = f"{where}.content"
    if isinstance(content, str):
        return [Text(text=content)]
    if not isinstance(content, list):
        raise invalid("content must be a string or an array of parts", where)
    return [_user_part(part, f"{where}[{i}]") for i, part in enumerate(content)]


def _user_part(part: Any, where: str) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid("a text part needs a string `text`", f"{where}.text")
        return Text(text=text)
    if kind == "image_url":
        return _image(part.get("image_url"), f"{where}.image_url")
    if kind == "file":
        return _file(part.get("file"), f"{where}.file")
    if kind == "input_audio":
        raise invalid("audio input is not supported by this gateway", where)
    raise invalid(f"unsupported content part type {kind!r}", f"{where}.type")


def _image(raw: Any, where: str) -> Image:
    if isinstance(raw, str):  # some clients send the url directly
        raw = {"url": raw}
    url = raw.get("url") if isinstance(raw, dict) else None
    if not isinstance(url, str) or not url:
        raise invalid("an image needs a `url` (http(s) or a data: URL)", f"{where}.url")
    detail = raw.get("detail") if isinstance(raw.get("detail"), str) else None
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{where}.url")
        return Image(media_type=media_type, data=data, detail=detail)
    return Image(url=url, detail=detail)


def _file(raw: Any, where: str) -> Document:
    if not isinstance(raw, dict):
        raise invalid("`file` must be an object", where)
    if raw.get("file_id") and not raw.get("file_data"):
        raise invalid("uploaded file ids are not supported; send `file_data`", f"{where}.file_id")
    data_url = raw.get("file_data")
    if not isinstance(data_url, str) or not data_url:
        raise invalid("a file needs `file_data` (a base64 data: URL)", f"{where}.file_data")
    filename = raw.get("filename") if isinstance(raw.get("filename"), str) else None
    if data_url.startswith("data:"):
        media_type, data = _data_url(data_url, f"{where}.file_data")
    else:  # bare base64; OpenAI only takes PDFs here
        media_type, data = "application/pdf", data_url
    return Document(media_type=media_type, data=data, filename=filename)


def _data_url(url: str, where: str) -> tuple[str, str]:
    header, comma, data = url.partition(",")
    if not comma or ";base64" not in header:
        raise invalid("expected a base64 data: URL", where)
    return header[len("data:") :].split(";", 1)[0] or "application/octet-stream", data


def _assistant_parts(message: JSON, where: str) -> list[Part]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid("`tool_calls` must be an array", f"{where}.tool_calls")
    tool_calls: list[ToolCall] = []
    entries: list[Any] = []
    for i, call in enumerate(calls):
        parsed, carried = _tool_call(call, f"{where}.tool_calls[{i}]")
        tool_calls.append(parsed)
        entries.extend(carried)
    parts: list[Part] = list(_reasoning_parts(message, entries))
    parts.extend(_text_parts(message.get("content"), f"{where}.content"))
    parts.extend(tool_calls)
    return parts


def _reasoning_parts(message: JSON, entries: list[Any]) -> list[Reasoning]:
    """The turn's reasoning: what its call ids carried, else the echoed reasoning_content
    (DeepSeek's reasoning, which must go back to it, has no signature to carry)."""
    echoed = message.get("reasoning_content") or message.get("reasoning")
    echoed = echoed if isinstance(echoed, str) else ""
    restored, used = restore_reasoning(entries, echoed) if entries else ([], False)
    if echoed and not used:
        restored.append(Reasoning(text=echoed, origin="openai"))
    return restored


def _tool_call(call: Any, where: str) -> tuple[ToolCall, list[Any]]:
    """(the call, the reasoning entries its id carried)."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        raise invalid("a tool call needs a string `id`", f"{where}.id")
    call_id, metadata, entries = open_call_id(call["id"])
    kind: Literal["function", "custom"]
    if call.get("type") == "custom":
        custom = mapping(call, "custom", where) or {}
        name = custom.get("name")
        arguments = {"input": string(custom, "input", f"{where}.custom") or ""}
        kind = "custom"
    else:
        function = mapping(call, "function", where) or {}
        name = function.get("name")
        here = f"{where}.function"
        arguments = client_arguments(string(function, "arguments", here), f"{here}.arguments")
        kind = "function"
    if not isinstance(name, str) or not name:
        raise invalid("a tool call needs a name", f"{where}.function.name")
    parsed = ToolCall(
        id=call_id, name=name, arguments=arguments, kind=kind, provider_metadata=metadata
    )
    return parsed, entries


def _tool_output(message: JSON, where: str) -> _ToolOutput:
    raw_id = message.get("tool_call_id")
    if not isinstance(raw_id, str) or not raw_id:
        raise invalid("a tool message needs `tool_call_id`", f"{where}.tool_call_id")
    call_id = open_call_id(raw_id)[0]  # the same split as its call's id
    content: tuple[Text | Image | Document, ...] = tuple(
        _text_parts(message.get("content"), f"{where}.content")
    )
    return _ToolOutput(call_id, content)


def _named_result(
    output: _ToolOutput, name: str | None, kind: Literal["function", "custom"]
) -> ToolResult:
    return ToolResult(call_id=output.call_id, content=output.content, name=name, kind=kind)


def _add_tool_result(messages: list[Message], result: ToolResult) -> None:
    last = messages[-1] if messages else None
    if (
        last is not None
        and last.role == "user"
        and all(isinstance(p, ToolResult) for p in last.parts)
    ):
        # The results of one turn's calls travel in one user message: a new one with this
        # result added (the one before may be shared with other requests).
        messages[-1] = Message(role="user", parts=(*last.parts, result))
    else:
        messages.append(Message(role="user", parts=(result,)))


# ------------------------------------------------------------------ tools


def _tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("`tools` must be an array", "tools")
    return tuple([_tool(tool, f"tools[{i}]") for i, tool in enumerate(raw)])


def _tool(raw: Any, where: str) -> Tool:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "function":
        function = raw.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid("a function tool needs `function.name`", f"{where}.function.name")
        here = f"{where}.function"
        return Tool(
            name=function["name"],
            description=string(function, "description", here),
            parameters=mapping(function, "parameters", here) or _EMPTY_SCHEMA.copy(),
            strict=function.get("strict") if isinstance(function.get("strict"), bool) else None,
        )
    if kind == "custom":
        custom = raw.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("name"), str):
            raise invalid("a custom tool needs `custom.name`", f"{where}.custom.name")
        return Tool(
            name=custom["name"],
            description=string(custom, "description", f"{where}.custom"),
            kind="custom",
            format=_custom_format(custom.get("format")),
        )
    raise invalid(f"unsupported tool type {kind!r}", f"{where}.type")


_EMPTY_SCHEMA: JSON = {"type": "object", "properties": {}}


def _custom_format(raw: Any) -> JSON | None:
    """Chat nests a grammar (`{type:"grammar", grammar:{syntax, definition}}`); the canonical
    form is the flat one the Responses API uses (`{type, syntax, definition}`)."""
    if not isinstance(raw, dict):
        return None
    grammar = raw.get("grammar")
    if raw.get("type") == "grammar" and isinstance(grammar, dict):
        return {"type": "grammar", **grammar}
    return raw


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict):
        if raw.get("type") == "allowed_tools":
            mode = (mapping(raw, "allowed_tools", "tool_choice") or {}).get("mode")
            return ToolChoice(mode="required" if mode == "required" else "auto")
        named = raw.get("function") or raw.get("custom") or {}
        if isinstance(named, dict) and isinstance(named.get("name"), str):
            return ToolChoice(mode="tool", name=named["name"])
    raise invalid("`tool_choice` must be auto, none, required or a named tool", "tool_choice")


# ------------------------------------------------------------------ scalars


def _max_tokens(body: JSON) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(f"`{key}` must be a positive integer", key)
        return value
    return None


def _reasoning(raw: Any) -> ReasoningConfig | None:
    if raw is None:
        return None
    effort = _EFFORTS.get(raw) if isinstance(raw, str) else None  # a list is no name
    if effort is None:
        raise invalid(f"unknown reasoning_effort {raw!r}", "reasoning_effort")
    return ReasoningConfig(enabled=False if effort == "none" else None, effort=effort)


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise invalid("`stop` must be a string or an array of strings", "stop")


def _response_format(raw: Any) -> JSON | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise invalid("`response_format` must be an object with a `type`", "response_format")
    if raw["type"] == "json_schema":  # read by every upstream's renderer
        spec = mapping(raw, "json_schema", "response_format") or {}
        mapping(spec, "schema", "response_format.json_schema")
        string(spec, "name", "response_format.json_schema")
    return raw


