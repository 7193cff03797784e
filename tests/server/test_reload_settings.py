"""What a reload may change while the gateway runs (server/reload.py apply_live): plain
settings in, settings out."""

from __future__ import annotations

from pathlib import Path

import yaml

from babelgate.config import Settings, load_settings
from babelgate.server.reload import apply_live


def settings(tmp_path: Path, name: str, **changes: object) -> Settings:
    config = {
        "providers": {"a": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"}},
        "routes": {"default": "a/m"},
        **changes,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, env={})


def test_routes_providers_and_live_server_fields_apply(tmp_path: Path) -> None:
    running = settings(tmp_path, "old.yaml")
    loaded = settings(
        tmp_path, "new.yaml", routes={"default": "a/n"},
        server={"shutdown_timeout": 3, "stream_keepalive": 0, "reload_poll": 0},
    )
    applied, pending = apply_live(running, loaded)
    assert pending == ()
    assert applied is loaded


def test_restart_only_fields_keep_their_running_values_and_are_named(tmp_path: Path) -> None:
    running = settings(tmp_path, "old.yaml", server={"port": 9000, "max_body_mb": 8})
    loaded = settings(
        tmp_path, "new.yaml", routes={"default": "a/n"},
        server={"port": 9001, "max_body_mb": 8, "reuse_mb": 1, "shutdown_timeout": 2},
        storage={"path": str(tmp_path / "other.db")},
    )
    applied, pending = apply_live(running, loaded)
    assert pending == ("server.port", "server.reuse_mb", "storage.path")
    assert applied.server.port == 9000
    assert applied.server.reuse_mb == running.server.reuse_mb
    assert applied.storage == running.storage
    # Everything else is the new file's.
    assert applied.server.shutdown_timeout == 2
    assert applied.routes == {"default": ["a/n"]}
    assert applied.source == str(tmp_path / "new.yaml")


def test_logs_and_metrics_wait_for_a_restart(tmp_path: Path) -> None:
    """The daily log file and /metrics are opened at start-up: a reload names their changes
    and keeps them as they run."""
    running = settings(tmp_path, "old.yaml", logs={"dir": str(tmp_path / "a")})
    loaded = settings(tmp_path, "new.yaml", logs={"dir": str(tmp_path / "b"), "keep_days": 2},
                      metrics=True)
    applied, pending = apply_live(running, loaded)
    assert pending == ("logs.dir", "logs.keep_days", "metrics")
    assert applied.logs == running.logs
    assert applied.metrics is False
