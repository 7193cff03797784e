#!/usr/bin/env bash
# Profile the gateway under load: where does a request's time go?
#
#   bash bench/profile.sh [BODY] [SECONDS]
#
# BODY: hello | claude_code | claude_code_stream (Anthropic client, OpenAI upstream)
#       | codex | codex_stream (Responses client, Anthropic upstream)
#       | chat_gemini | chat_gemini_stream (Chat Completions client, Gemini upstream)
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
case $BODY in
    hello|claude_code|claude_code_stream) ENDPOINT=/v1/messages ;;
    codex|codex_stream) ENDPOINT=/v1/responses ;;
    chat_gemini|chat_gemini_stream) ENDPOINT=/v1/chat/completions ;;
    *) echo "unknown body $BODY" >&2; exit 2 ;;
esac
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "run bench/run.sh once first (installs nginx and wrk)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$ROOT/.venv/bin/py-spy" ] || "$PY" -m pip install -q py-spy

WORK=$(mktemp -d /tmp/babelgate-profile.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${BENCH_REF:-}" ]; then
    mkdir -p "$WORK/ref"
    git -C "$ROOT" archive "$BENCH_REF" src | tar -x -C "$WORK/ref"
    export PYTHONPATH="$WORK/ref/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" "$ROOT/bench/bodies.py" "$WORK/bodies" >/dev/null
model_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$1"; }
read -r P_JSON P_SSE P_SLOW P_GW <<<"$("$PY" -c '
import socket; s=[socket.socket() for _ in range(4)]; [x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"
sed -e "s#@WORK@#$WORK#g" -e "s/@PORT_JSON@/$P_JSON/" -e "s/@PORT_SSE@/$P_SSE/" \
    -e "s/@PORT_SLOW@/$P_SLOW/" -e "s/@SLOW_RATE@/32/" "$ROOT/bench/nginx.conf" >"$WORK/nginx.conf"
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
    >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
UP=$P_JSON; case $BODY in *_stream) UP=$P_SSE ;; esac
CHAT_MODEL=$(model_of "$WORK/bodies/chat_gemini.json")
{
    echo "providers:"
    echo "  up: {type: openai, base_url: http://127.0.0.1:$UP/v1, api_key: k}"
    echo "  anth: {type: anthropic, base_url: http://127.0.0.1:$UP, api_key: k}"
    echo "  gem: {type: gemini, base_url: http://127.0.0.1:$UP, api_key: k}"
    echo "routes:"
    echo "  $(model_of "$WORK/bodies/codex.json"): anth/$(model_of "$WORK/bodies/upstream/anthropic.json")"
    echo "  $CHAT_MODEL: gem/$CHAT_MODEL"
    echo "  default: up/canned-model"
} >"$WORK/gw.yaml"
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
