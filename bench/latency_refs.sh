#!/usr/bin/env bash
# Added latency at concurrency 1 of several git refs side by side, interleaved: what
# bench/run.sh's latency part measures, for comparing commits on a shared, loaded machine,
# where two whole runs minutes apart differ by more than the change looked for.
#
#   bash bench/latency_refs.sh BODY [REF...]     (refs default: HEAD and the working tree, ".")
#
# Starts the canned nginx upstream and, per ref, one gateway with that ref's committed src/
# ("." is the working tree), the gateway pinned to core 1 and nginx and wrk to core 0 as in
# bench/run.sh. Then ROUNDS (5) rounds of LATENCY (3) seconds of wrk -c1 --latency per ref,
# the order rotated each round, and prints each round's P50 and the median over rounds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
BODY=${1:?usage: bench/latency_refs.sh BODY [REF...]}
shift
REFS=("$@")
[ ${#REFS[@]} -gt 0 ] || REFS=(HEAD .)
ROUNDS=${ROUNDS:-5}
LATENCY=${LATENCY:-3}
# shellcheck source=bench/harness.sh
. "$ROOT/bench/harness.sh"
start_upstream taskset -c 0
write_gateway_config
PORTS=()
for i in "${!REFS[@]}"; do
    ref=${REFS[$i]}
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    src=$ROOT/src
    if [ "$ref" != . ]; then
        mkdir -p "$WORK/ref$i"
        git -C "$ROOT" archive "$ref" src | tar -x -C "$WORK/ref$i"
        src=$WORK/ref$i/src
    fi
    PYTHONPATH=$src taskset -c 1 "$PY" -m babelgate serve --config "$WORK/gw.yaml" \
        --host 127.0.0.1 --port "$port" >"$WORK/gw$i.log" 2>&1 &
    PIDS+=($!)
    PORTS+=("$port")
done
for port in "${PORTS[@]}"; do
    for _ in $(seq 150); do
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST -H 'content-type: application/json' \
            --data-binary "@$WORK/bodies/$BODY.json" "http://127.0.0.1:$port$ENDPOINT")" = 200 ] && break
        sleep 0.1
    done
done
p50() {  # wrk's --latency 50% line, in ms
    awk '$1 == "50%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 }
        else if (v ~ /ms$/) { sub(/ms/, "", v) } else { sub(/s$/, "", v); v *= 1000 }
        printf "%.3f\n", v }' "$1"
}
declare -A ALL
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    n=${#REFS[@]}
    for k in $(seq 0 $((n - 1))); do
        i=$(( (k + round) % n ))
        url="http://127.0.0.1:${PORTS[$i]}$ENDPOINT"
        taskset -c 0 wrk -t1 -c1 -d1s -s "$ROOT/bench/post.lua" "$url" -- "$WORK/bodies/$BODY.json" >/dev/null
        taskset -c 0 wrk -t1 -c1 -d"${LATENCY}s" --latency -s "$ROOT/bench/post.lua" "$url" \
            -- "$WORK/bodies/$BODY.json" >"$WORK/lat.txt"
        ALL[$i]+="$(p50 "$WORK/lat.txt") "
    done
    for i in "${!REFS[@]}"; do line+="  ${REFS[$i]} $(echo "${ALL[$i]}" | awk '{print $NF}')"; done
    echo "$line"
done
for i in "${!REFS[@]}"; do
    echo "$BODY ${REFS[$i]}: P50 per round ${ALL[$i]}-> median $(echo "${ALL[$i]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms"
done
