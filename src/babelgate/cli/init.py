"""`babelgate init [--path FILE] [--force] [--yes] [--agents ...] [--providers ...] [--json]`:
a commented babelgate.yaml for the agents and providers the user picks, then `doctor` on it.

What it promises:
- Questions (agents, then providers, a local model server, the default provider) are read
  from standard input, so a terminal, a pipe or a script can answer them; `--yes` takes every
  default without asking: all three agents, the providers whose keys are in the environment.
- Keys are never written: each provider's key is `${VAR}`, read when the gateway starts.
  The written file loads with the real loader once those variables are set.
- An existing file is replaced only after a yes to the question, or with `--force`.
- After writing, it offers to run `doctor` on the file (`--yes` runs it; `--no-doctor`
  does not). The exit status says whether the file was written (0) or not (1); doctor's
  verdict is in what it prints (and in --json's "doctor"), and `babelgate doctor` alone
  gives it as an exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from babelgate.cli.init_yaml import LOCAL_KINDS, Choice, Local, render
from babelgate.config import DEFAULT_CONFIG_FILE, ENV_PROVIDERS, ollama_v1_url

AGENTS = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI"}
# Providers reached with a key from one environment variable (Ollama is a local server).
KEYED = {spec.name: spec for spec in ENV_PROVIDERS if spec.name != "ollama"}
TITLES = {"anthropic": "Anthropic", "openai": "OpenAI", "gemini": "Google Gemini",
          "deepseek": "DeepSeek", "kimi": "Moonshot Kimi", "glm": "Zhipu GLM",
          "grok": "xAI Grok", "openrouter": "OpenRouter", "siliconflow": "SiliconFlow"}


class Aborted(Exception):
    """The questions could not be answered (input ended) or the user declined."""


def add_init(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init", help="write a babelgate.yaml for your agents and providers",
        description="Ask which agents (Claude Code, Codex, Gemini CLI) and providers to use "
        "(offering those whose keys are in the environment), write a commented babelgate.yaml "
        "that reads each key from its ${VAR}, then offer to run `babelgate doctor` on it.")
    init.add_argument("--path", default=DEFAULT_CONFIG_FILE,
                      help=f"where to write it ({DEFAULT_CONFIG_FILE})")
    init.add_argument("--force", action="store_true", help="replace an existing file unasked")
    init.add_argument("-y", "--yes", action="store_true",
                      help="ask nothing: every agent, the providers whose keys are set, "
                      "then run doctor")
    init.add_argument("--agents", type=_names(AGENTS), metavar="LIST",
                      help=f"comma-separated, instead of asking ({','.join(AGENTS)})")
    init.add_argument("--providers", type=_names(KEYED), metavar="LIST",
                      help=f"comma-separated, instead of asking ({','.join(KEYED)})")
    init.add_argument("--no-doctor", action="store_true", help="do not run doctor afterwards")
    init.add_argument("--json", action="store_true",
                      help="ask nothing (as --yes) and print one JSON summary")
    init.set_defaults(handler=run)


def _names(known: Mapping[str, Any]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n for n in text.replace(" ", ",").split(",") if n)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (known: {', '.join(known)})")
        return names
    return parse


# ---------------------------------------------------------------------------- questions


@dataclass
class Asker:
    """Questions on `out`, answers from `answers`; with `yes`, every default, unasked."""

    yes: bool
    answers: TextIO = field(default_factory=lambda: sys.stdin)
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def text(self, question: str, default: str = "") -> str:
        if self.yes:
            return default
        shown = f" [{default}]" if default else ""
        self.out.write(f"{question}{shown}: ")
        self.out.flush()
        line = self.answers.readline()
        if not line:
            raise Aborted("input ended before every question was answered (--yes takes "
                          "the defaults)")
        return line.strip() or default

    def yes_no(self, question: str, default: bool) -> bool:
        while True:
            answer = self.text(f"{question} {'[Y/n]' if default else '[y/N]'}").lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self.out.write("  please answer y or n\n")

    def pick(self, question: str, options: Sequence[str], default: str) -> str:
        while True:
            answer = self.text(f"{question} ({'/'.join(options)})", default)
            if answer in options:
                return answer
            self.out.write(f"  one of: {', '.join(options)}\n")

    def names(self, question: str, options: Sequence[str]) -> tuple[str, ...]:
        while True:
            answer = self.text(f"{question} ({', '.join(options)}; empty for none)")
            names = tuple(n for n in answer.replace(" ", ",").split(",") if n)
            unknown = [n for n in names if n not in options]
            if not unknown:
                return names
            self.out.write(f"  unknown: {', '.join(unknown)}\n")


def ask_agents(ask: Asker, given: tuple[str, ...] | None) -> tuple[str, ...]:
    if given is not None:
        return given
    if not ask.yes:
        ask.out.write("Which agents will use babelgate?\n")
    return tuple(name for name, title in AGENTS.items() if ask.yes_no(f"  {title}?", True))


def ask_providers(ask: Asker, given: tuple[str, ...] | None,
                  env: Mapping[str, str]) -> tuple[Choice, ...]:
    found = [name for name, spec in KEYED.items() if env.get(spec.variable, "").strip()]
    if given is not None:
        names = given
    else:
        if not ask.yes:
            ask.out.write("Providers (keys are read from the environment, never written):\n")
        names = tuple(name for name in found
                      if ask.yes_no(f"  {KEYED[name].variable} is set: use {TITLES[name]}?",
                                    True))
        others = [name for name in KEYED if name not in found]
        if others and not ask.yes:
            names += ask.names("  Other providers, whose keys you will set later", others)
    return tuple(Choice(name, TITLES[name], KEYED[name], name in found) for name in names)


def ask_local(ask: Asker, env: Mapping[str, str]) -> Local | None:
    ollama = env.get("OLLAMA_BASE_URL", "").strip()
    default = ollama_v1_url(ollama) if ollama else ""
    url = ask.text("A local model server (Ollama, llama.cpp, LM Studio, vLLM): its URL, "
                   "empty for none", default)
    if not url:
        return None
    kind = ask.pick("  What serves it", LOCAL_KINDS, "ollama" if ollama else "other")
    model = ""
    while not model:
        model = ask.text("  The model name to ask it for",
                         "qwen3-coder" if kind == "ollama" else "")
    return Local(kind, ollama_v1_url(url) if kind == "ollama" else url.rstrip("/"), model)


def ask_primary(ask: Asker, providers: tuple[Choice, ...], local: Local | None) -> str | None:
    names = [p.name for p in providers] + (["local"] if local else [])
    if len(names) <= 1:
        return names[0] if names else None
    # A provider whose key is set beats one still to be set.
    ready = [p.name for p in providers if p.key_found] + (["local"] if local else [])
    return ask.pick("Which one answers by default", names, (ready or names)[0])


# ---------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None,
        ask: Asker | None = None) -> int:
    env = os.environ if env is None else env
    quiet = args.yes or args.json
    ask = ask or Asker(yes=quiet, out=sys.stderr if args.json else sys.stdout)
    path = Path(args.path)
    try:
        if path.exists() and not args.force and (
                quiet or not ask.yes_no(f"{path} exists. Replace it?", False)):
            raise Aborted(f"{path} already exists; use --force to replace it")
        agents = ask_agents(ask, args.agents)
        providers = ask_providers(ask, args.providers, env)
        local = ask_local(ask, env)
        primary = ask_primary(ask, providers, local)
    except Aborted as exc:
        print(f"babelgate init: {exc}", file=sys.stderr)
        return 1
    text = render(agents, providers, local, primary)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"babelgate init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    unset = [p.spec.variable for p in providers if not env.get(p.spec.variable, "").strip()]
    summary: dict[str, Any] = {
        "path": str(path), "agents": list(agents), "providers": [p.name for p in providers]
        + (["local"] if local else []), "default": primary, "unset": unset, "doctor": None}
    if not args.json:
        _tell(path, agents, summary, sys.stdout)
    if primary is not None and not args.no_doctor and (
            quiet or _ask_doctor(ask, unset)):
        _doctor(path, args.json, summary)
    if args.json:
        print(json.dumps(summary))
    return 0


def _ask_doctor(ask: Asker, unset: list[str]) -> bool:
    if unset:
        return False  # it could only say the variables are unset, which was just said
    try:
        return ask.yes_no("Check the providers now with `babelgate doctor`?", True)
    except Aborted:
        return False


def _doctor(path: Path, as_json: bool, summary: dict[str, Any]) -> None:
    from babelgate.cli import doctor
    from babelgate.config import ConfigError

    if not as_json:
        doctor.run(str(path))
        return
    try:
        summary["doctor"] = doctor.check(str(path)).to_json()
    except ConfigError as exc:
        summary["doctor"] = doctor.config_failure(exc)


def _tell(path: Path, agents: tuple[str, ...], summary: dict[str, Any], out: TextIO) -> None:
    chosen = ", ".join(summary["providers"]) or "none"
    out.write(f"babelgate: wrote {path} (providers: {chosen})\n")
    if not summary["providers"]:
        out.write("  no provider yet: set a provider's key (DEEPSEEK_API_KEY, "
                  "ANTHROPIC_API_KEY, ...) and run `babelgate init` again, or uncomment one "
                  f"in {path}\n")
    for variable in summary["unset"]:
        out.write(f"  set {variable} before starting the gateway\n")
    config = "" if str(path) == DEFAULT_CONFIG_FILE else f" --config {path}"
    out.write(f"  start the gateway: babelgate serve{config}\n")
    for agent in agents:
        out.write(f"  or {AGENTS[agent]} on it: babelgate {agent}{config}\n")
