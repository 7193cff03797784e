"""Quirks presets: what differs between upstreams that speak the same wire protocol.

`PRESETS` names the OpenAI-compatible services babelgate knows (a provider's `preset:` in
babelgate.yaml); `DEFAULT_QUIRKS` holds the reference behaviour of each provider `type` when no
preset is given. Values are plain data, fixed at import; configuration may only override the
`max_tokens` clamp (`provider_quirks` builds a provider's Quirks from its settings). Each
preset names only what differs from the `Quirks` defaults (a plain OpenAI-compatible Chat
server: `max_tokens`, `reasoning_effort`, `reasoning_content`, strict about fields).

Every non-obvious value says where it comes from. The rules applied:
- `max_tokens` is a clamp, set only where the provider documents a hard output limit that
  clients such as Claude Code (which asks for 32k and more) would exceed.
- `strict_fields=False` only where the service is known to ignore fields it does not define.
- `echo_reasoning=True` where the service needs (or reads) the assistant's reasoning back on
  later turns, so multi-turn tool use keeps working.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from babelgate.protocols.base import Quirks

DEFAULT_QUIRKS: dict[str, Quirks] = {
    # OpenAI itself: reasoning models (o-series, gpt-5) reject `max_tokens` and want
    # `max_completion_tokens`; the API rejects unknown fields ("Unrecognized request argument
    # supplied"); documents travel as `file` parts.
    "openai": Quirks(
        max_tokens_field="max_completion_tokens",
        reasoning_control="reasoning_effort",
        strict_fields=True,
        documents=True,
        system_anywhere=True,
    ),
    # Anthropic Messages: thinking is native; PDFs are `document` blocks; unknown fields are
    # rejected ("Extra inputs are not permitted"). Chat-only fields below are unused.
    # auto_cache: clients of other protocols cannot mark cache breakpoints, and Anthropic
    # caches nothing unmarked (the gateway marks tools, system and the newest turn).
    "anthropic": Quirks(
        reasoning_control="none", documents=True, strict_fields=True, auto_cache=True
    ),
    # Gemini: thinking via generationConfig.thinkingConfig (the codec's business); PDFs via
    # inlineData; unknown JSON names are rejected ("Invalid JSON payload received").
    "gemini": Quirks(reasoning_control="none", documents=True, strict_fields=True),
    # OpenAI Responses: `reasoning.effort`, `max_output_tokens`, `input_file`; strict like Chat.
    "openai-responses": Quirks(
        reasoning_control="reasoning_effort", documents=True, strict_fields=True
    ),
}

# `type: openai` without a preset at another address than OpenAI's: an OpenAI-compatible server
# we know nothing more of (llama.cpp, LM Studio, a company proxy). Only what every such server
# reads: the limit as `max_tokens` (llama-cpp-python's server ignores max_completion_tokens,
# and its model generated past the clamp), no reasoning control (none it declares), system
# messages folded into the first, and only fields the Chat API defines.
OPENAI_COMPATIBLE = Quirks(reasoning_control="none")

# Hosts where `type: openai` without a preset is OpenAI itself.
OPENAI_HOSTS = frozenset({"api.openai.com"})

PRESETS: dict[str, Quirks] = {
    # OpenAI itself, for a provider at another address that serves exactly OpenAI's API (a
    # relay, a proxy in front of it): `max_completion_tokens`, `reasoning_effort`, system
    # messages anywhere.
    "openai": DEFAULT_QUIRKS["openai"],
    # DeepSeek (api-docs.deepseek.com): deepseek-chat's documented max output is 8K
    # (pricing page: "MAX OUTPUT TOKENS 8K"); a larger max_tokens is rejected, so clamp.
    # Thinking: `thinking: {type: enabled|disabled}` (guides/thinking_mode) on V3.1+ and the
    # reasoner model. Reasoning arrives in `reasoning_content`, and on tool-call turns it
    # must be sent back on every later request or the API answers 400 ("Missing
    # reasoning_content field"). No image input on the OpenAI-compatible API. Unknown
    # fields are tolerated (the docs say unsupported sampling fields are ignored).
    "deepseek": Quirks(
        max_tokens=8192,
        reasoning_control="thinking",
        echo_reasoning=True,
        images=False,
        strict_fields=False,
    ),
    # Moonshot Kimi (platform.moonshot.ai, "Using thinking models"): kimi-k2.5/k2.6 switch
    # thinking with `thinking: {type: enabled|disabled}`; kimi-k2-thinking always thinks.
    # Reasoning is `reasoning_content`, and Moonshot asks to keep it in the context for
    # multi-step tool use (omitting it on tool-call turns gives 400 on K2 thinking models).
    # Unknown top-level fields are ignored. 256K-token models: no clamp needed.
    "kimi": Quirks(
        reasoning_control="thinking",
        echo_reasoning=True,
        strict_fields=False,
    ),
    # Zhipu GLM (docs.bigmodel.cn, GLM-4.5 page): thinking via `thinking.type`
    # enabled|disabled; max output 96K (no clamp). Reasoning is `reasoning_content`; echoing
    # it is not required but keeps interleaved thinking coherent and is accepted. GLM's
    # endpoint does not document `stream_options` (other SDKs strip it; usage arrives on the
    # last chunk anyway), so we do not send it. Only `max_tokens` is documented.
    "glm": Quirks(
        reasoning_control="thinking",
        echo_reasoning=True,
        stream_usage=False,
        strict_fields=False,
    ),
    # Alibaba Qwen on DashScope compatible-mode: `enable_thinking` (+ `thinking_budget`) are
    # non-standard top-level fields (Model Studio docs: "pass via extra_body"); reasoning is
    # `reasoning_content`; `stream_options.include_usage` is supported.
    "qwen": Quirks(
        reasoning_control="enable_thinking",
        strict_fields=False,
    ),
    # xAI Grok: `reasoning_effort` (grok-3-mini: low|high; grok-4.x adds none|medium);
    # reasoning text in `reasoning_content`. Whether xAI ignores unknown fields is
    # unverified, so stay strict and send only what the Chat API defines.
    "grok": Quirks(),
    # SiliconFlow (docs.siliconflow.cn, chat-completions): `enable_thinking` and
    # `thinking_budget` (128..32768); reasoning in `reasoning_content`. It hosts DeepSeek
    # V3.x and Kimi K2 thinking models, which need their reasoning echoed on tool-call turns;
    # other models ignore the field. Its max_tokens default is 4096 but the limit is per
    # model, so no clamp.
    "siliconflow": Quirks(
        reasoning_control="enable_thinking",
        echo_reasoning=True,
        strict_fields=False,
    ),
    # OpenRouter (openrouter.ai/docs, "Reasoning Tokens"): `reasoning: {effort | max_tokens,
    # exclude, enabled}`; reasoning text in the `reasoning` field of messages and deltas.
    # It accepts `reasoning` back on assistant messages and forwards it to models that need
    # it (DeepSeek, Kimi). Normalises parameters across providers, so tolerant of extras.
    "openrouter": Quirks(
        reasoning_control="reasoning",
        reasoning_field="reasoning",
        echo_reasoning=True,
        strict_fields=False,
    ),
    # Ollama's OpenAI layer (ollama/ollama openai/openai.go): request has `max_tokens` only
    # (no max_completion_tokens), `reasoning_effort` and `stream_options`; messages carry
    # `reasoning`, which it also reads back from history into the model's thinking. Go's
    # JSON decoding ignores unknown fields.
    "ollama": Quirks(
        reasoning_field="reasoning",
        echo_reasoning=True,
        strict_fields=False,
    ),
    # vLLM (docs.vllm.ai, "Reasoning Outputs"): thinking toggled through
    # `chat_template_kwargs` (Qwen3 `enable_thinking`, DeepSeek-V3.1 `thinking`); the output
    # field is `reasoning` since v0.11 (formerly `reasoning_content`). Extra request fields
    # are accepted (logged, not rejected).
    "vllm": Quirks(
        reasoning_control="chat_template_kwargs",
        reasoning_field="reasoning",
        strict_fields=False,
    ),
    # llama.cpp's server (`llama-server`) and llama-cpp-python's: `max_tokens` (the latter
    # ignores max_completion_tokens); no reasoning switch in the request (`--reasoning-format`
    # is a server flag), reasoning text in `reasoning_content` when the server extracts it;
    # unknown request fields are ignored. Their chat templates take one leading system message.
    "llamacpp": Quirks(
        reasoning_control="none",
        strict_fields=False,
    ),
    # LM Studio's OpenAI-compatible server (lmstudio.ai/docs, "OpenAI Compatibility"):
    # `max_tokens`, reasoning returned in `reasoning_content` (its "separate reasoning" setting),
    # no request-side reasoning control; unknown fields are ignored. Models run their own chat
    # templates, which mostly take one leading system message.
    "lmstudio": Quirks(
        reasoning_control="none",
        strict_fields=False,
    ),
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def provider_quirks(
    provider_type: str, preset: str | None, max_tokens: int | None, base_url: str = ""
) -> Quirks:
    """A provider's Quirks: its preset's, else its type's defaults (for `type: openai` at an
    address other than OpenAI's, OPENAI_COMPATIBLE's), with the `max_tokens` clamp from its
    configuration when set. Built once per provider, at start-up."""
    if preset:
        quirks = PRESETS[preset]
    elif provider_type == "openai" and urlsplit(base_url).hostname not in OPENAI_HOSTS:
        quirks = OPENAI_COMPATIBLE
    else:
        quirks = DEFAULT_QUIRKS[provider_type]
    if max_tokens is not None:
        quirks = msgspec.structs.replace(quirks, max_tokens=max_tokens)
    return quirks
