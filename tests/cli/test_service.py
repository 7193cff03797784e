"""`babelgate service install|uninstall|status` as real processes with a HOME of their own:
the unit file written (and readable by systemd's own parser where systemd-analyze exists),
systemctl run only where it exists, each command it ran printed, and its failure reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMCTL_LOG = "systemctl.log"


def service(tmp_path: Path, *args: str, path: str, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(tmp_path / "home"), "PATH": path,
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "babelgate", "service", *args],
                          cwd=cwd or tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def fake_systemctl(tmp_path: Path, exit_code: int = 0) -> str:
    """A directory holding a `systemctl` that records its arguments: PATH for the test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path / SYSTEMCTL_LOG}"\n'
        'case "$2" in is-active) echo active;; is-enabled) echo enabled;; esac\n'
        f"[ {exit_code} = 0 ] || echo 'Failed to connect to bus' >&2\n"
        f"exit {exit_code}\n")
    script.chmod(0o755)
    return str(bin_dir)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / SYSTEMCTL_LOG
    return log.read_text().splitlines() if log.exists() else []


def unit_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".config" / "systemd" / "user" / "babelgate.service"


def test_install_writes_the_unit_and_enables_it(tmp_path: Path) -> None:
    config = tmp_path / "babelgate.yaml"
    config.write_text("providers:\n  p: {type: openai, base_url: 'http://127.0.0.1:9/v1', "
                      "api_key: '${P_KEY}'}\nroutes: {default: p/m}\n")
    result = service(tmp_path, "install", path=fake_systemctl(tmp_path))
    assert result.returncode == 0, result.stderr
    unit = unit_file(tmp_path).read_text()
    assert f"ExecStart={sys.executable} -m babelgate serve --config {config}" in unit
    assert f"WorkingDirectory={tmp_path}" in unit
    assert "EnvironmentFile=-" in unit and "WantedBy=default.target" in unit
    assert calls(tmp_path) == ["--user daemon-reload", "--user enable --now babelgate.service"]
    assert "ran `systemctl --user daemon-reload`: ok" in result.stdout
    assert "ran `systemctl --user enable --now babelgate.service`: ok" in result.stdout

    status = service(tmp_path, "status", "--json", path=fake_systemctl(tmp_path))
    assert status.returncode == 0
    doc = json.loads(status.stdout)
    assert doc == {"unit": str(unit_file(tmp_path)), "installed": True, "systemctl": True,
                   "enabled": "enabled", "active": "active"}

    removed = service(tmp_path, "uninstall", path=fake_systemctl(tmp_path))
    assert removed.returncode == 0, removed.stderr
    assert not unit_file(tmp_path).exists()
    assert calls(tmp_path)[-2:] == ["--user disable --now babelgate.service",
                                    "--user daemon-reload"]


def test_without_systemctl_only_the_file_is_written(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = service(tmp_path, "install", "--no-start", path=str(empty))
    assert result.returncode == 0, result.stderr
    assert "systemctl not found" in result.stdout
    unit = unit_file(tmp_path).read_text()
    assert "--config" not in unit  # no babelgate.yaml here: providers from the environment
    status = service(tmp_path, "status", "--json", path=str(empty))
    assert status.returncode == 1
    assert json.loads(status.stdout)["installed"] is True
    assert json.loads(status.stdout)["active"] is None


def test_a_failing_systemctl_is_reported(tmp_path: Path) -> None:
    result = service(tmp_path, "install", path=fake_systemctl(tmp_path, exit_code=1))
    assert result.returncode == 1
    assert "failed (exit 1): Failed to connect to bus" in result.stdout
    assert unit_file(tmp_path).exists()  # written all the same


def test_install_and_uninstall_json(tmp_path: Path) -> None:
    failing = service(tmp_path, "install", "--json", path=fake_systemctl(tmp_path, 1))
    assert failing.returncode == 1
    doc = json.loads(failing.stdout)  # the whole of stdout: one object, no lines
    assert doc["unit"] == str(unit_file(tmp_path)) and doc["written"] is True
    assert doc["runs"] == [sys.executable, "-m", "babelgate", "serve"]
    assert doc["config"] is None and doc["error"] is None
    assert [step["command"] for step in doc["systemctl"]] == [
        "systemctl --user daemon-reload", "systemctl --user enable --now babelgate.service"]
    assert doc["systemctl"][0] == {"command": "systemctl --user daemon-reload", "ok": False,
                                   "detail": "exit 1: Failed to connect to bus"}

    missing = service(tmp_path, "install", "--json", "--config", "nope.yaml",
                      path=fake_systemctl(tmp_path))
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["error"] == "nope.yaml: file not found"

    removed = service(tmp_path, "uninstall", "--json", path=fake_systemctl(tmp_path))
    assert removed.returncode == 0, removed.stderr
    doc = json.loads(removed.stdout)
    assert doc["removed"] is True and all(step["ok"] for step in doc["systemctl"])
    again = json.loads(service(tmp_path, "uninstall", "--json",
                               path=fake_systemctl(tmp_path)).stdout)
    assert again == {"unit": str(unit_file(tmp_path)), "removed": False, "systemctl": [],
                     "error": None}


def test_a_different_unit_is_kept_without_force(tmp_path: Path) -> None:
    target = unit_file(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_text("[Service]\nExecStart=/bin/true\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = service(tmp_path, "install", path=str(empty))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert target.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert service(tmp_path, "install", "--force", path=str(empty)).returncode == 0
    assert "babelgate serve" in target.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed: the unit is not parsed by systemd")
def test_systemd_parses_the_unit(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert service(tmp_path, "install", path=str(empty)).returncode == 0
    verify = subprocess.run(["systemd-analyze", "verify", str(unit_file(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in verify.stderr.splitlines() if "babelgate.service" in line]
    assert not problems, verify.stderr
