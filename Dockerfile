# babelgate in a container: `docker build -t babelgate .` then
#   docker run -p 127.0.0.1:8080:8080 -e DEEPSEEK_API_KEY -v babelgate-data:/data babelgate
# It serves /data/babelgate.yaml when present (mount yours there), else providers from the
# API-key variables given with -e. State (the SQLite database, logs) lives in the /data volume.
# Any Debian-based Python image with `python` and `pip` on PATH can stand in (a mirror, or a
# local one where Docker Hub is out of reach): --build-arg PYTHON_IMAGE=...
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDG_DATA_HOME=/data

# Only what the package build reads: pyproject.toml names README.md as its readme.
COPY pyproject.toml README.md /tmp/babelgate/
COPY src /tmp/babelgate/src
RUN pip install /tmp/babelgate \
    && rm -rf /tmp/babelgate \
    && useradd --system --user-group --uid 10001 --home-dir /data --shell /usr/sbin/nologin \
       babelgate \
    && mkdir -p /data/babelgate \
    && chown -R babelgate:babelgate /data

USER babelgate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# The slim image has no curl: Python asks /health, which answers without a gateway key.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

# --host/--port win over the configuration's server section, so the port always matches
# EXPOSE and the healthcheck.
CMD ["babelgate", "serve", "--host", "0.0.0.0", "--port", "8080"]
