"""Run the gateway under uvicorn (uvloop + httptools), one process."""

from __future__ import annotations

import logging
import sys

import uvicorn

from babelgate.config import Settings

from .app import create_app


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("babelgate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    configure_logging()
    host = host or settings.server.host
    port = port or settings.server.port
    logging.getLogger("babelgate").info(
        "babelgate listening on http://%s:%d (config: %s, providers: %s)",
        host, port, settings.source, ", ".join(settings.providers) or "none",
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the gateway logs one line per upstream attempt itself
        log_level="warning",
        timeout_keep_alive=75,
        # Nothing reads the client's address, so no X-Forwarded-* rewriting per request; and
        # no `server` header to advertise the stack.
        proxy_headers=False,
        server_header=False,
        # On SIGTERM, give open streams a little time to finish, then stop: an agent's stream
        # can run for minutes, and a restart must not wait for it.
        timeout_graceful_shutdown=settings.server.shutdown_timeout,
    )
