"""Run the gateway: one process, uvloop, our HTTP server (server/http.py).

Signals: SIGTERM and SIGINT stop it gracefully; SIGHUP reloads the configuration
(server/reload.py) and never stops it (from the moment `serve` is called: a SIGHUP during
start-up is ignored rather than fatal)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable

from babelgate.config import ServerConfig, Settings

from .app import App, StorageUnavailable, create_app
from .auth import AuthRequired
from .http import Limits, Server
from .metrics_peers import MetricsPeers

log = logging.getLogger("babelgate")


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("babelgate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, *,
    worker: int | None = None, supervisor_fd: int | None = None,
    limits_socket: str | None = None, metrics_dir: str | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; then let open requests finish for up to
    `server.shutdown_timeout` seconds (an agent's stream can run for minutes, and a restart must
    not wait for it). Exits with status 1 if the address cannot be bound, 2 if keys are
    required and none exists, 1 if its database cannot be used.

    `worker`: this process is worker number `worker` of `babelgate serve --workers N`
    (server/workers.py): it binds with SO_REUSEPORT beside its siblings, and stops as if sent
    SIGTERM when the supervisor that started it is gone; `supervisor_fd` is where it tells
    the supervisor that it reloaded on POST /admin/reload, so that the others reload too;
    `limits_socket` is where the supervisor keeps the keys' limit counts for all its workers
    (limits/hosted.py), used when there is no `redis:`; `metrics_dir` is where the workers
    find each other's metrics (server/metrics_peers.py)."""
    configure_logging()
    ignore_hangup()  # until the loop's handler takes SIGHUP over: it used to kill us
    host = host or settings.server.host
    port = port or settings.server.port
    peers = (MetricsPeers(metrics_dir, worker)
             if worker is not None and metrics_dir is not None else None)
    app = create_app(settings, limits_socket=limits_socket, metrics_peers=peers)
    if worker is not None and supervisor_fd is not None:
        fd, index = supervisor_fd, worker
        app.reloaded_on_request = lambda: tell_supervisor(fd, index)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            served = runner.run(_serve(app, settings, host, port, worker))
        except AuthRequired as exc:
            log.error("babelgate will not start: %s", exc)
            sys.exit(2)
        except StorageUnavailable as exc:
            log.error("babelgate will not start: %s", exc)
            sys.exit(1)
        if not served:
            sys.exit(1)


async def _parent_gone(stop: asyncio.Event, interval: float = 1.0) -> None:
    """Sets `stop` once this process's parent has changed (the supervisor died without
    stopping its workers, e.g. killed with SIGKILL): a worker must not serve on alone."""
    parent = os.getppid()
    with contextlib.suppress(asyncio.CancelledError):
        while os.getppid() == parent:
            await asyncio.sleep(interval)
        log.warning("the supervisor (pid %d) is gone: stopping", parent)
        stop.set()


def tell_supervisor(fd: int, worker: int) -> None:
    """From worker number `worker`: it reloaded on request; the supervisor has the others
    reload too (a few bytes into a pipe the supervisor keeps reading: never blocks long)."""
    try:
        os.write(fd, f"reload {worker}\n".encode())
    except OSError as exc:  # the supervisor is gone: the worker stops soon
        log.warning("cannot tell the supervisor to reload the other workers: %s", exc)


def ignore_hangup() -> None:
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None:
        signal.signal(hangup, signal.SIG_IGN)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # not on Windows: asyncio's own loop serves there, more slowly
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(app: App, settings: Settings, host: str, port: int,
                 worker: int | None = None) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hangup is not None:
        loop.add_signal_handler(hangup, app.request_reload, "SIGHUP")
    server = Server(app, app.refusal, limits(settings.server, raise_open_files_limit()))
    await app.start()
    try:
        try:
            await server.listen(host, port, reuse_port=worker is not None)
        except OSError as exc:
            log.error("babelgate cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            return False
        who = "babelgate" if worker is None else f"babelgate worker {worker} (pid {os.getpid()})"
        log.info(
            "%s listening on http://%s:%d (config: %s, providers: %s, storage: %s)",
            who, host, port, settings.source, ", ".join(settings.providers) or "none", app.db.url,
        )
        if not app.auth.active and not loopback(host):
            log.warning(
                "WARNING: babelgate listens on %s without gateway keys: anyone who can reach "
                "this port spends your provider keys. Create a key with `babelgate keys "
                "create NAME` (and set auth.required: true), or listen on 127.0.0.1.", host)
        orphaned = None if worker is None else loop.create_task(_parent_gone(stop))
        await stop.wait()
        if orphaned is not None:
            orphaned.cancel()
        await server.stop(app.settings.server.shutdown_timeout)  # a reload may have changed it
        return True
    finally:
        await app.stop()


def loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def limits(config: ServerConfig, open_files: int | None = None) -> Limits:
    """The HTTP server's limits from the `server:` settings. With `open_files` (the
    process's limit on descriptors), the connection cap leaves room for an upstream
    connection per client and some to spare: a cap the system cannot honour would turn
    clients away with errors from accept() instead of a clear 503."""
    max_connections = config.max_connections
    if open_files is not None:
        room = max(1, (open_files - FILES_SPARED) // 2)
        if room < max_connections:
            log.warning("server.max_connections lowered from %d to %d: the process may open "
                        "only %d files", max_connections, room, open_files)
            max_connections = room
    return Limits(
        max_head_bytes=int(config.max_head_kb * 1024),
        max_body_bytes=int(config.max_body_mb * 2**20),
        keepalive=config.keepalive_timeout,
        head_timeout=config.head_timeout,
        body_timeout=config.body_timeout,
        max_connections=max_connections,
        max_pipelined=config.max_pipelined,
        max_unsent_bytes=int(config.max_unsent_kb * 1024),
    )


FILES_SPARED = 100  # descriptors kept for the database, logs, the upstreams' DNS and such


def raise_open_files_limit() -> int | None:
    """Raises this process's soft limit on open files to its hard limit (the soft one is
    often 1,024, far fewer connections than the gateway can serve) and returns it; None
    where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below RLIM_INFINITY
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, exc)
    return None if soft == resource.RLIM_INFINITY else soft
