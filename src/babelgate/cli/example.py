"""The example configuration `babelgate init` writes (kept loadable: a test loads it)."""

EXAMPLE_CONFIG = """\
# babelgate configuration. Reference: docs/configuration.md
# ${VAR} and ${VAR:-default} expand from the environment in every string value; a ${VAR}
# that is not set stops start-up with its name, so remove the providers you do not use.

server:
  host: 127.0.0.1
  port: 8080

providers:
  # An OpenAI-compatible upstream; base_url includes /v1, as in the OpenAI SDK.
  deepseek:
    type: openai
    base_url: https://api.deepseek.com/v1
    api_key: ${DEEPSEEK_API_KEY}
    preset: deepseek        # openai, deepseek, kimi, glm, qwen, grok, siliconflow, openrouter,
                            # ollama, vllm, llamacpp, lmstudio
    # max_tokens: 8192      # clamp the client's max_tokens (the preset already does)
    # headers: {}           # extra headers sent upstream
    # timeout: 600          # seconds

  # An Anthropic Messages upstream; base_url without /v1.
  anthropic:
    type: anthropic
    base_url: https://api.anthropic.com
    api_key: ${ANTHROPIC_API_KEY}

  # Gemini's native API.
  gemini:
    type: gemini
    base_url: https://generativelanguage.googleapis.com
    api_key: ${GEMINI_API_KEY}

routes:
  # Client model name (exact, or a glob tried in this order) -> 'provider/model', or a list
  # of them tried in turn. A bare provider name keeps the client's own model name.
  "claude-*haiku*": gemini/gemini-2.5-flash
  "claude-*opus*": [deepseek/deepseek-reasoner, gemini/gemini-2.5-pro]
  "claude-*": anthropic
  default: deepseek/deepseek-chat
"""
