"""Hot reload: which settings a running gateway can take from a new configuration, and
noticing that its file was edited.

What this module promises:
- `apply_live(running, loaded)` gives the settings to run with after a reload: `loaded`, except
  that every field only a restart can change (the listening address, the HTTP server's limits,
  the reuse tables' size, storage: RESTART_ONLY) keeps its running value; the names of those
  that differ come back too, to be logged and shown in /health until a restart.
- `FileWatch` looks at a file's modification time, size and inode every `interval` seconds
  (mtime polling: no platform notifier, works on every filesystem) and calls `on_change` once a
  new look has held still for one interval, so a save still being written is not read half
  way. A missing file is not a change (editors replace files by renaming); its return is.
- `ReloadStatus` is what /health reports: when the running configuration was loaded, the
  last reload's error, how many reloads were applied, what waits for a restart.
Nothing here runs per request: the app swaps one attribute (its Gateway) on a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from babelgate.config import ENV_SOURCE, Settings

log = logging.getLogger("babelgate")

# Fields of `server:` a reload applies; all its others need a restart (a field added later
# is safe by default: it waits for a restart until someone makes it live here).
LIVE_SERVER_FIELDS = frozenset({"shutdown_timeout", "stream_keepalive", "reload_poll"})
# Top-level sections a reload never applies: what they configure was opened at start-up.
RESTART_SECTIONS = ("storage", "logs", "auth", "claude_code")

# What identifies one version of a file: (mtime in ns, size, inode).
Signature = tuple[int, int, int]


def apply_live(running: Settings, loaded: Settings) -> tuple[Settings, tuple[str, ...]]:
    """The settings to switch to, and the dotted names of fields that differ in `loaded` but
    keep their running values until a restart."""
    pending: list[str] = []
    server_kept = _kept(running.server, loaded.server, "server", LIVE_SERVER_FIELDS, pending)
    update: dict[str, Any] = {}
    if server_kept:
        update["server"] = loaded.server.model_copy(update=server_kept)
    if running.redis != loaded.redis:  # the limiter connected to it at start-up
        update["redis"] = running.redis
        pending.append("redis")
    for section in RESTART_SECTIONS:
        old, new = getattr(running, section), getattr(loaded, section)
        if _kept(old, new, section, frozenset(), pending):
            update[section] = old
    if loaded.metrics != running.metrics:  # the /metrics route is made at start-up
        update["metrics"] = running.metrics
        pending.append("metrics")
    return (loaded.model_copy(update=update) if update else loaded), tuple(pending)


def _kept(running: BaseModel, loaded: BaseModel, prefix: str, live: frozenset[str],
          pending: list[str]) -> dict[str, Any]:
    """Running values of the restart-only fields of one section that `loaded` changes."""
    kept: dict[str, Any] = {}
    for name in type(running).model_fields:
        if name in live:
            continue
        old = getattr(running, name)
        if old != getattr(loaded, name):
            kept[name] = old
            pending.append(f"{prefix}.{name}")
    return kept


def config_file(settings: Settings) -> str | None:
    """The file `settings` were read from; None when they came from the environment."""
    return None if settings.source == ENV_SOURCE else settings.source


def file_signature(path: str) -> Signature | None:
    """The version of the file at `path`, or None if there is none (blocking: a stat)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    loaded_at: float  # epoch seconds: when the running configuration was loaded
    error: str | None = None  # why the last reload was refused; None once one succeeds
    reloads: int = 0  # reloads applied since start
    restart_pending: tuple[str, ...] = ()  # fields changed in the file, applied at a restart

    def loaded_at_text(self) -> str:
        return _iso(self.loaded_at)

    def describe(self) -> dict[str, Any]:
        return {
            "config_loaded_at": self.loaded_at_text(),
            "config_error": self.error,
            "reloads": self.reloads,
            "config_restart_pending": list(self.restart_pending),
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class FileWatch:
    """Calls `on_change` when the file at `path` changes (see the module docstring). `seen` is
    the version last read: whoever reads the file (a reload for any reason) sets it, so a
    version is read once whatever made the gateway read it. `path` and `interval` may be
    changed while it runs (a reload does): the next look uses them; a `path` of None or an
    `interval` of 0 ends the watching until `start` is called again."""

    def __init__(self, on_change: Callable[[], Awaitable[object]]) -> None:
        self.path: str | None = None
        self.interval = 0.0
        self.seen: Signature | None = None
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Watch, if there is a file and an interval (and no look runs already)."""
        if self.path is not None and self.interval > 0 and not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        settling: Signature | None = None  # a new version, waiting to hold still
        while self.path is not None and self.interval > 0:
            await asyncio.sleep(self.interval)
            path = self.path
            if path is None:
                break
            now = await asyncio.to_thread(file_signature, path)
            if now is None or now == self.seen:
                settling = None
                continue
            if now != settling:  # changed since the last look: still being written, maybe
                settling = now
                continue
            settling, self.seen = None, now
            try:
                await self._on_change()
            except Exception:  # a bug of ours must not end the watching
                log.exception("configuration reload after %s changed failed", path)
