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
    with pytest.raises(ConfigError, match=r"storage\.pth: unknown field.*known: url, path"):
        load_settings(write(tmp_path, BASE + "storage: {pth: x.db}\n"), env={})


def test_storage_url_and_its_shorthand(tmp_path: Path) -> None:
    from babelgate.storage.url import StorageURL, default_db_path

    settings = load_settings(write(tmp_path, BASE + "storage: {url: 'postgresql://bg@db/bg'}\n"),
                             env={})
    assert settings.storage.url == "postgresql://bg@db/bg"
    url = StorageURL.from_settings(settings.storage.url, settings.storage.path)
    assert (url.dialect, url.dsn) == ("postgresql", "postgresql://bg@db/bg")
    assert StorageURL.from_settings(None, "/srv/x.db") == StorageURL.sqlite("/srv/x.db")
    assert StorageURL.from_settings(None, None) == StorageURL.sqlite(default_db_path())
    assert StorageURL.parse("sqlite:///var/lib/bg.db").path == Path("/var/lib/bg.db")
    assert StorageURL.parse("sqlite:///~/bg.db").path == Path.home() / "bg.db"
    assert StorageURL.parse("sqlite://rel/bg.db").path == Path("rel/bg.db")
    hidden = StorageURL.parse("postgresql://bg:s3cret@db:5432/bg")
    assert "s3cret" not in str(hidden) and str(hidden) == "postgresql://bg:***@db:5432/bg"
    with pytest.raises(ValueError, match="needs a host"):
        StorageURL.parse("postgresql:///bg")


def test_bad_storage_url_and_auth_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.url: must start with sqlite:// or "
                       r"postgresql://.*babelgate\.yaml"):
        load_settings(write(tmp_path, BASE + "storage: {url: 'mysql://x/y'}\n"), env={})
    with pytest.raises(ConfigError, match=r"storage: give storage\.url or storage\.path"):
        load_settings(write(tmp_path, BASE + "storage: {url: 'sqlite:///a.db', path: b.db}\n"),
                      env={})
    with pytest.raises(ConfigError, match=r"auth\.requird: unknown field.*known: required"):
        load_settings(write(tmp_path, BASE + "auth: {requird: true}\n"), env={})
    settings = load_settings(write(tmp_path, BASE + "auth: {required: true}\n"), env={})
    assert settings.auth.required is True and settings.auth.refresh_interval_s == 0.5
