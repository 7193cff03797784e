#!/usr/bin/env bash
# System calls the gateway's event loop makes per request, under strace, against the canned
# nginx upstream: the count of reads, writes and event-loop turns (epoll_pwait) a request
# costs, which instructions (bench/server_instructions.sh) do not show. Reads and writes repeat
# exactly; loop turns (epoll_pwait) move by ~0.2 a request with when timers fall.
#
#   bash bench/server_syscalls.sh BODY [N]     (N measured requests, default 400; ~10 s)
#
# BODY as for bench/server_instructions.sh. One client sends WARM (300) new turns of BODY's
# conversation one at a time, then N more while `strace -c` counts, and prints calls per
# request, most first. Only the main thread (the event loop, where every request runs) is
# counted; BENCH_THREADS=1 adds the others (the usage writer's SQLite inserts, batched every
# half second, so their share depends on timing). BENCH_REF=HEAD counts that ref's src/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
BODY=${1:?usage: bench/server_syscalls.sh BODY [N]}
N=${2:-400}
WARM=${WARM:-300}
command -v strace >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
}
# shellcheck source=bench/harness.sh
. "$ROOT/bench/harness.sh"
start_upstream
write_gateway_config
"$PY" -m babelgate serve --config "$WORK/gw.yaml" --host 127.0.0.1 --port "$P_GW" \
    >"$WORK/gw.log" 2>&1 &
GW=$!
PIDS+=($GW)
cat >"$WORK/drive.py" <<'PY'
import http.client, sys, time
port, path, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
first, count = int(sys.argv[4]), int(sys.argv[5])
for _ in range(300):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/health"); conn.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
for turn in range(first, first + count):
    conn.request("POST", path, body=body.replace(b"@turn@", b"%d" % turn), headers=headers)
    answer = conn.getresponse(); data = answer.read()
    assert answer.status == 200, data[:300]
PY
"$PY" "$WORK/drive.py" "$P_GW" "$ENDPOINT" "$WORK/bodies/$BODY.json" 0 "$WARM"
FOLLOW=() WHO="event-loop thread"
if [ -n "${BENCH_THREADS:-}" ]; then FOLLOW=(-f) WHO="all threads"; fi
strace -c "${FOLLOW[@]}" -p "$GW" -o "$WORK/strace.txt" 2>/dev/null &
TRACER=$!
sleep 1  # attached
"$PY" "$WORK/drive.py" "$P_GW" "$ENDPOINT" "$WORK/bodies/$BODY.json" 100000 "$N"
kill -INT "$TRACER"
wait "$TRACER" || true
echo "$BODY: system calls per request ($WHO, $N requests, ${BENCH_REF:-working tree})"
# strace -c's columns: % time, seconds, usecs/call, calls, [errors,] syscall
awk -v n="$N" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ { printf "  %-14s %6.2f\n", $NF, $4 / n }' \
    "$WORK/strace.txt" | sort -k2 -nr | awk '$2 >= 0.01'
