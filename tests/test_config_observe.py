"""The `logs` and `metrics` settings: defaults, the documented example, and errors that name
the field and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelgate.config import ConfigError, load_settings


def test_defaults_write_no_file_and_serve_no_metrics(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("providers: {}\n")
    settings = load_settings(path, env={})
    assert settings.logs.dir is None and settings.metrics is False
    assert (settings.logs.keep_days, settings.logs.format, settings.logs.max_mb,
            settings.logs.backups, settings.logs.bodies) == (30, "text", 10, 5, False)
    assert load_settings(None, env={}).metrics is False  # environment mode: the same


def test_documented_logs_and_metrics(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("logs: {dir: ./logs, keep_days: 7, format: json, max_mb: 1.5, backups: 2,"
                    " bodies: true}\nmetrics: true\n")
    settings = load_settings(path, env={})
    assert settings.logs.dir == "./logs" and settings.logs.format == "json"
    assert settings.logs.max_mb == 1.5 and settings.logs.bodies is True
    assert settings.metrics is True


@pytest.mark.parametrize(("text", "field", "hint"), [
    ("logs: {format: xml}\n", "logs.format:", "text or json"),
    ("logs: {keep_days: 0}\n", "logs.keep_days:", "1 or more"),
    ("logs: {max_mb: 0}\n", "logs.max_mb:", "megabytes"),
    ("logs: {backups: -1}\n", "logs.backups:", "0 or more"),
    ("logs: {directory: x}\n", "logs.directory: unknown field", "dir, keep_days"),
    ("metrics: maybe\n", "metrics:", "true or false"),
])
def test_errors_name_the_field_and_the_file(tmp_path: Path, text: str, field: str,
                                            hint: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert field in message and str(path) in message and hint in message
