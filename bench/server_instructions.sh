#!/usr/bin/env bash
# Instructions the whole gateway process spends per request (server, HTTP client, event loop
# and translation), under callgrind, against the canned nginx upstream: what
# bench/instructions.sh leaves out. Repeatable to ~1%, where wall-clock figures move 10-20%.
#
#   bash bench/server_instructions.sh BODY [N]    (N measured requests, default 200; ~1 min)
#
# BODY: hello | claude_code | claude_code_stream | claude_code_distinct | codex | codex_stream |
# chat_gemini | chat_gemini_stream | gemini_cli | gemini_cli_stream (claude_code_distinct: every request a conversation of its
# own, nothing large found again). One client sends WARM (300) new turns of BODY's conversation first, one
# at a time, then N more while callgrind counts; prints instructions per request and the C
# functions with the most (Python code shows as the interpreter's eval loop). Needs nginx
# (bench/run.sh installs it) and valgrind (installed with apt if missing). BENCH_REF=HEAD
# measures that ref's committed src/ instead of the working tree. BENCH_SERVER=uvicorn counts
# the app under uvicorn through the ASGI adapter (server/asgi.py) instead of our own server.
# BENCH_EXTRA adds gateway settings (bench/harness.sh), BENCH_SCRAPE=1 reads /metrics once
# after the N requests, inside the count: the logs and metrics on are counted with
#   BENCH_EXTRA=$'logs: {dir: LOGDIR}\nmetrics: true' BENCH_SCRAPE=1 bash bench/server_instructions.sh BODY
# BENCH_KEY=plain|limited: every request carries a gateway key made for the run (plain: no
# limits; limited: requests and tokens a minute, concurrency and a daily budget, all far from
# reached); BENCH_REDIS=URL adds `redis:` (the limits counted in Redis). Loopback only.
# BENCH_OPS=1 counts bench/run.sh's `ops` target (bench/ops.sh: ten rules none of the bodies
# meets, two-target routes, retries and cooldowns, the daily log, /metrics, usage books in
# SQLite, and its gateway key with limits far from reached), with BENCH_SCRAPE=1 (BENCH_EXTRA
# is added to it too); BENCH_OPS=routing counts bench/run.sh's `routing` target instead (the
# same rules, two-target routes, retries and cooldowns; no key, logs, metrics or scrape).
# Work done on a timer (the keys' refresh every 0.5 s, the daily log's hand-off, the access
# log's flush) happens ~50 times as often per request under callgrind as at full speed: read docs/benchmark.md "What operations cost per request" before comparing.
# BENCH_HOSTED=1 counts the limits as a worker of `serve --workers N` does without Redis: in a
# supervisor's count server (limits/hosted.py) started beside it, over its unix socket.
# BENCH_FIRST=0 numbers the measured requests from 0, as the warm-up's were: each body is then
# sent a second time, WARM requests after its first (what a replay, or a bench that starts its
# numbers again on every run, sends; the reuse table keeps a piece on its second sight).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
BODY=${1:?usage: bench/server_instructions.sh BODY [N]}
N=${2:-200}
WARM=${WARM:-300}
command -v valgrind >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
# shellcheck source=bench/harness.sh
. "$ROOT/bench/harness.sh"
start_upstream
write_gateway_config
if [ -n "${BENCH_REDIS:-}" ]; then echo "redis: $BENCH_REDIS" >>"$WORK/gw.yaml"; fi
BENCH_KEY_VALUE=""
if [ -n "${BENCH_OPS:-}" ] && [ "$BENCH_OPS" != routing ]; then  # BENCH_SCRAPE= : none
    BENCH_KEY=${BENCH_KEY:-ops} BENCH_SCRAPE=${BENCH_SCRAPE-1}
fi
case ${BENCH_KEY:-} in
    "") ;;
    ops) BENCH_KEY_VALUE=$(ops_key "$WORK/gw.yaml") ;;
    plain) BENCH_KEY_VALUE=$("$PY" -m babelgate keys create bench --config "$WORK/gw.yaml") ;;
    limited) BENCH_KEY_VALUE=$("$PY" -m babelgate keys create bench --rpm 100000000 \
        --tpm 100000000000 --concurrency 100 --budget 1000000 --per day \
        --config "$WORK/gw.yaml") ;;
    *) echo "BENCH_KEY: plain, limited or ops" >&2; exit 2 ;;
esac
export BENCH_KEY_VALUE
HOSTED=()
if [ -n "${BENCH_HOSTED:-}" ]; then
    "$PY" -c 'import asyncio, sys
from babelgate.limits.hosted import CountServer
async def main():
    server = CountServer(); await server.start(); print(server.path, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())' >"$WORK/hosted.path" &
    PIDS+=($!)
    for _ in $(seq 50); do [ -s "$WORK/hosted.path" ] && break; sleep 0.1; done
    HOSTED=(--limits-socket "$(cat "$WORK/hosted.path")")
fi
case ${BENCH_SERVER:-own} in
    own) SERVE=(-m babelgate serve --config "$WORK/gw.yaml" --host 127.0.0.1 --port "$P_GW"
                "${HOSTED[@]}") ;;
    uvicorn) SERVE=(-m uvicorn --factory babelgate.server.asgi:app_factory --host 127.0.0.1
                    --port "$P_GW" --loop uvloop --http httptools --no-access-log
                    --log-level warning) ;;
    *) echo "BENCH_SERVER: own or uvicorn" >&2; exit 2 ;;
esac
BABELGATE_CONFIG="$WORK/gw.yaml" valgrind --tool=callgrind \
    --callgrind-out-file="$WORK/cg.out" "$PY" "${SERVE[@]}" >"$WORK/gw.log" 2>&1 &
GW=$!
PIDS+=($GW)
cat >"$WORK/drive.py" <<'PY'
import http.client, os, sys, time
port, path, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
first, count = int(sys.argv[4]), int(sys.argv[5])
for _ in range(600):  # the gateway starts slowly under valgrind
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/health"); conn.getresponse().read(); break
    except OSError:
        time.sleep(0.5)
headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
if os.environ.get("BENCH_KEY_VALUE"):
    headers["x-api-key"] = os.environ["BENCH_KEY_VALUE"]
for turn in range(first, first + count):
    conn.request("POST", path, body=body.replace(b"@turn@", b"%d" % turn), headers=headers)
    answer = conn.getresponse(); data = answer.read()
    assert answer.status == 200, data[:300]
PY
"$PY" "$WORK/drive.py" "$P_GW" "$ENDPOINT" "$WORK/bodies/$BODY.json" 0 "$WARM"
scrape() {
    "$PY" -c 'import os, sys, urllib.request as u
key = os.environ.get("BENCH_KEY_VALUE")  # with keys, /metrics wants one too
u.urlopen(u.Request(sys.argv[1], headers={"x-api-key": key} if key else {})).read()' \
        "http://127.0.0.1:$P_GW/metrics"
    sleep 1  # the daily log's writer thread empties its queue meanwhile
}
if [ -n "${BENCH_SCRAPE:-}" ]; then scrape; fi  # the warm-up's records folded outside the count
callgrind_control -z "$GW" >/dev/null
"$PY" "$WORK/drive.py" "$P_GW" "$ENDPOINT" "$WORK/bodies/$BODY.json" "${BENCH_FIRST:-100000}" "$N"
if [ -n "${BENCH_SCRAPE:-}" ]; then scrape; fi  # one scrape counted with the N requests
callgrind_control -d "$GW" >/dev/null
sleep 1
DUMP=$(ls -t "$WORK"/cg.out.* | head -1)
# BENCH_KEEP=FILE keeps the profile (e.g. for callgrind_annotate --inclusive=yes FILE).
if [ -n "${BENCH_KEEP:-}" ]; then cp "$DUMP" "$BENCH_KEEP"; fi
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$BODY: $((TOTAL / N)) instructions per request (whole gateway process, ${BENCH_SERVER:-own} server, $N requests)"
callgrind_annotate --threshold=100 --auto=no "$DUMP" 2>/dev/null \
    | awk '/file:function/ { on = 1; next } on && NF' | grep -v "(100.0%)\|(100.1%)" | head -15
