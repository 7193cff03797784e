#!/usr/bin/env bash
# Profile the gateway under load: where does a request's time go?
#
#   bash bench/profile.sh [BODY] [SECONDS]
#
# BODY: hello | claude_code | claude_code_stream (Anthropic client, OpenAI upstream)
#       | codex | codex_stream (Responses client, Anthropic upstream)
#       | chat_gemini | chat_gemini_stream (Chat Completions client, Gemini upstream)
#       | gemini_cli | gemini_cli_stream (Gemini API client, Anthropic upstream)
# BENCH_REF=HEAD profiles that ref's committed src/ instead of the working tree (as run.sh).
#
# Starts the canned nginx upstream (core 0) and one babelgate (core 1), loads it with wrk at 32
# connections, records it with py-spy (installed into the venv when missing), and prints the
# functions with the most self and inclusive time (bench/hotspots.py). py-spy sees Python
# frames only: time inside orjson, uvloop or httptools is charged to the Python function that
# called them, and a garbage collection to the function whose allocation triggered it.
# Everything it starts it stops; the raw profile is kept in bench/results/profile-BODY.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
BODY=${1:-claude_code}
SECONDS_=${2:-10}
[ -x "$ROOT/.venv/bin/py-spy" ] || "$PY" -m pip install -q py-spy
# shellcheck source=bench/harness.sh
. "$ROOT/bench/harness.sh"
start_upstream taskset -c 0
write_gateway_config
taskset -c 1 "$PY" -m babelgate serve --config "$WORK/gw.yaml" --host 127.0.0.1 --port "$P_GW" \
    >"$WORK/gw.log" 2>&1 &
GW=$!
PIDS+=($GW)
URL="http://127.0.0.1:$P_GW$ENDPOINT"
for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST --data-binary "@$WORK/bodies/$BODY.json" \
        -H 'content-type: application/json' "$URL")" = 200 ] && break
    sleep 0.1
done

taskset -c 0 wrk -t2 -c32 -d2s -s "$ROOT/bench/post.lua" "$URL" -- "$WORK/bodies/$BODY.json" >/dev/null
taskset -c 0 wrk -t2 -c32 -d"$((SECONDS_ + 3))s" -s "$ROOT/bench/post.lua" "$URL" \
    -- "$WORK/bodies/$BODY.json" >"$WORK/wrk.txt" &
WRK=$!
PIDS+=($WRK)
sleep 1
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/profile-$BODY.txt"
taskset -c 0 "$ROOT/.venv/bin/py-spy" record -p "$GW" -d "$SECONDS_" -r 250 -f raw -o "$OUT" \
    >/dev/null 2>&1
wait "$WRK" || true
echo "load: $(grep -E 'Requests/sec' "$WORK/wrk.txt") (slowed by sampling)"
"$PY" "$ROOT/bench/hotspots.py" "$OUT" 25
