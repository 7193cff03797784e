"""Strict fake upstreams for babelgate's tests: one aiohttp server per wire protocol.

    async with FakeAnthropic() as fake:
        fake.queue(Reply(text="hi"), Reply(tool_calls=[ToolCall("Bash", {"command": "ls"})]))
        ...  # point the gateway at fake.base_url; then inspect fake.requests

See core.py for `Reply` and the server machinery; each protocol module says what it enforces.
"""

from .anthropic import FakeAnthropic
from .core import (
    Conversation,
    FakeUpstream,
    RecordedRequest,
    Reply,
    ToolCall,
    Usage,
    brain,
    sign,
)
from .gemini import FakeGemini
from .openai_chat import FakeOpenAI
from .responses import FakeResponses

FAKES: dict[str, type[FakeUpstream]] = {
    "openai": FakeOpenAI,
    "anthropic": FakeAnthropic,
    "gemini": FakeGemini,
    "openai-responses": FakeResponses,
}

__all__ = [
    "FAKES",
    "Conversation",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakeResponses",
    "FakeUpstream",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "Usage",
    "brain",
    "sign",
]
