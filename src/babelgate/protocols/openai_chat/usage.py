"""Chat Completions usage <-> canonical Usage.

Chat's `prompt_tokens` INCLUDES cached tokens; canonical `input_tokens` excludes them. The
cached count is `prompt_tokens_details.cached_tokens` (OpenAI and most compatibles),
`prompt_cache_hit_tokens` (DeepSeek) or a top-level `cached_tokens` (Moonshot/Kimi).
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import JSON, Usage


def parse_usage(usage: JSON) -> Usage:
    prompt = _int(usage.get("prompt_tokens"))
    cached = _cached(usage)
    details = usage.get("completion_tokens_details")
    reasoning = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=_int(usage.get("completion_tokens")),
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _cached(usage: JSON) -> int:
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens"):
        return _int(details["cached_tokens"])
    if usage.get("prompt_cache_hit_tokens"):
        return _int(usage["prompt_cache_hit_tokens"])
    return _int(usage.get("cached_tokens"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def render_usage(usage: Usage) -> JSON:
    prompt = usage.prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
