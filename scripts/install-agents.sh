#!/usr/bin/env bash
# Install the real coding agents the agent tests drive (tests/agents/), pinned, into a cache
# directory outside the repository:
#   ${BABELGATE_AGENT_CACHE:-$HOME/.cache/babelgate/agents}/node_modules/.bin/{claude,codex,gemini}
# Needs node and npm and the npm registry; nothing else is downloaded. Re-running it is cheap:
# when the pinned versions are already installed and runnable it does nothing.
set -euo pipefail

CLAUDE_VERSION="2.1.329"
CODEX_VERSION="0.169.0"
GEMINI_VERSION="0.61.0"
CACHE="${BABELGATE_AGENT_CACHE:-$HOME/.cache/babelgate/agents}"
BIN="$CACHE/node_modules/.bin"

installed_version() {  # the version field of an installed package's package.json
    local manifest="$CACHE/node_modules/$1/package.json"
    [ -f "$manifest" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$manifest"
}

claude_runs() {  # the native binary is in place (install.cjs ran) and reports our version
    [ -x "$BIN/claude" ] || return 1
    IS_SANDBOX=1 "$BIN/claude" --version 2>/dev/null | grep -q "^$CLAUDE_VERSION "
}

if [ "$(installed_version @anthropic-ai/claude-code)" = "$CLAUDE_VERSION" ] \
    && [ "$(installed_version @openai/codex)" = "$CODEX_VERSION" ] \
    && [ "$(installed_version @google/gemini-cli)" = "$GEMINI_VERSION" ] && claude_runs; then
    echo "agents already installed in $CACHE (claude $CLAUDE_VERSION, codex $CODEX_VERSION," \
        "gemini $GEMINI_VERSION)"
    exit 0
fi

command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }
mkdir -p "$CACHE"
# A private manifest with exact versions, so npm never resolves anything newer.
cat > "$CACHE/package.json" <<JSON
{"name": "babelgate-agents", "private": true,
 "dependencies": {"@anthropic-ai/claude-code": "$CLAUDE_VERSION", "@openai/codex": "$CODEX_VERSION",
                  "@google/gemini-cli": "$GEMINI_VERSION"}}
JSON
# Scripts are run explicitly below: recent npm versions skip unapproved install scripts.
npm install --prefix "$CACHE" --no-audit --no-fund --ignore-scripts --loglevel=error
# Claude Code's postinstall copies the platform's native binary over the bin/claude.exe stub.
(cd "$CACHE" && node node_modules/@anthropic-ai/claude-code/install.cjs)

claude_runs || { echo "claude $CLAUDE_VERSION did not install correctly in $CACHE" >&2; exit 1; }
[ "$(installed_version @openai/codex)" = "$CODEX_VERSION" ] \
    || { echo "codex $CODEX_VERSION did not install in $CACHE" >&2; exit 1; }
[ "$(installed_version @google/gemini-cli)" = "$GEMINI_VERSION" ] && [ -x "$BIN/gemini" ] \
    || { echo "gemini $GEMINI_VERSION did not install in $CACHE" >&2; exit 1; }
echo "installed claude $CLAUDE_VERSION, codex $CODEX_VERSION and gemini $GEMINI_VERSION in $CACHE"
