"""Turn the raw outputs of bench/run.sh into the Markdown results table.

`python bench/report.py RAW_DIR` reads, from RAW_DIR:
- tput-<body>-<target>-<round>.txt: wrk outputs at 32 connections (target: relay, babelgate,
  asgi when BENCH_ASGI ran the app under an ASGI server too, routing when BENCH_OPS ran it with
  routing's part of the operations alone, ops when BENCH_OPS ran it with
  its operations switched on and SQLite books, ops_pg with PostgreSQL books and Redis limits);
- lat-<body>-<target>.txt: wrk --latency outputs at concurrency 1 (target: direct, relay,
  babelgate, and routing, ops and ops_pg when BENCH_OPS ran them);
- mem-<target>.json: slow_streams.py outputs;
- meta.txt: `key=value` lines (date, machine, commit, versions, settings);
and prints the Markdown report. Missing files show as "-" so a partial run still reports what
it measured. Every wrk run that saw an error (non-2xx answer, socket error) is flagged next to
its number: a fast wrong answer is not a result.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

BODIES = [
    ("hello", '"Hello" (117 B)'),
    ("claude_code", "Claude Code (~50 KB)"),
    ("claude_code_stream", "Claude Code (~50 KB), streamed"),
    ("claude_code_distinct", "Claude Code (~50 KB), every request a new conversation"),
    ("codex", "Codex, Responses → Anthropic (~40 KB)"),
    ("codex_stream", "Codex, Responses → Anthropic (~40 KB), streamed"),
    ("chat_gemini", "Chat Completions → Gemini (~20 KB)"),
    ("chat_gemini_stream", "Chat Completions → Gemini (~20 KB), streamed"),
    ("gemini_cli", "Gemini CLI, Gemini API → Anthropic (~47 KB)"),
    ("gemini_cli_stream", "Gemini CLI, Gemini API → Anthropic (~47 KB), streamed"),
]
TARGET_RATIO = 0.5
TARGET_ADDED_MS = 1.0
TARGET_RSS_MB = 150

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Wrk:
    requests: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float | None = None
    errors: list[str] = field(default_factory=list)


def parse_wrk(text: str) -> Wrk:
    result = Wrk()
    if m := re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text):
        result.requests = int(m.group(1))
        scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
        result.seconds = float(m.group(2)) * scale
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        result.rate = float(m.group(1))
    if m := re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        result.p50_ms = float(m.group(1)) * _UNITS_MS[m.group(2)]
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.errors.append(f"{m.group(1)} non-2xx")
    if m := re.search(r"Socket errors: (.*)", text):
        counts = dict(re.findall(r"(\w+) (\d+)", m.group(1)))
        bad = {k: v for k, v in counts.items() if v != "0"}
        if bad:
            result.errors.append("socket errors " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    if not result.requests:
        result.errors.append("no result")
    return result


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def throughput(raw: Path, body: str, target: str) -> Wrk | None:
    """All measured rounds of one body and target, pooled: total requests / total time."""
    runs = [parse_wrk(p.read_text()) for p in sorted(raw.glob(f"tput-{body}-{target}-*.txt"))]
    if not runs:
        return None
    pooled = Wrk(requests=sum(r.requests for r in runs), seconds=sum(r.seconds for r in runs))
    pooled.rate = pooled.requests / pooled.seconds if pooled.seconds else 0.0
    pooled.errors = [e for r in runs for e in r.errors]
    return pooled


def _flag(run: Wrk | None) -> str:
    return f" ⚠ {'; '.join(run.errors)}" if run and run.errors else ""


def _rate(run: Wrk | None) -> str:
    return "-" if run is None else f"{run.rate:,.0f}{_flag(run)}"


def _verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def throughput_table(raw: Path) -> list[str]:
    lines = [
        "| body | bare relay req/s | babelgate req/s | babelgate / relay | target ≥ 50% |",
        "|---|---:|---:|---:|:---:|",
    ]
    for body, label in BODIES:
        relay = throughput(raw, body, "relay")
        gate = throughput(raw, body, "babelgate")
        ratio = verdict = "-"
        if relay and gate and relay.rate and not relay.errors:
            value = gate.rate / relay.rate
            ratio = f"{value:.0%}"
            verdict = _verdict(value >= TARGET_RATIO and not gate.errors)
        lines.append(f"| {label} | {_rate(relay)} | {_rate(gate)} | {ratio} | {verdict} |")
    return lines


def beside_table(raw: Path, target: str, name: str) -> list[str]:
    """A third target measured in the same rounds as the relay and babelgate (`asgi`: the app
    under an ASGI server, BENCH_ASGI; `ops`, `ops_pg`: babelgate with its operations switched
    on, BENCH_OPS), for the bodies it was run on, as a share of each."""
    lines = [
        f"| body | bare relay req/s | babelgate req/s | {name} req/s "
        f"| {name} / relay | {name} / babelgate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for body, label in BODIES:
        third = throughput(raw, body, target)
        if third is None:
            continue
        relay, gate = throughput(raw, body, "relay"), throughput(raw, body, "babelgate")
        cells = [f"{third.rate / run.rate:.0%}" if run and run.rate else "-"
                 for run in (relay, gate)]
        lines.append(f"| {label} | {_rate(relay)} | {_rate(gate)} | {_rate(third)} | "
                     + " | ".join(cells) + " |")
    return lines


# The operations targets' latency columns, when BENCH_OPS measured them (issue 9's target of
# at most 1 ms added holds with routing and the operations switched on too).
LATENCY_BESIDE = (("routing", "with routing"), ("keys", "with key + limits"),
                  ("keys_pg", "key + limits on PG + Redis"), ("ops", "with operations"),
                  ("ops_pg", "on PostgreSQL + Redis"))


def latency_table(raw: Path) -> list[str]:
    beside = [(target, name) for target, name in LATENCY_BESIDE
              if any(_latency(raw, body, target) for body, _ in BODIES)]
    gated = ["babelgate", *(target for target, _ in beside)]
    lines = [
        "| body | direct to nginx P50 | via bare relay P50 (added) | via babelgate P50 (added) "
        + "".join(f"| {name} P50 (added) " for _, name in beside)
        + "| target ≤ 1 ms added |",
        "|---|---:|---:|---:|" + "---:|" * len(beside) + ":---:|",
    ]
    for body, label in BODIES:
        targets = ("direct", "relay", *gated)
        runs = {t: _latency(raw, body, t) for t in targets}
        direct = runs["direct"]
        cells = []
        for target in targets:
            run = runs[target]
            if run is None or run.p50_ms is None:
                cells.append("-")
                continue
            text = f"{run.p50_ms:.3f} ms"
            if target != "direct" and direct and direct.p50_ms is not None:
                text += f" (+{run.p50_ms - direct.p50_ms:.3f} ms)"
            cells.append(text + _flag(run))
        # Every babelgate target measured on this body must meet the target.
        measured = [runs[t] for t in gated if runs[t] and runs[t].p50_ms is not None]
        verdict = "-"
        if measured and direct and direct.p50_ms is not None:
            verdict = _verdict(all(run.p50_ms - direct.p50_ms <= TARGET_ADDED_MS
                                   and not run.errors for run in measured))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def _latency(raw: Path, body: str, target: str) -> Wrk | None:
    text = _read(raw / f"lat-{body}-{target}.txt")
    return None if text is None else parse_wrk(text)


def memory_table(raw: Path, streams: str) -> list[str]:
    lines = [
        f"| process tree | idle RSS | RSS with {streams} open streams (settled) "
        "| peak while opening them | streams open / failed | target < 150 MB |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for target, label in (("babelgate", "babelgate"), ("relay", "bare relay (reference)")):
        text = _read(raw / f"mem-{target}.json")
        if not text:
            lines.append(f"| {label} | - | - | - | - | - |")
            continue
        m = json.loads(text)
        idle, busy = m["idle_kb"] / 1024, m["open_kb"] / 1024
        peak = m.get("peak_kb", m["open_kb"]) / 1024
        complete = m["opened"] == int(streams) and not m["failed"]
        verdict = _verdict(busy < TARGET_RSS_MB and complete) if target == "babelgate" else ""
        lines.append(f"| {label} | {idle:.1f} MB | {busy:.1f} MB | {peak:.1f} MB "
                     f"| {m['opened']} / {m['failed']} | {verdict} |")
    return lines


def report(raw: Path) -> str:
    meta = {}
    for line in (_read(raw / "meta.txt") or "").splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    out = [
        "# babelgate benchmark: latest run",
        "",
        f"- date: {meta.get('date', '?')}",
        f"- machine: {meta.get('machine', '?')}",
        f"- commit: {meta.get('commit', '?')}",
        f"- software: {meta.get('software', '?')}",
        f"- settings: {meta.get('settings', '?')}",
        "",
        "Paths: \"Hello\" and Claude Code are Anthropic Messages clients in front of an OpenAI "
        "Chat upstream; Codex is an OpenAI Responses client (store false) in front of an "
        "Anthropic upstream; the Chat Completions body goes to a Gemini upstream; Gemini CLI "
        "is a Gemini API client in front of an Anthropic upstream. The relay "
        "forwards each client body unchanged to the same canned nginx answer.",
        "",
        "Throughput (32 connections; babelgate and the relay each pinned to core 1, nginx and "
        "wrk to core 0; rounds alternate between the two):",
        "",
        *throughput_table(raw),
        "",
        *([f"The same app under an ASGI server ({meta['asgi']}, server/asgi.py; same core, "
           "same rounds):", "", *beside_table(raw, "asgi", "under " + meta["asgi"].split()[0]), ""]
          if meta.get("asgi") else []),
        *(["With routing's part of the operations alone (BENCH_OPS=routing: ten rules none of "
           "the bodies meets, two-target routes, retries and cooldowns; no key, books, daily "
           "log or metrics; same core, same rounds):", "",
           *beside_table(raw, "routing", "with routing"), ""]
          if meta.get("routing") else []),
        *(["With a gateway key, its limits and the usage books alone (BENCH_OPS=keys, issue "
           "10's words: a key with requests-, tokens- and concurrency limits and a daily "
           "budget, none of them reached, sent with every request; usage recorded in SQLite, "
           "as the plain gateway also records it; the plain routes, no rules, daily log or "
           "metrics; same core, same rounds):", "",
           *beside_table(raw, "keys", "with key + limits"), ""]
          if meta.get("keys") else []),
        *(["The same with the key and the usage books in PostgreSQL and the key's limits "
           "counted in Redis (BENCH_OPS=keys-pg; same core, same rounds):", "",
           *beside_table(raw, "keys_pg", "key + limits on PG + Redis"), ""]
          if meta.get("keys_pg") else []),
        *(["With operations switched on (BENCH_OPS: ten rules none of the bodies meets, "
           "two-target routes, retries and cooldowns, a gateway key with limits and a budget, "
           "usage books in SQLite, the daily log file and /metrics; same core, same rounds; "
           f"{meta.get('ops_requests', '?')} requests in the daily log):", "",
           *beside_table(raw, "ops", "with operations"), ""]
          if meta.get("ops") else []),
        *(["The same operations with the key and the usage books in PostgreSQL and the key's "
           "limits counted in Redis (BENCH_OPS=postgres: a throwaway database and an empty "
           "Redis database on the same machine; same core, same rounds; "
           f"{meta.get('ops_pg_requests', '?')} requests in the daily log, "
           f"{meta.get('pg_usage_rows', '?')} usage rows in PostgreSQL, keys-pg's with "
           "these):", "",
           *beside_table(raw, "ops_pg", "on PostgreSQL + Redis"), ""]
          if meta.get("ops_pg") else []),
        "Added latency (concurrency 1, P50 of wrk --latency; added = minus direct to nginx; the "
        "target holds for every babelgate column):",
        "",
        *latency_table(raw),
        "",
        "Memory (total RSS of the process tree; streams are Claude Code bodies against an "
        "upstream that trickles its answer):",
        "",
        *memory_table(raw, meta.get("streams", "1000")),
        "",
        "See docs/benchmark.md for what each number means.",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/report.py RAW_DIR")
    sys.stdout.write(report(Path(sys.argv[1])))
