"""Claude Code's billing line, kept away from upstreams that are not Anthropic's.

Claude Code opens `system` with a block of its own, `x-anthropic-billing-header:
cc_version=...; cc_entrypoint=...;`: metadata for Anthropic's billing, not instructions for
a model. Sent as system text to another kind of upstream it pollutes the prompt (a small
local model echoed it back) and, when it changes between requests, breaks that provider's
prompt-prefix cache. An Anthropic-compatible upstream gets the request as the client sent it.
"""

from __future__ import annotations

from babelgate.canonical import Text
from babelgate.protocols.reuse import Reuse

PREFIX = "x-anthropic-billing-header:"


def without_billing_header(system: tuple[Text, ...], reuse: Reuse) -> tuple[Text, ...]:
    """`system` without Claude Code's billing block, when it begins with one; one prefix
    check otherwise. The shorter tuple is derived through the reuse table, so a session's
    resent system prompt stays one shared value, and what codecs derive from it (a rendered
    system message) is found again on the next turn."""
    if not system or not system[0].text.startswith(PREFIX):
        return system
    return reuse.derive(_rest, system)


def _rest(system: tuple[Text, ...]) -> tuple[Text, ...]:
    return system[1:]
