#!/usr/bin/env bash
# Instructions the gateway's in-process work costs per request, per benchmark body: the
# repeatable yardstick for a change to the hot path (wall-clock figures on a shared machine
# move 10-20% from run to run; these move by less than 0.5%).
#
#   bash bench/instructions.sh [BODY ...]      (default: the six large bodies; ~15 s each)
#
# Runs bench/pipeline.py under valgrind (installed with apt if missing) with 0 and with 100
# turns and prints the difference / 100. Compare two commits by running it in each checkout.
# BENCH_UNTIL=loads|parse|render stops each request after that stage (reading the body as
# the gateway does, which for a body the typed reader takes includes parsing it;
# parse_request; render_request and its serialising): the differences between such counts
# are the stages' instructions. BENCH_GC=gateway collects garbage as the gateway does;
# BENCH_WARM sets the warm-up turns (3); BENCH_REUSE_MB sizes the reuse table as
# server.reuse_mb does (0: off).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
TURNS=100
command -v valgrind >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
WORK=$(mktemp -d /tmp/babelgate-instructions.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
"$PY" "$ROOT/bench/bodies.py" "$WORK/bodies" >/dev/null
count() {  # count BODY TURNS: total instructions of one run
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$PY" "$ROOT/bench/pipeline.py" "$WORK/bodies" "$1" "$2" 2>&1 \
        | awk '/I *refs/ { gsub(",", "", $4); print $4 }'
}
bodies=("$@")
[ ${#bodies[@]} -eq 0 ] && bodies=(claude_code claude_code_stream codex codex_stream chat_gemini chat_gemini_stream)
echo "| body | instructions per request |"
echo "|---|---:|"
for body in "${bodies[@]}"; do
    base=$(count "$body" 0)
    full=$(count "$body" "$TURNS")
    printf '| %s | %s |\n' "$body" "$(( (full - base) / TURNS ))"
done
