"""What a user installs: the wheel built from this checkout carries every module and data
file the gateway reads; `pipx install .` and `uvx --from . babelgate` give a `babelgate` that
starts and answers /health. pipx and uv come from PyPI (test tools); they install babelgate's
dependencies from PyPI, the only outside place these tests reach. Marked `packaging`
(`pytest -m packaging`); about a minute together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "babelgate"
BIN = Path(sys.executable).parent


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serves_health(babelgate: list[str], tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """Starts the installed gateway (no provider) and returns its /health answer."""
    port = free_port()
    process = subprocess.Popen([*babelgate, "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    return {"status": str(r.status), "body": r.read().decode()}
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the installed gateway never answered /health")
    finally:
        process.terminate()
        process.wait(20)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No provider keys, a HOME of its own (the gateway's data directory goes there)."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("PATH", "LANG", "SSL_CERT_FILE", "PIP_CONFIG_FILE", "HTTPS_PROXY",
                     "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")}
    return {**keep, "HOME": str(tmp_path / "home"), **extra}


def test_the_wheel_carries_every_module_and_data_file(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, ROOT)
    wheel = next(tmp_path.glob("babelgate-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {"babelgate/books/prices.json", "babelgate/py.typed"}
    wanted |= {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")}
    static = PACKAGE / "dashboard" / "static"
    if static.is_dir():  # the dashboard's files, served by /ui without a build step
        wanted |= {str(p.relative_to(PACKAGE.parent)) for p in static.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
    assert wanted - names == set()
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_pipx_install_from_the_checkout(tmp_path: Path) -> None:
    pipx_bin = tmp_path / "bin"
    env = clean_env(tmp_path, PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(pipx_bin),
                    PIPX_MAN_DIR=str(tmp_path / "man"))
    run(sys.executable, "-m", "pipx", "install", "--python", sys.executable, ROOT, env=env)
    babelgate = pipx_bin / "babelgate"
    version = run(babelgate, "--version", env=env)
    assert version.stdout.startswith("babelgate ")
    answer = serves_health([str(babelgate)], tmp_path, env)
    assert answer["status"] == "200" and '"ok"' in answer["body"].replace(" ", "")


def test_uvx_from_the_checkout(tmp_path: Path) -> None:
    uvx = BIN / "uvx"
    assert uvx.exists(), "uv is a test tool: make test installs it"
    env = clean_env(tmp_path, UV_CACHE_DIR=str(tmp_path / "uv-cache"),
                    UV_TOOL_DIR=str(tmp_path / "uv-tools"),
                    UV_PYTHON_DOWNLOADS="never",  # the machine's Python, never a download
                    UV_NATIVE_TLS="1")  # the system's certificates, as pip uses them
    command = [str(uvx), "--python", sys.executable, "--from", str(ROOT), "babelgate"]
    version = run(*command, "--version", env=env, cwd=tmp_path)
    assert version.stdout.startswith("babelgate ")
    answer = serves_health(command, tmp_path, env)
    assert answer["status"] == "200"
