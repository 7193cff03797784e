"""What a target can do, as far as the gateway knows: for `GET /v1/models/capabilities`.

What this module promises:
- `capabilities_of(provider_type, quirks, model)` is a function of the provider's type, its
  quirks (which its preset and configuration decide) and the upstream model name, nothing
  else: no request, no network. Unknown is None, never a guess shown as fact.
- Each provider type registers what its protocol can carry in `TYPE_CAPABILITIES`; a new
  type (the Claude Code CLI, a third-party one) adds one line there. A type that is not
  registered answers None for everything but the context window.
- `tools`: the gateway can hand the client's tool definitions to this upstream. `images`:
  image input reaches it. `thinking`: the gateway can ask it for reasoning and carry it back.
  `documents`: PDF input. `max_output_tokens`: the clamp the gateway applies (a preset's or
  the configuration's `max_tokens`), None when the gateway does not clamp.
- `context_window` comes from a small table of model families whose limits the vendors
  publish (`CONTEXT_WINDOWS`); a model not in it is None. It is information for a client's
  picker, never used to route or to refuse.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

import msgspec

from babelgate.protocols.base import Quirks


class Capabilities(msgspec.Struct, frozen=True):
    tools: bool | None = None
    images: bool | None = None
    thinking: bool | None = None
    documents: bool | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None


# What each provider type's protocol carries, given the provider's quirks.
TypeRule = Callable[[Quirks], Capabilities]


def _openai_chat(quirks: Quirks) -> Capabilities:
    # An OpenAI-compatible server: tools and images are part of the Chat API (a preset says
    # when a service refuses images); reasoning only where the service declares a control.
    return Capabilities(tools=True, images=quirks.images,
                        thinking=quirks.reasoning_control != "none",
                        documents=quirks.documents)


def _native(quirks: Quirks) -> Capabilities:
    # Anthropic Messages, Gemini and OpenAI Responses carry tools, images, documents and
    # reasoning in the protocol itself (whether a given model thinks is the model's business).
    return Capabilities(tools=True, images=quirks.images, thinking=True,
                        documents=quirks.documents)


def _claude_code(quirks: Quirks) -> Capabilities:
    # The local Claude Code CLI runs its own tools and refuses the client's (a 400 naming the
    # limit); images in user messages reach it; it thinks natively.
    return Capabilities(tools=False, images=True, thinking=True, documents=None)


TYPE_CAPABILITIES: dict[str, TypeRule] = {
    "openai": _openai_chat,
    "anthropic": _native,
    "gemini": _native,
    "openai-responses": _native,
    "claude-code": _claude_code,
}

# Input context windows (tokens) that vendors publish for their model families, first match
# wins, so the more specific patterns come first. Sources: Anthropic's models overview
# (Claude: 200K), OpenAI's model pages (GPT-5: 400K, GPT-4.1: 1,047,576, GPT-4o: 128K,
# o3/o4-mini: 200K), Google's Gemini models page (2.x and 2.5: 1,048,576), DeepSeek's
# pricing page (128K), Moonshot's (Kimi K2: 256K), Zhipu's (GLM-4.6: 200K, GLM-4.5: 128K),
# xAI's (Grok 4: 256K).
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("claude-*", 200_000),
    ("sonnet", 200_000),  # Claude Code's own aliases
    ("opus", 200_000),
    ("haiku", 200_000),
    ("gpt-5*", 400_000),
    ("gpt-4.1*", 1_047_576),
    ("gpt-4o*", 128_000),
    ("o3*", 200_000),
    ("o4-mini*", 200_000),
    ("gemini-2*", 1_048_576),
    ("deepseek-chat", 128_000),
    ("deepseek-reasoner", 128_000),
    ("kimi-k2*", 262_144),
    ("glm-4.6*", 200_000),
    ("glm-4.5*", 128_000),
    ("grok-4*", 256_000),
)
_WINDOW_PATTERNS = tuple((re.compile(fnmatch.translate(glob)), size)
                         for glob, size in CONTEXT_WINDOWS)


def context_window(model: str) -> int | None:
    """The published context window of `model`'s family (a vendor prefix such as
    `anthropic/` or `models/` is looked past), or None."""
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, size in _WINDOW_PATTERNS:
        if pattern.fullmatch(name):
            return size
    return None


def capabilities_of(provider_type: str, quirks: Quirks | None, model: str) -> Capabilities:
    """What a target of this provider type, with these quirks, serving `model` can do."""
    rule = TYPE_CAPABILITIES.get(provider_type)
    base = rule(quirks if quirks is not None else Quirks()) if rule else Capabilities()
    return msgspec.structs.replace(
        base, context_window=context_window(model),
        max_output_tokens=quirks.max_tokens if quirks is not None else None)
