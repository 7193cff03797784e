"""The optional `storage` section of babelgate.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelgate.config import ConfigError, load_settings

BASE = """
providers:
  oa: {type: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}
routes:
  default: oa/m
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "babelgate.yaml"
    path.write_text(text)
    return path


def test_a_file_without_storage_still_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE), env={})
    assert settings.storage.path is None
    assert settings.storage.responses_ttl_days == 30
    assert settings.storage.responses_prune_interval_s == 3600


def test_storage_path_and_ttl(tmp_path: Path) -> None:
    text = BASE + ("storage:\n  path: ${DATA}/gw.db\n  responses_ttl_days: 7\n"
                   "  responses_prune_interval_s: 60\n")
    settings = load_settings(write(tmp_path, text), env={"DATA": "/srv/bg"})
    assert settings.storage.path == "/srv/bg/gw.db"
    assert settings.storage.responses_ttl_days == 7
    assert settings.storage.responses_prune_interval_s == 60


def test_bad_storage_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.responses_ttl_days: .*positive number"):
        load_settings(write(tmp_path, BASE + "storage: {responses_ttl_days: 0}\n"), env={})
    with pytest.raises(
        ConfigError, match=r"storage\.responses_prune_interval_s: .*positive number of seconds"
    ):
        load_settings(write(tmp_path, BASE + "storage: {responses_prune_interval_s: -1}\n"),
                      env={})
    with pytest.raises(ConfigError, match=r"storage\.pth: unknown field.*known: path"):
        load_settings(write(tmp_path, BASE + "storage: {pth: x.db}\n"), env={})
