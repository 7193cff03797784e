"""One launcher for every agent: `babelgate claude|codex|gemini [--url URL] [--config FILE]
[--] [ARGS...]`.

What it promises:
- The gateway: `--url` names a running one; without it, a babelgate answering /health at the
  configured address (server.host/port, 127.0.0.1:8080 by default) is used; else one is
  started there in the background (cli/background.py: detached, its log and pid file in the
  data directory), and it keeps running after the agent exits so the next launch is
  instant. `babelgate stop` stops it.
- A gateway that answers but has no provider while this configuration has some (one started
  before the key was set, such as `make run` in another terminal) is not used silently: the
  launchers' own background gateway is restarted with this configuration (nobody can be
  using a gateway that serves nothing); any other is reported with how to stop it, and the
  launch ends with status 1. One whose providers differ otherwise is used, with a warning.
- The agent (an `Agent`: Claude Code, Codex, Gemini CLI) is found at $BABELGATE_<NAME>_BIN,
  else on PATH, and gets ARGS unchanged plus the settings that point it at the gateway;
  the key it sends is $BABELGATE_KEY (a gateway key) when set, else a placeholder.
- An agent that needs no files of ours replaces this process (exec), so signals and the
  exit code are its own; one that needs a temporary home runs as a child, the home is
  removed after it exits, and its exit code is returned.
- Options of ours are read only before the first other argument.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babelgate.cli.background import Background, health, url_for

PLACEHOLDER_KEY = "babelgate"
EXIT_USAGE = 2


@dataclass
class LauncherArgs:
    url: str | None = None
    config: str | None = None
    agent_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Launch:
    """What an agent is started with: its arguments after the binary, and its environment."""

    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Agent:
    """How one agent is pointed at the gateway. `prepare(url, key, home, args, env)` gives
    its launch; `home` is a temporary directory when `needs_home`, else None."""

    name: str  # the command: `babelgate NAME`, the binary NAME
    title: str
    install_hint: str
    prepare: Callable[[str, str, Path | None, tuple[str, ...], Mapping[str, str]], Launch]
    needs_home: bool = False

    @property
    def bin_var(self) -> str:
        return f"BABELGATE_{self.name.upper()}_BIN"

    def binary(self) -> str | None:
        return os.environ.get(self.bin_var) or shutil.which(self.name)


def split_args(argv: Sequence[str]) -> LauncherArgs:
    """Our options (`--url`, `--config`, each with a value or `=value`), then `--` or the
    first argument that is not ours: from there on, everything is the agent's."""
    args = LauncherArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        name, eq, value = arg.partition("=")
        if name not in ("--url", "--config"):
            break
        if not eq:
            if i + 1 >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[i + 1]
            i += 1
        setattr(args, name[2:], value)
        i += 1
    args.agent_args = tuple(argv[i:])
    return args


def gateway_key(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("BABELGATE_KEY") or PLACEHOLDER_KEY


def find_or_start_gateway(args: LauncherArgs, who: str) -> str | None:
    """The gateway's URL (see the module doc); None after saying on stderr why there is none."""
    if args.url:
        return args.url.rstrip("/")
    from babelgate.config import DEFAULT_CONFIG_FILE, ConfigError, load_settings

    config = args.config
    if config is None and Path(DEFAULT_CONFIG_FILE).is_file():
        config = DEFAULT_CONFIG_FILE  # named, so the detached gateway keeps reading this one
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"babelgate {who}: configuration error: {exc}", file=sys.stderr)
        return None
    host, port = settings.server.host, settings.server.port
    url = url_for(host, port)
    background = Background()
    running = health(url)
    if running is not None:
        verdict = judge_running(running, set(settings.providers), background, url)
        if verdict.message:
            print(f"babelgate {who}: {verdict.message}", file=sys.stderr)
        if verdict.action != "restart":
            return url if verdict.action == "use" else None
        background.stop()  # ours, and serving nothing: started again below
    else:
        print(f"babelgate {who}: starting the gateway in the background at {url} "
              f"(`babelgate stop` stops it)", file=sys.stderr)
    from rich.console import Console

    with Console(stderr=True).status("waiting for the gateway to answer /health"):
        problem = background.start(config, url, host, port)
    if problem is not None:
        print(f"babelgate {who}: {problem}", file=sys.stderr)
        return None
    return url


@dataclass(frozen=True)
class Verdict:
    """What to do with a gateway that already answers at the configured address."""

    action: str  # "use", "restart" (the launchers' own, serving nothing) or "refuse"
    message: str = ""


def judge_running(running: Mapping[str, object], wanted: set[str], background: Background,
                  url: str) -> Verdict:
    """Compare the /health of the gateway answering at `url` with the providers this launch's
    configuration names (see the module doc for the rules)."""
    listed = running.get("providers")
    names = {str(p.get("name")) for p in listed if isinstance(p, dict)} \
        if isinstance(listed, list) else set()
    if names == wanted or not wanted:
        return Verdict("use")
    where = running.get("config") or "unknown"
    if not names:
        record = background.record()
        if record is not None and record.url == url and record.pid == running.get("pid"):
            return Verdict("restart", f"the background gateway at {url} has no provider "
                           f"(it started before any was configured); restarting it with "
                           f"{', '.join(sorted(wanted))}")
        return Verdict("refuse", (
            f"the gateway answering at {url} has no provider (configuration: {where}; it "
            f"was started before your key or babelgate.yaml was there), so every request "
            f"would fail. Stop it (Ctrl-C where `make run` or `babelgate serve` runs, or end "
            f"pid {running.get('pid')}) and run this again, or name another with --url."))
    return Verdict("use", (
        f"note: the gateway at {url} serves {', '.join(sorted(names))} "
        f"(configuration: {where}), not {', '.join(sorted(wanted))} as configured here; "
        f"using it (stop it to have this configuration served)"))


def run(agent: Agent, argv: Sequence[str]) -> int:
    """`babelgate AGENT ...`; returns the exit code (or does not return, having exec'd)."""
    who = agent.name
    try:
        args = split_args(argv)
    except ValueError as exc:
        print(f"babelgate {who}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    binary = agent.binary()
    if not binary:
        print(f"babelgate {who}: {agent.title} not found: install it ({agent.install_hint}) "
              f"or set {agent.bin_var}", file=sys.stderr)
        return 1
    url = find_or_start_gateway(args, who)
    if url is None:
        return 1
    key = gateway_key()
    if not agent.needs_home:
        launch = agent.prepare(url, key, None, args.agent_args, os.environ)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(binary, [binary, *launch.args], launch.env)
    with tempfile.TemporaryDirectory(prefix=f"babelgate-{who}-") as session:
        launch = agent.prepare(url, key, Path(session), args.agent_args, os.environ)
        return run_child([binary, *launch.args], launch.env)


def run_child(command: list[str], env: dict[str, str]) -> int:
    """The agent in the foreground. Ctrl-C reaches it (same process group); we wait for it
    rather than die first and leave its temporary home behind. A SIGTERM to us is passed
    on to it, and we still clean up after it exits."""
    process = subprocess.Popen(command, env=env)

    def pass_on(signum: int, frame: object) -> None:
        process.send_signal(signum)

    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, pass_on)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
