#!/usr/bin/env bash
# Makes sure Debian's chromium is installed for the dashboard's tests (tests/dashboard), which
# drive it with Playwright from PyPI. Playwright's own browser download needs a CDN; Debian's
# package comes from the same apt sources as PostgreSQL and Redis (scripts/services.sh).
# Idempotent: a chromium already at $BABELGATE_CHROMIUM is left alone.
set -euo pipefail

CHROMIUM=${BABELGATE_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium.sh: $CHROMIUM missing; install it (apt-get install chromium) or run as root" >&2
    exit 1
fi
echo "chromium.sh: installing chromium from apt (once; about 100 MB)" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be empty or stale: refresh them first.
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
"$CHROMIUM" --version >&2
