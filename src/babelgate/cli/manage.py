"""`babelgate env AGENT [--json]`, `babelgate status [--json]`, `babelgate stop [--json]`: the
manual setup and the background gateway that the launchers start (cli/background.py).

What it promises: `status` exits 0 when the background gateway runs and answers /health,
1 otherwise, and prints its URL, pid, configuration and uptime (a table, or one JSON
object with --json); `stop` sends the recorded gateway SIGTERM, waits for its graceful
shutdown (a spinner on stderr meanwhile), and exits 0 (also when none was running, saying
so); `env` prints shell lines (and for Codex a config.toml snippet) for the gateway at --url,
else the configured address; with --json the same settings as one object. No --json output
holds a key: the agent's key is always the `${BABELGATE_KEY:-babelgate}` reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from babelgate.cli.background import Background, configured_url, health

AGENTS = ("claude", "codex", "gemini")


def add_manage(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = commands.add_parser(
        "env", help="print the settings that point an agent at babelgate",
        description="Print the environment (and for Codex the config.toml snippet) that "
        "points AGENT at the gateway, for starting it without `babelgate AGENT`.")
    env.add_argument("agent", choices=AGENTS)
    env.add_argument("--url", help="the gateway (default: the configured address)")
    env.add_argument("--config", metavar="FILE", help="path to babelgate.yaml")
    env.add_argument("--json", action="store_true",
                     help="one JSON object: variables to set and unset, agent settings")
    env.set_defaults(handler=_env)

    status = commands.add_parser(
        "status", help="is the background gateway running",
        description="Show the background gateway started by `babelgate claude|codex|"
        "gemini`: URL, pid, configuration, uptime. Exit status 0 when it runs.")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)

    stop = commands.add_parser(
        "stop", help="stop the background gateway",
        description="Stop the background gateway a launcher started (SIGTERM, then wait "
        "for its graceful shutdown).")
    stop.add_argument("--json", action="store_true", help="one JSON object")
    stop.set_defaults(handler=_stop)


def _env(args: argparse.Namespace) -> int:
    from babelgate.cli.agents import env_document, env_text

    url = args.url.rstrip("/") if args.url else configured_url(args.config)
    if url is None:
        print("babelgate env: the configuration does not load; pass --url", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(env_document(args.agent, url)))
    else:
        sys.stdout.write(env_text(args.agent, url))
    return 0


def status_document(background: Background) -> dict[str, Any]:
    record = background.record()
    if record is None or not record.alive():
        return {"running": False, "log": str(background.log_path)}
    answer = health(record.url)
    return {
        "running": answer is not None,
        "url": record.url,
        "pid": record.pid,
        "config": (answer or {}).get("config", record.config),
        "uptime_s": (answer or {}).get("uptime_s", round(time.time() - record.started, 1)),
        "version": (answer or {}).get("version"),
        "healthy": answer is not None,
        "log": str(background.log_path),
    }


def _status(args: argparse.Namespace) -> int:
    doc = status_document(Background())
    if args.json:
        print(json.dumps(doc))
    elif "pid" not in doc:
        print(f"babelgate: no background gateway running (log: {doc['log']})")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, title="background gateway")
        state = "running" if doc["healthy"] else "not answering /health"
        for name, value in (("state", state), ("url", doc["url"]), ("pid", doc["pid"]),
                            ("config", doc["config"]), ("uptime", f"{doc['uptime_s']} s"),
                            ("log", doc["log"])):
            table.add_row(name, str(value))
        Console().print(table)
    return 0 if doc["running"] else 1


def _stop(args: argparse.Namespace) -> int:
    from rich.console import Console

    # Its graceful shutdown lets open requests finish: seconds, at worst STOP_TIMEOUT.
    with Console(stderr=True).status("stopping the background gateway"):
        record = Background().stop()
    if args.json:
        print(json.dumps({"stopped": record is not None,
                          **({"url": record.url, "pid": record.pid} if record else {})}))
    elif record is None:
        print("babelgate: no background gateway running")
    else:
        print(f"babelgate: stopped the gateway at {record.url} (pid {record.pid})")
    return 0
