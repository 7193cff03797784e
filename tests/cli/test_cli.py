"""The babelgate command line: real subprocesses for what a user types, in-process runs for
argument handling around the (separately tested) server."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from babelgate import __version__
from babelgate.cli.main import main
from babelgate.config import Settings, load_settings


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "babelgate", *args],
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_bad_config_exits_2_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  deepseek:\n    type: openai\n    bse_url: https://api.deepseek.com/v1\n"
        "    api_key: sk-do-not-print\n"
    )
    result = run_cli("serve", "--config", str(bad), cwd=tmp_path)

    assert result.returncode == 2
    assert f"providers.deepseek.bse_url: unknown field in {bad}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "sk-do-not-print" not in result.stderr + result.stdout


def test_serve_with_missing_config_exits_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.yaml: file not found" in result.stderr


def test_help(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "init" in result.stdout
    serve_help = run_cli("serve", "--help", cwd=tmp_path)
    assert serve_help.returncode == 0
    for flag in ("--config", "--host", "--port"):
        assert flag in serve_help.stdout


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"babelgate {__version__}"


def test_no_command_prints_usage_and_exits_2(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: babelgate" in result.stderr


def test_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "99999"]) == 2
    assert "port out of range" in capsys.readouterr().err


# ---------------------------------------------------------------- init


def test_init_writes_a_loadable_example(tmp_path: Path) -> None:
    result = run_cli("init", "--yes", "--no-doctor", cwd=tmp_path,
                     env={"DEEPSEEK_API_KEY": "sk-d"})
    assert result.returncode == 0, result.stderr
    written = tmp_path / "babelgate.yaml"
    settings = load_settings(written, env={"DEEPSEEK_API_KEY": "d"})
    assert settings.routes["default"] == ["deepseek/deepseek-chat"]
    assert "sk-d" not in written.read_text()


def test_serve_names_an_unset_variable(tmp_path: Path) -> None:
    config = tmp_path / "babelgate.yaml"
    config.write_text("providers:\n  p:\n    type: openai\n    base_url: https://x.test/v1\n"
                      "    api_key: ${BG_SURELY_UNSET}\n")
    result = run_cli("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "BG_SURELY_UNSET" in result.stderr and "providers.p.api_key" in result.stderr


def test_init_does_not_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "gw.yaml"
    target.write_text("mine\n")
    assert main(["init", "--yes", "--path", str(target)]) == 1
    assert target.read_text() == "mine\n"
    assert main(["init", "--yes", "--no-doctor", "--path", str(target), "--force"]) == 0
    assert "providers:" in target.read_text()


# ---------------------------------------------------------------- serve hands over to the server


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, Any, Any]]:
    """Stands in for babelgate.server.run so serve's hand-over can be observed."""
    calls: list[tuple[Settings, Any, Any]] = []
    fake = types.ModuleType("babelgate.server.run")
    fake.serve = lambda settings, host, port, **_: calls.append((settings, host, port))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "babelgate.server.run", fake)
    return calls


CONFIG = """\
server: {host: 0.0.0.0, port: 9001}
providers:
  p: {type: openai, base_url: "https://p.test/v1", api_key: sk-hidden-value}
routes: {default: p/m}
"""


def test_serve_uses_config_host_and_port(
    tmp_path: Path, served: list[tuple[Settings, Any, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    assert main(["serve", "--config", str(path)]) == 0
    [(settings, host, port)] = served
    assert (host, port) == ("0.0.0.0", 9001)
    assert list(settings.providers) == ["p"]
    err = capsys.readouterr().err
    assert "provider p: openai https://p.test/v1" in err
    assert "sk-hidden-value" not in err


def test_serve_flags_override_config(
    tmp_path: Path, served: list[tuple[Settings, Any, Any]]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    assert main(["serve", "--config", str(path), "--host", "::1", "--port", "7000"]) == 0
    assert served[0][1:] == ("::1", 7000)


def test_serve_without_providers_still_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[tuple[Settings, Any, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY",
                 "MOONSHOT_API_KEY", "ZHIPU_API_KEY", "XAI_API_KEY", "OPENROUTER_API_KEY",
                 "SILICONFLOW_API_KEY", "OLLAMA_BASE_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 0
    [(settings, host, port)] = served
    assert settings.providers == {}
    assert (host, port) == ("127.0.0.1", 8080)
    assert "no provider configured" in capsys.readouterr().err
