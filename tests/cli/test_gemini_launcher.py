"""`babelgate gemini`: real subprocesses, with a stand-in for Gemini CLI that writes down what
it was given (its arguments, environment, settings files, and whether the gateway answered),
so that what the launcher promises is checked without the real CLI (tests/agents has that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from babelgate.cli.background import healthy
from babelgate.cli.gemini import gemini_settings
from babelgate.cli.launch import LauncherArgs, split_args

STAND_IN = '''#!{python}
import json, os, sys, urllib.request
home = os.environ["GEMINI_CLI_HOME"]
url = os.environ["GOOGLE_GEMINI_BASE_URL"]
with urllib.request.urlopen(url + "/health", timeout=5) as answer:
    health = json.load(answer)
record = {{
    "args": sys.argv[1:], "cwd": os.getcwd(), "home": home, "url": url,
    "key": os.environ.get("GEMINI_API_KEY"), "health": health["status"],
    "settings": json.load(open(os.path.join(home, ".gemini", "settings.json"))),
    "trusted": json.load(open(os.path.join(home, ".gemini", "trustedFolders.json"))),
    "vertex": os.environ.get("GOOGLE_GENAI_USE_VERTEXAI"),
}}
json.dump(record, open(os.environ["STAND_IN_RECORD"], "w"))
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
'''


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "gemini"
    path.write_text(STAND_IN.format(python=sys.executable))
    path.chmod(0o755)
    return path


def config_file(tmp_path: Path, port: int | None = None) -> Path:
    """A configuration whose configured address (a free port) has no gateway yet, so the
    launcher starts its own there."""
    port = port or _free_port()
    path = tmp_path / "babelgate.yaml"
    path.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        "providers:\n  up: {type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: sk-x}\n"
        "routes:\n  default: up/model\n"
        f"storage: {{path: '{tmp_path / 'bg.db'}'}}\n"
    )
    return path


def launch(*args: str, cwd: Path, stand_in: Path, **env: str) -> tuple[int, dict[str, Any], str]:
    record = cwd / "record.json"
    result = subprocess.run(
        [sys.executable, "-m", "babelgate", "gemini", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd / "userhome"),
             "BABELGATE_GEMINI_BIN": str(stand_in), "STAND_IN_RECORD": str(record),
             "GOOGLE_GENAI_USE_VERTEXAI": "true", **env},
    )
    data = json.loads(record.read_text()) if record.exists() else {}
    return result.returncode, data, result.stderr


def test_starts_a_background_gateway_and_removes_the_session_home(
    tmp_path: Path, stand_in: Path
) -> None:
    config = config_file(tmp_path)
    code, seen, err = launch("--config", str(config), "-p", "fix it", "--yolo",
                             cwd=tmp_path, stand_in=stand_in, STAND_IN_EXIT="3")
    assert code == 3, err  # Gemini CLI's own exit code
    assert seen["args"] == ["-p", "fix it", "--yolo"]  # passed unchanged
    assert seen["health"] == "ok" and seen["url"].startswith("http://127.0.0.1:")
    assert seen["key"] == "babelgate" and seen["vertex"] is None
    assert seen["settings"] == gemini_settings()
    assert seen["settings"]["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert seen["trusted"] == {str(tmp_path.resolve()): "TRUST_FOLDER"}
    # The session's home is gone, the user's own was never made; the gateway runs on in
    # the background, as for every launcher, until `babelgate stop`.
    assert not Path(seen["home"]).exists()
    assert not (tmp_path / "userhome" / ".gemini").exists()
    assert healthy(seen["url"]), "the background gateway does not answer"
    stop = subprocess.run([sys.executable, "-m", "babelgate", "stop"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "HOME": str(tmp_path / "userhome")})
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop
    assert not healthy(seen["url"]), "the gateway still answers after `babelgate stop`"


def test_uses_the_gateway_at_url(tmp_path: Path, stand_in: Path) -> None:
    """--url: no gateway of its own; the key is $BABELGATE_KEY when set."""
    config = config_file(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "babelgate", "serve", "--config", str(config),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}")
        code, seen, err = launch("--url", f"http://127.0.0.1:{port}/", "--", "--url", "x",
                                 cwd=tmp_path, stand_in=stand_in, BABELGATE_KEY="bg-key-1")
    finally:
        server.terminate()
        server.wait(10)
    assert code == 0, err
    assert seen["url"] == f"http://127.0.0.1:{port}"
    assert seen["args"] == ["--url", "x"]  # after `--`, Gemini CLI's
    assert seen["key"] == "bg-key-1"


def test_missing_gemini_cli_says_how_to_get_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "babelgate", "gemini", "-p", "hi"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "@google/gemini-cli" in result.stderr


def test_split_args() -> None:
    assert split_args(["-p", "hi", "--url", "x"]) == LauncherArgs(
        agent_args=("-p", "hi", "--url", "x"))
    assert split_args(["--url=http://h:1", "--config", "c.yaml", "-m", "m"]) == LauncherArgs(
        url="http://h:1", config="c.yaml", agent_args=("-m", "m"))
    assert split_args(["--", "--config", "z"]) == LauncherArgs(agent_args=("--config", "z"))
    with pytest.raises(ValueError, match="--url needs a value"):
        split_args(["--url"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if healthy(url):
            return
        time.sleep(0.1)
    raise AssertionError(f"no gateway at {url}")
