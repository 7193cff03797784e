#!/usr/bin/env bash
# babelgate's benchmark: throughput, added latency and memory against the bare Python relay,
# on a canned nginx upstream. See docs/benchmark.md for what the numbers mean.
#
#   bash bench/run.sh            (or: make bench)
#
# Writes bench/results/latest.md and prints it. Everything it starts it stops (trap), and the
# whole run is bounded by BENCH_DEADLINE seconds (default 330; 600 with BENCH_OPS, whose third
# target makes each body's round half as long again). Ten bodies (four
# Anthropic-client bodies to an OpenAI upstream, one of them a new conversation on every
# request, Codex's Responses body to an Anthropic upstream, a Chat Completions body to a
# Gemini upstream, Gemini CLI's body to an Anthropic upstream, each streamed and not) make
# the defaults short. Knobs, all optional:
#   BENCH_DURATION   measured seconds per target and body, split over BENCH_ROUNDS rounds (6)
#   BENCH_ROUNDS     rounds per body, each visiting the targets in the order opposite to the
#                    one before (2); more, shorter rounds spread the machine's drift evenly
#                    over the targets compared
#   BENCH_WARMUP     warm-up seconds per target and body before measuring (2)
#   BENCH_LATENCY    seconds per concurrency-1 latency run (3)
#   BENCH_STREAMS    concurrent slow streams for the memory test (1000)
#   BENCH_CONNECTIONS  wrk connections for throughput (32)
#   BENCH_REF        measure this git ref's committed src/ (e.g. HEAD) instead of the working
#                    tree, which others may be editing; the harness in bench/ is the working one
#   BENCH_BODIES     the bodies measured (all eight; a subset for a quick look)
#   BENCH_ASGI       uvicorn or granian: also measure the app under that ASGI server
#                    (server/asgi.py) on BENCH_ASGI_BODIES (hello claude_code claude_code_stream)
#   BENCH_OPS        1 (or sqlite): also measure babelgate with its operations switched on (ten
#                    rules that none of the bodies meets, two-target routes, retries and
#                    cooldowns, a gateway key with limits and a budget, usage books in SQLite,
#                    the daily log file and /metrics) on BENCH_OPS_BODIES (all of them);
#                    postgres: the same with the key and the books in PostgreSQL (a throwaway
#                    database on BENCH_PG, created and dropped) and the key's limits counted in
#                    Redis (BENCH_REDIS_HOST, an empty database there, emptied after), its own
#                    target; routing: routing's part alone (the rules, two-target routes,
#                    retries and cooldowns; no key, books, daily log or metrics), its own
#                    target; keys: issue 10's words, a gateway key with limits and a budget
#                    and usage recording in SQLite, nothing else (the plain routes, no rules,
#                    daily log or metrics), its own target; keys-pg: the same with the key
#                    and books in PostgreSQL and the limits in Redis; words combine
#                    ("routing keys keys-pg sqlite postgres": all five)
#   BENCH_PG         PostgreSQL server for BENCH_OPS=postgres, trust auth
#                    (postgresql://postgres@127.0.0.1:5432)
#   BENCH_REDIS_HOST Redis for BENCH_OPS=postgres (redis://127.0.0.1:6379)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
# shellcheck source=bench/ops.sh
. "$ROOT/bench/ops.sh"  # ops_routes, ops_sections, ops_key: what BENCH_OPS switches on
DURATION=${BENCH_DURATION:-6}
WARMUP=${BENCH_WARMUP:-2}
LATENCY=${BENCH_LATENCY:-3}
STREAMS=${BENCH_STREAMS:-1000}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
DEADLINE=${BENCH_DEADLINE:-$([ -n "${BENCH_OPS:-}" ] && echo 600 || echo 330)}
PG_SERVER=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
REDIS_HOST=${BENCH_REDIS_HOST:-redis://127.0.0.1:6379}
SLOW_RATE=32            # bytes/s per slow stream after its first 600 bytes: open for minutes
SERVER_CORE=1           # the gateway and the relay
LOAD_CORE=0             # nginx, wrk and the memory client
ROUNDS=${BENCH_ROUNDS:-2}
ROUND=$(( (DURATION + ROUNDS - 1) / ROUNDS ))
ASGI=${BENCH_ASGI:-}
ASGI_BODIES=${BENCH_ASGI_BODIES:-hello claude_code claude_code_stream}
OPS=${BENCH_OPS:-}
OPS_SQLITE="" OPS_PG="" OPS_RT="" OPS_KEYS="" OPS_KEYSPG=""  # which operations targets:
# `ops` (SQLite), `ops_pg` (PostgreSQL, Redis), `routing` (routing's part alone: rules,
# two-target routes, retries and cooldowns, no key, books, log or metrics), `keys` and
# `keys_pg` (a key with limits and the usage books alone, SQLite or PostgreSQL + Redis)
for word in ${OPS//,/ }; do
    case $word in
        1|sqlite) OPS_SQLITE=1 ;;
        postgres|postgresql|pg) OPS_PG=1 ;;
        routing) OPS_RT=1 ;;
        keys) OPS_KEYS=1 ;;
        keys-pg|keys_pg) OPS_KEYSPG=1 ;;
        *) echo "BENCH_OPS: words of 1 (or sqlite), postgres, routing, keys, keys-pg" \
                "(\"sqlite postgres\")" >&2
           exit 2 ;;
    esac
done
[ -n "$OPS_SQLITE$OPS_PG$OPS_RT$OPS_KEYS$OPS_KEYSPG" ] || OPS=""
case $ASGI in ""|uvicorn|granian) ;; *) echo "BENCH_ASGI: uvicorn or granian" >&2; exit 2 ;; esac

log() { printf '[bench] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools
need_tools() {
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
need_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$PY" ] || { log "no Python at $PY: run 'make setup' first"; exit 1; }
if [ "$(nproc)" -lt 2 ]; then log "needs at least 2 cores (has $(nproc))"; exit 1; fi
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ------------------------------------------------------------------ processes and cleanup
WORK=$(mktemp -d /tmp/babelgate-bench.XXXXXX)
chmod 755 "$WORK"  # nginx's workers run as an unprivileged user and read the bodies here
RAW=$WORK/raw
mkdir -p "$RAW"
REF=${BENCH_REF:-}
if [ -n "$REF" ]; then
    # An exported tree first on the path wins over the venv's editable install of src/.
    mkdir -p "$WORK/ref"
    git -C "$ROOT" archive "$REF" src | tar -x -C "$WORK/ref"
    export PYTHONPATH="$WORK/ref/src${PYTHONPATH:+:$PYTHONPATH}"
fi
PIDS=()
WATCHDOG=""

stop_pid() {  # TERM, then KILL after 5 s: a server waits for open connections otherwise
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
    ops_pg_cleanup
    wait 2>/dev/null || true
    if [ $status -ne 0 ] && [ -d "$WORK" ]; then
        log "failed; logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'log "time limit or signal: stopping"; exit 124' TERM
# The watchdog: its sleep dies with it, and it holds no stdout that a pipe would wait on.
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$DEADLINE" & sleeper=$!
    wait "$sleeper" && kill -TERM $$ 2>/dev/null
) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

# BENCH_OPS=postgres's throwaway stores: the database it created, the Redis database it chose
# (empty when chosen); the cleanup drops the first and deletes babelgate's keys from the second.
PG_DB="" REDIS_DB=""
ops_pg_cleanup() {
    if [ -n "$PG_DB" ]; then
        psql "$PG_SERVER/postgres" -qAt -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" \
            >/dev/null 2>&1 || log "could not drop database $PG_DB on $PG_SERVER"
        PG_DB=""
    fi
    if [ -n "$REDIS_DB" ]; then
        redis-cli -u "$REDIS_HOST/$REDIS_DB" --scan --pattern 'babelgate:*' \
            | xargs -r redis-cli -u "$REDIS_HOST/$REDIS_DB" del >/dev/null 2>&1 || true
        REDIS_DB=""
    fi
}

ops_pg_stores() {  # create the database and choose an empty Redis database (15 down to 1)
    local n
    command -v psql >/dev/null && command -v redis-cli >/dev/null \
        || { log "BENCH_OPS=postgres needs psql and redis-cli"; exit 1; }
    PG_DB="babelgate_bench_$(date +%s)_$$"
    psql "$PG_SERVER/postgres" -qAt -c "CREATE DATABASE \"$PG_DB\"" >/dev/null \
        || { log "could not create database $PG_DB on $PG_SERVER"; PG_DB=""; exit 1; }
    for n in $(seq 15 -1 1); do
        if [ "$(redis-cli -u "$REDIS_HOST/$n" dbsize 2>/dev/null)" = 0 ]; then REDIS_DB=$n; break; fi
    done
    [ -n "$REDIS_DB" ] || { log "no empty Redis database on $REDIS_HOST (1-15)"; exit 1; }
    log "operations on PostgreSQL ($PG_SERVER/$PG_DB) and Redis ($REDIS_HOST/$REDIS_DB)"
}

start() {  # start NAME CORE COMMAND...: run pinned to CORE in the background, log to WORK
    local name=$1 core=$2; shift 2
    taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
}

free_ports() {  # N free loopback ports
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_ready() {  # wait_ready NAME URL BODY [HEADER]: until a POST of BODY answers 200 (15 s)
    local name=$1 url=$2 body=$3 header=${4:-x-bench: 1} i
    for i in $(seq 150); do
        # -m 1: a slow stream never ends, but its status code is in by then.
        if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' -X POST -H "$header" \
                -H 'content-type: application/json' --data-binary "@$body" "$url")" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer 200 at $url; its log:"; tail -c 3000 "$WORK/$name.log" >&2
    exit 1
}

gateway_config() {  # gateway_config FILE UPSTREAM_PORT [SLOW_PORT]
    {
        echo "providers:"
        echo "  up: {type: openai, base_url: http://127.0.0.1:$2/v1, api_key: k}"
        # The same nginx port answers Anthropic's and Gemini's paths with their own canned files.
        echo "  anth: {type: anthropic, base_url: http://127.0.0.1:$2, api_key: k}"
        echo "  gem: {type: gemini, base_url: http://127.0.0.1:$2, api_key: k}"
        [ -n "${3:-}" ] && echo "  slow: {type: openai, base_url: http://127.0.0.1:$3/v1, api_key: k}"
        echo "routes:"
        if [ "${OPS_CONFIG:-}" = routing ]; then
            ops_routes
            routing_sections
            return
        fi
        case ${OPS_CONFIG:-} in
            sqlite|postgres)
                ops_routes  # bench/ops.sh: the configuration shared with harness.sh
                ops_sections "$WORK/ops-logs-$OPS_CONFIG"
                ops_store
                return ;;
        esac
        echo "  $CODEX_MODEL: anth/$ANTHROPIC_MODEL"
        echo "  $CHAT_MODEL: gem/$CHAT_MODEL"
        echo "  $GEMINI_CLI_MODEL: anth/$ANTHROPIC_MODEL"
        if [ -n "${3:-}" ]; then
            # The small warm-up body goes to the fast stream, everything else trickles.
            echo "  $HELLO_MODEL: up/canned-model"
            echo "  default: slow/canned-model"
        else
            echo "  default: up/canned-model"
        fi
        case ${OPS_CONFIG:-} in keys-*) ops_store ;; esac  # the plain routes, a key's store
    } >"$1"
}

ops_store() {  # where an operations target keeps its key and books (OPS_CONFIG); the
    # plain gateway keeps its books in the default database (usage recording is always on)
    case $OPS_CONFIG in
        *postgres)
            echo "storage: {url: \"$PG_SERVER/$PG_DB\"}"
            echo "redis: \"$REDIS_HOST/$REDIS_DB\"" ;;
        *) echo "storage: {path: \"$WORK/$OPS_CONFIG.db\"}" ;;
    esac
}

start_gateway() {  # start_gateway NAME CONFIG PORT
    start "$1" "$SERVER_CORE" "$PY" -m babelgate serve --config "$2" --host 127.0.0.1 --port "$3"
}

start_asgi() {  # start_asgi NAME CONFIG PORT: the app under $ASGI (server/asgi.py), one worker
    case $ASGI in
        uvicorn) start "$1" "$SERVER_CORE" env BABELGATE_CONFIG="$2" "$PY" -m uvicorn --factory \
            babelgate.server.asgi:app_factory --host 127.0.0.1 --port "$3" --loop uvloop \
            --http httptools --no-access-log --log-level warning ;;
        granian) start "$1" "$SERVER_CORE" env BABELGATE_CONFIG="$2" "$PY" -m granian \
            --interface asgi --factory babelgate.server.asgi:app_factory --host 127.0.0.1 \
            --port "$3" --loop uvloop --workers 1 --no-access-log ;;
    esac
}

start_relay() {  # start_relay NAME PORT UPSTREAM_PORT [UPSTREAM_PATH]
    start "$1" "$SERVER_CORE" "$PY" "$ROOT/bench/bare_relay.py" "$2" \
        "http://127.0.0.1:$3${4:-/v1/chat/completions}"
}

# ------------------------------------------------------------------ set-up
log "work directory $WORK"
log "babelgate from $("$PY" -c 'import babelgate, os; print(os.path.dirname(babelgate.__file__))')"
"$PY" "$ROOT/bench/bodies.py" "$WORK/bodies" >"$RAW/bodies.txt"
B=$WORK/bodies
model_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$1"; }
HELLO_MODEL=$(model_of "$B/hello.json")
CODEX_MODEL=$(model_of "$B/codex.json")
CHAT_MODEL=$(model_of "$B/chat_gemini.json")
ANTHROPIC_MODEL=$(model_of "$B/upstream/anthropic.json")
# A Gemini body names its model in the URL only: bodies.py says which one the CLI asks for.
GEMINI_CLI_MODEL=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import bodies
print(bodies.GEMINI_CLI_MODEL)' "$ROOT/bench")
CLI_JSON_PATH="/v1beta/models/$GEMINI_CLI_MODEL:generateContent"
CLI_SSE_PATH="/v1beta/models/$GEMINI_CLI_MODEL:streamGenerateContent?alt=sse"
# The Gemini paths: nginx.conf matches them exactly, so the model is the chat body's.
GEM_JSON_PATH="/v1beta/models/$CHAT_MODEL:generateContent"
GEM_SSE_PATH="/v1beta/models/$CHAT_MODEL:streamGenerateContent?alt=sse"
read -r P_JSON P_SSE P_SLOW P_RELAY_JSON P_RELAY_SSE P_GW_JSON P_GW_SSE P_GW_MEM P_RELAY_MEM \
    P_RELAY_ANTH_JSON P_RELAY_ANTH_SSE P_RELAY_GEM_JSON P_RELAY_GEM_SSE P_ASGI_JSON P_ASGI_SSE \
    P_OPS_JSON P_OPS_SSE P_OPSPG_JSON P_OPSPG_SSE P_RT_JSON P_RT_SSE P_KEYS_JSON P_KEYS_SSE \
    P_KEYSPG_JSON P_KEYSPG_SSE <<<"$(free_ports 25)"

sed -e "s#@WORK@#$WORK#g" -e "s/@PORT_JSON@/$P_JSON/" -e "s/@PORT_SSE@/$P_SSE/" \
    -e "s/@PORT_SLOW@/$P_SLOW/" -e "s/@SLOW_RATE@/$SLOW_RATE/" \
    "$ROOT/bench/nginx.conf" >"$WORK/nginx.conf"
start nginx "$LOAD_CORE" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"

gateway_config "$WORK/gw-json.yaml" "$P_JSON"
gateway_config "$WORK/gw-sse.yaml" "$P_SSE"
start_relay relay-json "$P_RELAY_JSON" "$P_JSON"
start_relay relay-sse "$P_RELAY_SSE" "$P_SSE"
# The relay forwards to one fixed URL: one more per upstream answer of the new paths.
start_relay relay-anth-json "$P_RELAY_ANTH_JSON" "$P_JSON" /v1/messages
start_relay relay-anth-sse "$P_RELAY_ANTH_SSE" "$P_SSE" /v1/messages
start_relay relay-gem-json "$P_RELAY_GEM_JSON" "$P_JSON" "$GEM_JSON_PATH"
start_relay relay-gem-sse "$P_RELAY_GEM_SSE" "$P_SSE" "$GEM_SSE_PATH"
start_gateway gw-json "$WORK/gw-json.yaml" "$P_GW_JSON"
start_gateway gw-sse "$WORK/gw-sse.yaml" "$P_GW_SSE"

if [ -n "$ASGI" ]; then
    start_asgi asgi-json "$WORK/gw-json.yaml" "$P_ASGI_JSON"
    start_asgi asgi-sse "$WORK/gw-sse.yaml" "$P_ASGI_SSE"
fi
# The gateway key each operations target's gateways know (key_of TARGET), made in its store.
KEY_ops=bench-key KEY_ops_pg=bench-key KEY_keys=bench-key KEY_keys_pg=bench-key
key_of() { local name="KEY_$1"; echo "${!name:-bench-key}"; }

ops_gateways() {  # ops_gateways STORE TARGET NAME PORT_JSON PORT_SSE: one operations target
    local store=$1 target=$2 name=$3
    OPS_CONFIG=$store gateway_config "$WORK/$name-json.yaml" "$P_JSON"
    OPS_CONFIG=$store gateway_config "$WORK/$name-sse.yaml" "$P_SSE"
    # Both read the one database: the key is made once. wrk sends it (bench/post.lua).
    if "$PY" -m babelgate keys --help >/dev/null 2>&1; then
        printf -v "KEY_$target" '%s' "$(ops_key "$WORK/$name-json.yaml" "bench-$target")"
    else
        log "this babelgate has no gateway keys: operations measured without one"
    fi
    start_gateway "$name-json" "$WORK/$name-json.yaml" "$4"
    start_gateway "$name-sse" "$WORK/$name-sse.yaml" "$5"
}
if [ -n "$OPS_PG$OPS_KEYSPG" ]; then ops_pg_stores; fi
if [ -n "$OPS_RT" ]; then
    OPS_CONFIG=routing gateway_config "$WORK/rt-json.yaml" "$P_JSON"
    OPS_CONFIG=routing gateway_config "$WORK/rt-sse.yaml" "$P_SSE"
    start_gateway rt-json "$WORK/rt-json.yaml" "$P_RT_JSON"
    start_gateway rt-sse "$WORK/rt-sse.yaml" "$P_RT_SSE"
fi
if [ -n "$OPS_SQLITE" ]; then ops_gateways sqlite ops ops "$P_OPS_JSON" "$P_OPS_SSE"; fi
if [ -n "$OPS_PG" ]; then ops_gateways postgres ops_pg opspg "$P_OPSPG_JSON" "$P_OPSPG_SSE"; fi
if [ -n "$OPS_KEYS" ]; then ops_gateways keys-sqlite keys keys "$P_KEYS_JSON" "$P_KEYS_SSE"; fi
if [ -n "$OPS_KEYSPG" ]; then
    ops_gateways keys-postgres keys_pg keyspg "$P_KEYSPG_JSON" "$P_KEYSPG_SSE"
fi

wait_ready nginx "http://127.0.0.1:$P_JSON/v1/chat/completions" "$B/hello.json"
if [ -n "$ASGI" ]; then
    wait_ready asgi-json "http://127.0.0.1:$P_ASGI_JSON/v1/messages" "$B/claude_code.json"
    wait_ready asgi-sse "http://127.0.0.1:$P_ASGI_SSE/v1/messages" "$B/claude_code_stream.json"
fi
if [ -n "$OPS_RT" ]; then
    wait_ready rt-json "http://127.0.0.1:$P_RT_JSON/v1/messages" "$B/claude_code.json"
    wait_ready rt-sse "http://127.0.0.1:$P_RT_SSE/v1/messages" "$B/claude_code_stream.json"
fi
if [ -n "$OPS_SQLITE" ]; then
    wait_ready ops-json "http://127.0.0.1:$P_OPS_JSON/v1/messages" "$B/claude_code.json" \
        "x-api-key: $KEY_ops"
    wait_ready ops-sse "http://127.0.0.1:$P_OPS_SSE/v1/messages" "$B/claude_code_stream.json" \
        "x-api-key: $KEY_ops"
fi
if [ -n "$OPS_KEYS" ]; then
    wait_ready keys-json "http://127.0.0.1:$P_KEYS_JSON/v1/messages" "$B/claude_code.json" \
        "x-api-key: $KEY_keys"
    wait_ready keys-sse "http://127.0.0.1:$P_KEYS_SSE/v1/messages" "$B/claude_code_stream.json" \
        "x-api-key: $KEY_keys"
fi
if [ -n "$OPS_KEYSPG" ]; then
    wait_ready keyspg-json "http://127.0.0.1:$P_KEYSPG_JSON/v1/messages" \
        "$B/claude_code.json" "x-api-key: $KEY_keys_pg"
    wait_ready keyspg-sse "http://127.0.0.1:$P_KEYSPG_SSE/v1/messages" \
        "$B/claude_code_stream.json" "x-api-key: $KEY_keys_pg"
fi
if [ -n "$OPS_PG" ]; then
    wait_ready opspg-json "http://127.0.0.1:$P_OPSPG_JSON/v1/messages" "$B/claude_code.json" \
        "x-api-key: $KEY_ops_pg"
    wait_ready opspg-sse "http://127.0.0.1:$P_OPSPG_SSE/v1/messages" \
        "$B/claude_code_stream.json" "x-api-key: $KEY_ops_pg"
fi
wait_ready relay-json "http://127.0.0.1:$P_RELAY_JSON/v1/messages" "$B/hello.json"
wait_ready relay-sse "http://127.0.0.1:$P_RELAY_SSE/v1/messages" "$B/hello_stream.json"
wait_ready gw-json "http://127.0.0.1:$P_GW_JSON/v1/messages" "$B/claude_code.json"
wait_ready gw-sse "http://127.0.0.1:$P_GW_SSE/v1/messages" "$B/claude_code_stream.json"
wait_ready relay-anth-json "http://127.0.0.1:$P_RELAY_ANTH_JSON/v1/responses" "$B/codex.json"
wait_ready relay-anth-sse "http://127.0.0.1:$P_RELAY_ANTH_SSE/v1/responses" "$B/codex_stream.json"
wait_ready relay-gem-json "http://127.0.0.1:$P_RELAY_GEM_JSON/v1/chat/completions" \
    "$B/chat_gemini.json"
wait_ready relay-gem-sse "http://127.0.0.1:$P_RELAY_GEM_SSE/v1/chat/completions" \
    "$B/chat_gemini_stream.json"

# A translated answer must look right before its speed means anything.
"$PY" - "http://127.0.0.1:$P_GW_JSON" "http://127.0.0.1:$P_GW_SSE" "$B" "$CLI_JSON_PATH" \
    "$CLI_SSE_PATH" <<'EOF'
import json, sys, urllib.request
json_base, sse_base, bodies = sys.argv[1:4]
def post(base, path, body):
    req = urllib.request.Request(base + path, data=open(f"{bodies}/{body}.json", "rb").read(),
                                 headers={"content-type": "application/json"})
    return urllib.request.urlopen(req, timeout=10).read().decode()
def sse_data(stream):
    return [json.loads(line[6:]) for line in stream.splitlines()
            if line.startswith("data: {")]
answer_text = json.load(open(f"{bodies}/upstream/chat.json"))["choices"][0]["message"]["content"]
# What each canned stream says, delta by delta: the translated stream must say the same.
anthropic_text = "".join(e["delta"]["text"] for e in sse_data(open(f"{bodies}/upstream/anthropic.sse").read())
                         if e["type"] == "content_block_delta")
gemini_text = "".join(c["candidates"][0]["content"]["parts"][0]["text"]
                      for c in sse_data(open(f"{bodies}/upstream/gemini.sse").read()))
# Anthropic client, OpenAI upstream.
answer = json.loads(post(json_base, "/v1/messages", "claude_code"))
assert answer["type"] == "message" and answer["content"][0]["type"] == "text", answer
assert answer["usage"]["output_tokens"] == 48, answer["usage"]
answer = json.loads(post(json_base, "/v1/messages", "claude_code_distinct"))
assert answer["type"] == "message" and answer["usage"]["output_tokens"] == 48, answer
stream = post(sse_base, "/v1/messages", "claude_code_stream")
assert "event: message_stop" in stream and stream.count("text_delta") >= 20, stream[:2000]
# Codex (Responses client, store false), Anthropic upstream.
answer = json.loads(post(json_base, "/v1/responses", "codex"))
assert answer["object"] == "response" and answer["status"] == "completed", str(answer)[:2000]
texts = [c["text"] for item in answer["output"] if item["type"] == "message"
         for c in item["content"] if c["type"] == "output_text"]
assert texts == [answer_text], answer["output"]
assert answer["usage"]["output_tokens"] == 48, answer["usage"]
events = sse_data(post(sse_base, "/v1/responses", "codex_stream"))
deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
assert deltas == anthropic_text, deltas
assert events[-1]["type"] == "response.completed", events[-1]
assert events[-1]["response"]["usage"]["output_tokens"] == 48, events[-1]["response"]["usage"]
seqs = [e["sequence_number"] for e in events]
assert seqs == list(range(len(seqs))), seqs
# Chat Completions client, Gemini upstream.
answer = json.loads(post(json_base, "/v1/chat/completions", "chat_gemini"))
assert answer["object"] == "chat.completion", answer
assert answer["choices"][0]["message"]["content"] == answer_text, answer
assert answer["choices"][0]["finish_reason"] == "stop", answer
assert answer["usage"]["completion_tokens"] == 48, answer["usage"]
stream = post(sse_base, "/v1/chat/completions", "chat_gemini_stream")
chunks = sse_data(stream)
deltas = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
assert deltas == gemini_text and stream.rstrip().endswith("data: [DONE]"), stream[-2000:]
assert chunks[-1]["usage"]["completion_tokens"] == 48, chunks[-1]
# Gemini CLI (Gemini API client), Anthropic upstream.
cli_json, cli_sse = sys.argv[4:6]
answer = json.loads(post(json_base, cli_json, "gemini_cli"))
(candidate,) = answer["candidates"]
assert [p["text"] for p in candidate["content"]["parts"]] == [answer_text], answer
assert candidate["finishReason"] == "STOP", answer
assert answer["usageMetadata"]["candidatesTokenCount"] == 48, answer["usageMetadata"]
chunks = sse_data(post(sse_base, cli_sse, "gemini_cli_stream"))
deltas = "".join(p.get("text", "") for c in chunks for cand in c.get("candidates", [])
                 for p in cand["content"]["parts"])
assert deltas == anthropic_text, deltas
assert chunks[-1]["candidates"][0]["finishReason"] == "STOP", chunks[-1]
assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 48, chunks[-1]
EOF

# ------------------------------------------------------------------ measurements
BODIES=${BENCH_BODIES:-hello claude_code claude_code_stream claude_code_distinct codex codex_stream
chat_gemini chat_gemini_stream gemini_cli gemini_cli_stream}
BODIES=$(echo $BODIES)  # on one line: the " $body " matches below see no newline
# Where each kind of lane sends its requests, one row a kind: the path its client posts to
# (whole, streamed), the relay that stands for its upstream (ports P_<relay>_JSON/_SSE; a
# relay forwards whatever path it is sent), and the upstream's own path (whole, streamed),
# where `direct` posts. A path written $NAME is that variable's value when asked for.
LANES='
anthropic_client  /v1/messages          /v1/messages          RELAY       /v1/chat/completions  /v1/chat/completions
codex             /v1/responses         /v1/responses         RELAY_ANTH  /v1/messages          /v1/messages
chat_gemini       /v1/chat/completions  /v1/chat/completions  RELAY_GEM   $GEM_JSON_PATH        $GEM_SSE_PATH
gemini_cli        $CLI_JSON_PATH        $CLI_SSE_PATH         RELAY_ANTH  /v1/messages          /v1/messages
'
url_of() {  # url_of TARGET BODY: where wrk sends BODY for TARGET (relay, babelgate, asgi, ops,
            # routing, ops_pg, keys, keys_pg, direct)
    local stream=JSON kind=anthropic_client row client port
    case $2 in *stream*) stream=SSE ;; esac
    case $2 in codex*) kind=codex ;; chat_gemini*) kind=chat_gemini ;; gemini_cli*) kind=gemini_cli ;; esac
    read -r -a row <<<"$(grep "^$kind " <<<"$LANES")"
    client=${row[1]} direct=${row[4]}
    [ "$stream" = SSE ] && client=${row[2]} direct=${row[5]}
    case $1 in
        relay) port=P_${row[3]}_$stream ;;
        babelgate) port=P_GW_$stream ;;
        asgi) port=P_ASGI_$stream ;;
        routing) port=P_RT_$stream ;;
        ops) port=P_OPS_$stream ;;
        ops_pg) port=P_OPSPG_$stream ;;
        keys) port=P_KEYS_$stream ;;
        keys_pg) port=P_KEYSPG_$stream ;;
        direct) port=P_$stream client=$direct ;;
        *) log "url_of: no target $1"; return 1 ;;
    esac
    case $client in '$'*) client=${client#\$} client=${!client} ;; esac
    echo "http://127.0.0.1:${!port}$client"
}

run_wrk() {  # run_wrk OUT SECONDS CONNECTIONS URL BODY [--latency]
    local out=$1 seconds=$2 conns=$3 url=$4 body=$5 threads=2
    shift 5
    [ "$conns" -lt 2 ] && threads=1
    taskset -c "$LOAD_CORE" wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 5s "$@" \
        -s "$ROOT/bench/post.lua" "$url" -- "$body" >"$out" 2>&1
}

for body in $BODIES; do
    log "throughput: $body"
    targets="relay babelgate"
    if [ -n "$ASGI" ] && [[ " $ASGI_BODIES " == *" $body "* ]]; then targets="$targets asgi"; fi
    if [ -n "$OPS" ] && [[ " ${BENCH_OPS_BODIES:-$BODIES} " == *" $body "* ]]; then
        [ -n "$OPS_RT" ] && targets="$targets routing"
        [ -n "$OPS_KEYS" ] && targets="$targets keys"
        [ -n "$OPS_KEYSPG" ] && targets="$targets keys_pg"
        [ -n "$OPS_SQLITE" ] && targets="$targets ops"
        [ -n "$OPS_PG" ] && targets="$targets ops_pg"
    fi
    for target in $targets; do
        BENCH_API_KEY=$(key_of "$target") run_wrk /dev/null "$WARMUP" "$CONNECTIONS" \
            "$(url_of $target $body)" "$B/$body.json"
    done
    # Rounds, the order reversed in every other one, so drift on the shared machine hits all.
    for round in $(seq "$ROUNDS"); do
        order=$targets
        [ $((round % 2)) = 0 ] && order=$(echo "$targets" | tr ' ' '\n' | tac | tr '\n' ' ')
        for target in $order; do
            BENCH_API_KEY=$(key_of "$target") run_wrk "$RAW/tput-$body-$target-$round.txt" \
                "$ROUND" "$CONNECTIONS" "$(url_of $target $body)" "$B/$body.json"
        done
    done
done

for body in $BODIES; do
    log "latency at concurrency 1: $body"
    targets="direct relay babelgate"
    # Issue 9's latency target holds with routing and the operations on: measure them too.
    if [ -n "$OPS" ] && [[ " ${BENCH_OPS_BODIES:-$BODIES} " == *" $body "* ]]; then
        [ -n "$OPS_RT" ] && targets="$targets routing"
        [ -n "$OPS_KEYS" ] && targets="$targets keys"
        [ -n "$OPS_KEYSPG" ] && targets="$targets keys_pg"
        [ -n "$OPS_SQLITE" ] && targets="$targets ops"
        [ -n "$OPS_PG" ] && targets="$targets ops_pg"
    fi
    for target in $targets; do
        BENCH_API_KEY=$(key_of "$target") run_wrk /dev/null 1 1 "$(url_of $target $body)" \
            "$B/$body.json"
        BENCH_API_KEY=$(key_of "$target") run_wrk "$RAW/lat-$body-$target.txt" "$LATENCY" 1 \
            "$(url_of $target $body)" "$B/$body.json" --latency
    done
done

# Memory: fresh processes; the throughput ones are stopped so that core 1 is quiet.
for name in gw_json gw_sse relay_json relay_sse relay_anth_json relay_anth_sse relay_gem_json \
        relay_gem_sse; do
    pid_var="PID_$name"; stop_pid "${!pid_var}"
done
if [ -n "$ASGI" ]; then stop_pid "$PID_asgi_json"; stop_pid "$PID_asgi_sse"; fi
if [ -n "$OPS_RT" ]; then stop_pid "$PID_rt_json"; stop_pid "$PID_rt_sse"; fi
if [ -n "$OPS_SQLITE" ]; then stop_pid "$PID_ops_json"; stop_pid "$PID_ops_sse"; fi
if [ -n "$OPS_PG" ]; then stop_pid "$PID_opspg_json"; stop_pid "$PID_opspg_sse"; fi
if [ -n "$OPS_KEYS" ]; then stop_pid "$PID_keys_json"; stop_pid "$PID_keys_sse"; fi
if [ -n "$OPS_KEYSPG" ]; then stop_pid "$PID_keyspg_json"; stop_pid "$PID_keyspg_sse"; fi
gateway_config "$WORK/gw-mem.yaml" "$P_SSE" "$P_SLOW"
start_gateway gw-mem "$WORK/gw-mem.yaml" "$P_GW_MEM"
start_relay relay-mem "$P_RELAY_MEM" "$P_SLOW"
wait_ready gw-mem "http://127.0.0.1:$P_GW_MEM/v1/messages" "$B/hello_stream.json"
# The relay has only the slow upstream: its status line comes at once, the rest trickles.
wait_ready relay-mem "http://127.0.0.1:$P_RELAY_MEM/v1/messages" "$B/hello_stream.json"
for target in babelgate relay; do
    if [ $target = babelgate ]; then
        url="http://127.0.0.1:$P_GW_MEM/v1/messages"; pid=$PID_gw_mem
        # Warm the stream path (the hello model goes to the fast stream) before "idle".
        run_wrk /dev/null 2 4 "$url" "$B/hello_stream.json"
    else
        url="http://127.0.0.1:$P_RELAY_MEM/v1/messages"; pid=$PID_relay_mem
    fi
    log "memory: $STREAMS slow streams through $target"
    sleep 1
    taskset -c "$LOAD_CORE" timeout 60 "$PY" "$ROOT/bench/slow_streams.py" "$url" \
        "$B/claude_code_stream.json" "$pid" "$STREAMS" 40 >"$RAW/mem-$target.json" \
        2>"$WORK/mem-$target.err" || { log "memory client failed:"; cat "$WORK/mem-$target.err" >&2; }
done

# ------------------------------------------------------------------ report
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine=$(uname -sm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GB RAM"
    if [ -n "$REF" ]; then
        echo "commit=$(git -C "$ROOT" rev-parse --short "$REF") (committed src/ of $REF)"
    else
        dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no -- src | grep -q . && echo " (src has uncommitted changes)" || true)
        echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    fi
    echo "software=$("$PY" -V), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "settings=$CONNECTIONS connections, ${WARMUP}s warm-up + $ROUNDS rounds x ${ROUND}s per target and body, ${LATENCY}s latency runs, $STREAMS streams"
    echo "streams=$STREAMS"
    if [ -n "$ASGI" ]; then
        echo "asgi=$ASGI $("$PY" -m pip show "$ASGI" 2>/dev/null | awk '/^Version/ {print $2}')"
    fi
    [ -n "$OPS_RT" ] && echo "routing=1"
    if [ -n "$OPS_SQLITE" ]; then
        echo "ops=1"
        echo "ops_requests=$(cat "$WORK"/ops-logs-sqlite/*.log 2>/dev/null | wc -l)"
    fi
    [ -n "$OPS_KEYS" ] && echo "keys=1"
    [ -n "$OPS_KEYSPG" ] && echo "keys_pg=1"
    if [ -n "$OPS_PG$OPS_KEYSPG" ]; then
        echo "pg_usage_rows=$(psql "$PG_SERVER/$PG_DB" -qAt -c 'SELECT count(*) FROM usage' 2>/dev/null || echo '?')"
    fi
    if [ -n "$OPS_PG" ]; then
        echo "ops_pg=1"
        echo "ops_pg_requests=$(cat "$WORK"/ops-logs-postgres/*.log 2>/dev/null | wc -l)"
        echo "ops_pg_redis_keys=$(redis-cli -u "$REDIS_HOST/$REDIS_DB" dbsize 2>/dev/null || echo '?')"
    fi
} >"$RAW/meta.txt"
mkdir -p "$ROOT/bench/results"
"$PY" "$ROOT/bench/report.py" "$RAW" >"$ROOT/bench/results/latest.md.tmp"
mv "$ROOT/bench/results/latest.md.tmp" "$ROOT/bench/results/latest.md"
cat "$ROOT/bench/results/latest.md"
