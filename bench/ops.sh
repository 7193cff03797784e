# What "operations switched on" means for the benchmark, in one place: sourced by bench/run.sh
# (the ops columns) and bench/harness.sh (BENCH_OPS=1 of server_instructions.sh and profile.sh),
# so the instruction counts and the throughput figures measure the same configuration.
# Expects CODEX_MODEL, CHAT_MODEL, GEMINI_CLI_MODEL and ANTHROPIC_MODEL (the bodies' models)
# and PY.

ops_routes() {  # the plain gateway's routes, each with a second target tried only when the
    # first fails: every body reaches the upstream it reaches without operations
    echo "  $CODEX_MODEL: [anth/$ANTHROPIC_MODEL, up/canned-model]"
    echo "  $CHAT_MODEL: [gem/$CHAT_MODEL, up/canned-model]"
    echo "  $GEMINI_CLI_MODEL: [anth/$ANTHROPIC_MODEL, up/canned-model]"
    echo "  default: [up/canned-model, anth/$ANTHROPIC_MODEL]"
}

ops_sections() {  # ops_sections LOGDIR: rules, retries, cooldowns, the daily log and /metrics
    routing_sections
    cat <<YAML
logs: {dir: "$1", max_mb: 100000}  # one file: its lines count the requests
metrics: true
YAML
}

routing_sections() {  # routing's part of the operations: rules, retries and cooldowns
    cat <<YAML
rules:  # ten rules; every body is checked against all of them and meets none (Codex offers
  # web_search: its rule's second condition fails, so Codex pays the check and goes on)
  - if: {user_agent: "CherryStudio*"}
    system_prepend: "You are a helpful assistant."
  - if: {header: {x-team: "red*"}}
    to: up/team-red
  - if: {model: "gpt-4*"}
    to: [up/gpt-4o, anth/$ANTHROPIC_MODEL]
  - if: {image: true, model: "nothing-*"}
    to: gem/$CHAT_MODEL
  - if: {long_context: 1000000}
    to: gem/$CHAT_MODEL
  - if: {web_search: true, user_agent: "Nobody*"}
    to: gem/$CHAT_MODEL
  - if: {user_agent: "LobeChat*"}
    set: {temperature: 0.3}
  - if: {model: "o1*"}
    remove: [metadata]
  - if: {header: {x-debug: "1"}}
    max_tokens: 100
  - if: {background: true, model: "nothing-*"}
    to: up/small
retry: {attempts: 2, backoff: 0.5, max_backoff: 8}
cooldown: {failures: 3, seconds: 30}
YAML
}

ops_key() {  # ops_key CONFIG [NAME]: a gateway key whose limits the bench never reaches, made
    # by the CLI (NAME: bench; two targets sharing one database give theirs their own names)
    "$PY" -m babelgate keys create "${2:-bench}" --rpm 100000000 --tpm 100000000000 \
        --concurrency 100000 --budget 1000000 --per day --config "$1"
}
