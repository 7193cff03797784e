"""The text of the babelgate.yaml that `babelgate init` writes: the chosen providers (keys as
`${VAR}`), routes for the chosen agents' model names, and comments saying what each part does.
Pure functions of the answers, so what a user chose is what the file says."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from babelgate.config import url_variable

if TYPE_CHECKING:
    from babelgate.config import _EnvProvider

# What can serve models locally: babelgate presets, or "other" (no preset: the plain
# OpenAI-compatible behaviour).
LOCAL_KINDS = ("ollama", "llamacpp", "lmstudio", "vllm", "other")
LOCAL_TITLES = {"ollama": "Ollama", "llamacpp": "llama.cpp", "lmstudio": "LM Studio",
                "vllm": "vLLM", "other": "OpenAI-compatible"}
# Agents ask for up to 32k tokens and more; a small local model's context cannot give that,
# and some servers then generate to their context limit.
LOCAL_MAX_TOKENS = 4096


@dataclass(frozen=True)
class Choice:
    """A provider reached with a key from one environment variable."""

    name: str
    title: str
    spec: _EnvProvider
    key_found: bool  # its variable was set when init ran


@dataclass(frozen=True)
class Local:
    """A local OpenAI-compatible model server (no key)."""

    kind: str  # one of LOCAL_KINDS
    url: str  # its OpenAI-compatible base, /v1 included
    model: str


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def render(agents: tuple[str, ...], providers: tuple[Choice, ...], local: Local | None,
           primary: str | None) -> str:
    from babelgate.cli.init import AGENTS

    titles = [AGENTS[a] for a in agents]
    used_by = (", ".join(titles[:-1]) + " and " + titles[-1]) if len(titles) > 1 else (
        titles[0] if titles else "any client")
    lines = [
        f"# babelgate configuration, written by `babelgate init` for {used_by}.",
        "# Reference: docs/configuration.md. Check it with `babelgate doctor`.",
        "# ${VAR} is read from the environment when babelgate starts, so keys stay out of this",
        "# file. A ${VAR} that is not set stops start-up, naming it; ${VAR:-default} gives a",
        "# default. The gateway applies edits to this file while it runs.",
        "",
        "server:",
        "  host: 127.0.0.1",
        "  port: 8080",
        "",
    ]
    lines += _providers(providers, local)
    lines += ["", *_routes(agents, providers, local, primary)]
    return "\n".join(lines) + "\n"


def _providers(providers: tuple[Choice, ...], local: Local | None) -> list[str]:
    chosen = {p.name for p in providers}
    lines = ["providers:" if providers or local else "providers: {}  # none yet: see below"]
    for choice in providers:
        spec = choice.spec
        found = " (set when init ran)" if choice.key_found else " (set it before starting)"
        lines += [
            f"  # {choice.title}: the key comes from {spec.variable}{found}.",
            f"  # {url_variable(choice.name)}, when set, replaces the address.",
            f"  {choice.name}:",
            f"    type: {spec.type}",
            f"    base_url: ${{{url_variable(choice.name)}:-{spec.base_url}}}",
            f"    api_key: ${{{spec.variable}}}",
        ]
        if spec.preset:
            lines.append(f"    preset: {spec.preset}  # what differs from plain {spec.type}")
        lines.append("    # max_tokens: 8192  # a clamp on what clients ask for")
    if local is not None:
        lines += [
            f"  # A local {LOCAL_TITLES[local.kind]} server, no key. max_tokens clamps what agents",
            "  # ask for (Claude Code asks for 32000), more than a small local model can give.",
            "  local:",
            "    type: openai",
            f"    base_url: {_q(local.url)}",
        ]
        if local.kind != "other":
            lines.append(f"    preset: {local.kind}")
        lines.append(f"    max_tokens: {LOCAL_MAX_TOKENS}")
    others = [spec for name, spec in _keyed().items() if name not in chosen]
    if others:
        lines += ["", "  # Other providers babelgate knows: uncomment one (under `providers:`),",
                  "  # set its variable, and add routes to it."]
        lines += [f"  # {spec.name}: {{type: {spec.type}, base_url: {_q(spec.base_url)}, "
                  f"api_key: \"${{{spec.variable}}}\""
                  + (f", preset: {spec.preset}}}" if spec.preset else "}")
                  for spec in others]
    return lines


def _keyed() -> dict[str, _EnvProvider]:
    from babelgate.cli.init import KEYED

    return KEYED


def _routes(agents: tuple[str, ...], providers: tuple[Choice, ...], local: Local | None,
            primary: str | None) -> list[str]:
    if primary is None:
        return ["routes: {}  # client model name -> provider/model, once there is a provider"]

    def model(kind: str) -> str:
        if primary == "local" and local is not None:
            return f"local/{local.model}"
        return f"{primary}/{_keyed()[primary].models[kind]}"

    lines = ["# Client model name (exact, or a glob tried in this order) -> provider/model;",
             "# a bare provider name keeps the client's own model name.", "routes:"]
    taken: set[str] = set()
    for comment, pairs in _agent_routes(agents, {p.name for p in providers}, model):
        lines.append(f"  # {comment}")
        for pattern, target in pairs:
            taken.add(pattern)
            lines.append(f"  {_q(pattern)}: {_q(target)}")
    own = [(pattern, p.name) for p in providers for pattern in p.spec.own_names
           if pattern not in taken]
    if own:
        lines.append("  # Each provider's own model names go to it.")
        lines += [f"  {_q(pattern)}: {_q(name)}" for pattern, name in own]
    lines += ["  # Everything else.", f"  default: {_q(model('default'))}"]
    return lines


Routes = list[tuple[str, list[tuple[str, str]]]]


def _agent_routes(agents: tuple[str, ...], chosen: set[str],
                  model: Callable[[str], str]) -> Routes:
    """(comment, [(pattern, target)]) for the model names each chosen agent asks for: to the
    provider of that family when chosen, else to the default provider's matching model."""
    found: Routes = []
    if "claude" in agents:
        pairs = ([("claude-*", "anthropic")] if "anthropic" in chosen else
                 [("claude-*haiku*", model("haiku")), ("claude-*opus*", model("opus")),
                  ("claude-*", model("sonnet"))])
        found.append(("Claude Code asks for claude-* models, by family.", pairs))
    if "codex" in agents:
        target = "openai" if "openai" in chosen else model("default")
        found.append(("Codex asks for gpt-* and codex-* models.",
                      [("gpt-*", target), ("codex-*", target)]))
    if "gemini" in agents:
        found.append(("Gemini CLI asks for gemini-* models.",
                      [("gemini-*", "gemini" if "gemini" in chosen else model("default"))]))
    return found
