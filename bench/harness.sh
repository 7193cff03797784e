# Shared set-up for the single-gateway bench tools (profile.sh, server_instructions.sh):
# sourced, not run. Expects ROOT, PY and BODY set; defines ENDPOINT, WORK (removed on exit
# with everything started in PIDS), the bodies in $WORK/bodies, the canned nginx upstream
# (started by start_upstream, its port for BODY in UP) and the gateway's configuration
# ($WORK/gw.yaml, written by write_gateway_config) with a free port P_GW.
case $BODY in
    hello|claude_code|claude_code_stream|claude_code_distinct) ENDPOINT=/v1/messages ;;
    codex|codex_stream) ENDPOINT=/v1/responses ;;
    chat_gemini|chat_gemini_stream) ENDPOINT=/v1/chat/completions ;;
    # Gemini's model and streaming choice are in the path (bodies.py GEMINI_CLI_MODEL).
    gemini_cli) ENDPOINT=/v1beta/models/gemini-2.5-flash:generateContent ;;
    gemini_cli_stream) ENDPOINT=/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse ;;
    *) echo "unknown body $BODY" >&2; exit 2 ;;
esac
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
    echo "run bench/run.sh once first (installs nginx and wrk)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/babelgate-bench-tool.XXXXXX)
chmod 755 "$WORK"  # nginx's workers read the bodies here
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "${BENCH_REF:-}" ]; then  # that ref's committed src/ first on the path
    mkdir -p "$WORK/ref"
    git -C "$ROOT" archive "$BENCH_REF" src | tar -x -C "$WORK/ref"
    export PYTHONPATH="$WORK/ref/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" "$ROOT/bench/bodies.py" "$WORK/bodies" >/dev/null
model_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$1"; }
read -r P_JSON P_SSE P_SLOW P_GW <<<"$("$PY" -c '
import socket; s=[socket.socket() for _ in range(4)]; [x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"
UP=$P_JSON; case $BODY in *_stream) UP=$P_SSE ;; esac

start_upstream() {  # [taskset prefix...]: the canned nginx upstream, in the background
    sed -e "s#@WORK@#$WORK#g" -e "s/@PORT_JSON@/$P_JSON/" -e "s/@PORT_SSE@/$P_SSE/" \
        -e "s/@PORT_SLOW@/$P_SLOW/" -e "s/@SLOW_RATE@/32/" "$ROOT/bench/nginx.conf" \
        >"$WORK/nginx.conf"
    "$@" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
        >"$WORK/nginx.log" 2>&1 &
    PIDS+=($!)
}

# shellcheck source=bench/ops.sh
. "$ROOT/bench/ops.sh"  # BENCH_OPS=1: the operations bench/run.sh's ops columns switch on

write_gateway_config() {  # the three upstream types on UP, routed as bench/run.sh does
    local chat_model
    chat_model=$(model_of "$WORK/bodies/chat_gemini.json")
    CODEX_MODEL=$(model_of "$WORK/bodies/codex.json") CHAT_MODEL=$chat_model
    ANTHROPIC_MODEL=$(model_of "$WORK/bodies/upstream/anthropic.json")
    GEMINI_CLI_MODEL=gemini-2.5-flash  # bodies.py GEMINI_CLI_MODEL, as ENDPOINT above
    if [ -n "${BENCH_OPS:-}" ]; then  # bench/run.sh's `ops` target, SQLite (`routing`: its
        # `routing` target, the rules, two-target routes, retries and cooldowns alone)
        {
            echo "providers:"
            echo "  up: {type: openai, base_url: http://127.0.0.1:$UP/v1, api_key: k}"
            echo "  anth: {type: anthropic, base_url: http://127.0.0.1:$UP, api_key: k}"
            echo "  gem: {type: gemini, base_url: http://127.0.0.1:$UP, api_key: k}"
            echo "routes:"
            ops_routes
            if [ "$BENCH_OPS" = routing ]; then routing_sections; else ops_sections "$WORK/logs"; fi
            echo "storage: {path: $WORK/gw.db}"
            if [ -n "${BENCH_EXTRA:-}" ]; then printf '%s\n' "${BENCH_EXTRA//LOGDIR/$WORK/logs}"; fi
        } >"$WORK/gw.yaml"
        return
    fi
    {
        echo "providers:"
        echo "  up: {type: openai, base_url: http://127.0.0.1:$UP/v1, api_key: k}"
        echo "  anth: {type: anthropic, base_url: http://127.0.0.1:$UP, api_key: k}"
        echo "  gem: {type: gemini, base_url: http://127.0.0.1:$UP, api_key: k}"
        echo "routes:"
        echo "  $CODEX_MODEL: anth/$ANTHROPIC_MODEL"
        echo "  $chat_model: gem/$chat_model"
        echo "  $GEMINI_CLI_MODEL: anth/$ANTHROPIC_MODEL"
        # BENCH_FALLBACK=1: the default route gets a second target (never reached: the first
        # answers), as a fallback list costs on every request.
        echo "  default: ${BENCH_FALLBACK:+[}up/canned-model${BENCH_FALLBACK:+, anth/canned-model]}"
        echo "storage: {path: $WORK/gw.db}"  # stored state and usage rows: not in \$HOME
        if [ -n "${BENCH_RULES:-}" ]; then ten_rules; fi
        # BENCH_EXTRA: more top-level YAML for the gateway, e.g. to count the daily log and
        # the metrics: BENCH_EXTRA=$'logs: {dir: LOGDIR}\nmetrics: true' (LOGDIR: a
        # directory in the bench's own temporary one).
        if [ -n "${BENCH_EXTRA:-}" ]; then printf '%s\n' "${BENCH_EXTRA//LOGDIR/$WORK/logs}"; fi
    } >"$WORK/gw.yaml"
}

ten_rules() {  # BENCH_RULES=1: ten rules that none of the bench's bodies meet (the cost of
    # checking them on every request; docs/benchmark.md), costly conditions included
    cat <<'YAML'
rules:
  - {if: {background: true}, to: up/small}
  - {if: {image: true}, to: gem/vision}
  - {if: {long_context: 1000000}, to: gem/long}
  - {if: {web_search: true, user_agent: "Nobody*"}, to: gem/search}
  - {if: {user_agent: "CherryStudio*"}, system_prepend: "You are helpful.", set: {temperature: 0.3}}
  - {if: {header: {x-team: batch}}, max_tokens: 1024}
  - {if: {model: "gpt-4o*"}, to: up/gpt-4o}
  - {if: {model: "o3*", thinking: true}, to: up/o3}
  - {if: {tools: false, model: "claude-*"}, remove: [metadata]}
  - {if: {model: "never-*"}, set: {temperature: 0}}
YAML
}
