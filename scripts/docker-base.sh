#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image where Docker Hub is out of reach but Debian's
# mirror is not (as on the test machines): a minimal Debian bookworm root with python3 and
# pip, imported into the local Docker as local/python:3.11-slim-bookworm. Then
#   docker build --network host --build-arg PYTHON_IMAGE=local/python:3.11-slim-bookworm .
#   BABELGATE_TEST_PYTHON_IMAGE=local/python:3.11-slim-bookworm pytest tests/packaging
# The host's CA bundle is copied in, so pip in the build trusts what the host trusts (a
# proxy's own CA included). Needs root and a running Docker daemon; idempotent.
set -euo pipefail

IMAGE=${1:-local/python:3.11-slim-bookworm}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "docker-base.sh: needs root (debootstrap)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
ROOT=$(mktemp -d /tmp/babelgate-docker-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "docker-base.sh: debootstrap bookworm with python3 into $ROOT (a few minutes)" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
# As in the python images: pip installs into the system Python (no PEP 668 marker).
rm -f "$ROOT"/usr/lib/python3*/EXTERNALLY-MANAGED
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "docker-base.sh: imported $IMAGE" >&2
