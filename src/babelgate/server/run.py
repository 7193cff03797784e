"""Run the gateway: one process, uvloop, our HTTP server (server/http.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from babelgate.config import Settings

from .app import App, create_app
from .http import Server

log = logging.getLogger("babelgate")


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("babelgate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT; then let open requests finish for up to
    `server.shutdown_timeout` seconds (an agent's stream can run for minutes, and a restart must
    not wait for it). Exits with status 1 if the address cannot be bound."""
    configure_logging()
    host = host or settings.server.host
    port = port or settings.server.port
    app = create_app(settings)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        if not runner.run(_serve(app, settings, host, port)):
            sys.exit(1)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # not on Windows: asyncio's own loop serves there, more slowly
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(app: App, settings: Settings, host: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = Server(app, app.refusal)
    await app.start()
    try:
        try:
            await server.listen(host, port)
        except OSError as exc:
            log.error("babelgate cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            return False
        log.info(
            "babelgate listening on http://%s:%d (config: %s, providers: %s)",
            host, port, settings.source, ", ".join(settings.providers) or "none",
        )
        await stop.wait()
        await server.stop(settings.server.shutdown_timeout)
        return True
    finally:
        await app.stop()
