"""The `babelgate` command line: `serve`, `init`, `keys`, `usage`, `claude`, `codex`,
`gemini`, `env`, `status`, `stop`, `doctor`, `service`, `--version`.

Promises: a configuration problem prints one clear message to stderr and exits 2 (no
traceback); nothing printed ever contains an api_key; the server package is imported only
when `serve` runs, so this module imports cleanly on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from babelgate import __version__
from babelgate.cli import launch
from babelgate.cli.doctor import add_doctor
from babelgate.cli.init import add_init
from babelgate.cli.keys import add_keys
from babelgate.cli.manage import add_manage
from babelgate.cli.service import add_service
from babelgate.cli.settings import EXIT_CONFIG, load_or_say, say, whole_number
from babelgate.cli.usage import add_usage
from babelgate.config import (
    NO_PROVIDER_HINT,
    ConfigError,
    Settings,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # also used for configuration errors, like a bad command line
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babelgate",
        description="A fast, self-hosted LLM API gateway: any coding agent on any model.",
    )
    parser.add_argument("--version", action="version", version=f"babelgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(commands)
    add_init(commands)
    add_keys(commands)
    add_usage(commands)
    _add_launchers(commands)
    add_manage(commands)
    add_doctor(commands)
    add_service(commands)
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Without --config it reads ./babelgate.yaml if present, "
        "else discovers providers from API-key environment variables.",
    )
    serve.add_argument("--config", metavar="FILE", help="path to babelgate.yaml")
    serve.add_argument("--host", help="address to listen on (default: config, else 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (default: config, else 8080)")
    serve.add_argument("--workers", type=whole_number("workers", 1), default=1, metavar="N",
                       help="processes serving the port together (SO_REUSEPORT); default 1")
    # Set by the supervisor of --workers on the processes it starts (server/workers.py).
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--limits-socket", help=argparse.SUPPRESS)
    serve.add_argument("--metrics-dir", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_serve)


LAUNCHERS = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI"}


def _add_launchers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Listed for --help only: main() hands `claude`/`codex`/`gemini` and everything after
    # it to cli/launch.py, since the agent's own options must pass through untouched.
    for name, title in LAUNCHERS.items():
        commands.add_parser(
            name,
            help=f"run {title} on babelgate",
            description=f"babelgate {name} [--url URL] [--config FILE] [--] [ARGS...]: run "
            f"{title} with ARGS against the gateway at --url, else the one answering at the "
            "configured address, else one started there in the background (it keeps "
            "running; `babelgate stop` stops it). Your own agent settings are not edited.",
        )


def _launcher(name: str) -> launch.Agent:
    if name == "gemini":
        from babelgate.cli.gemini import GEMINI

        return GEMINI
    from babelgate.cli.agents import CLAUDE, CODEX

    return CLAUDE if name == "claude" else CODEX


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {port}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] and args_list[0] in LAUNCHERS and not {"-h", "--help"} & set(
            args_list[1:2]):
        try:
            return launch.run(_launcher(args_list[0]), args_list[1:])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors exit from argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


# ---------------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    settings = load_or_say(args.config)
    if settings is None:
        return EXIT_CONFIG
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    if args.worker is None:  # a worker's supervisor said it already
        describe_settings(settings, sys.stderr)

    # Imported late so `babelgate --help`, `init` and config errors need no server stack.
    if args.workers > 1 and args.worker is None:
        from babelgate.server.workers import supervise

        command = [sys.executable, "-m", "babelgate", "serve", "--host", host,
                   "--port", str(port)]
        if args.config is not None:
            command += ["--config", args.config]
        return supervise(command, args.workers, host, port, settings.server.shutdown_timeout)

    from babelgate.server.run import serve

    try:
        if args.worker is None:
            # blocks until the server stops
            serve(settings, host, port, limits_socket=args.limits_socket)
        else:
            serve(settings, host, port, worker=args.worker, supervisor_fd=args.supervisor_fd,
                  limits_socket=args.limits_socket, metrics_dir=args.metrics_dir)
    except ConfigError as exc:  # found while building the app (a storage.url it cannot use)
        say(exc)
        return EXIT_CONFIG
    return EXIT_OK


def describe_settings(settings: Settings, out: TextIO) -> None:
    """A start-up summary: where the configuration came from and each provider, without
    credentials (only whether a key is present)."""
    if not settings.providers:
        print(f"babelgate: no provider configured. {NO_PROVIDER_HINT}", file=out)
        return
    print(f"babelgate: configuration from {settings.source}", file=out)
    for name, provider in settings.providers.items():
        extra = f", preset {provider.preset}" if provider.preset else ""
        sources = (provider.api_key, provider.api_keys, provider.api_key_file,
                   provider.api_key_command)
        key = "" if any(sources) else ", no api key"
        if provider.type == "claude-code":  # the CLI has its own login, or its `env`
            print(f"  provider {name}: claude-code {provider.binary}", file=out)
            continue
        print(f"  provider {name}: {provider.type} {provider.base_url}{extra}{key}", file=out)
    for pattern, targets in settings.routes.items():
        print(f"  route {pattern} -> {', '.join(targets)}", file=out)


if __name__ == "__main__":
    raise SystemExit(main())
