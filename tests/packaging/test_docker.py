"""The Dockerfile and compose.yaml: checked for what the README promises (a slim Python base, a
non-root user, the data directory a volume, a healthcheck on /health; PostgreSQL and Redis as
optional profiles), and the image built and run where a Docker daemon answers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = [pytest.mark.packaging]

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_dockerfile_is_slim_non_root_with_a_data_volume_and_a_healthcheck() -> None:
    steps = instructions()
    names = [name for name, _ in steps]
    base = [args for name, args in steps if name == "FROM"]
    assert base == ["${PYTHON_IMAGE}"]  # a build argument, so a mirror can stand in
    default = [args for name, args in steps if name == "ARG" and "PYTHON_IMAGE=" in args]
    assert len(default) == 1
    image = default[0].partition("=")[2]
    assert image.startswith("python:3.") and image.endswith("-slim")
    user = [args for name, args in steps if name == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert names.index("USER") < names.index("CMD")
    volumes = [json.loads(args) for name, args in steps if name == "VOLUME"]
    assert ["/data"] in volumes
    env = " ".join(args for name, args in steps if name == "ENV")
    assert "XDG_DATA_HOME=/data" in env  # the database and logs go to the volume
    health = next(args for name, args in steps if name == "HEALTHCHECK")
    assert "http://127.0.0.1:8080/health" in health
    cmd = json.loads(next(args for name, args in steps if name == "CMD"))
    assert cmd[:2] == ["babelgate", "serve"] and cmd[cmd.index("--port") + 1] == "8080"
    assert "8080" in next(args for name, args in steps if name == "EXPOSE")
    # Everything COPY names exists and is not excluded by .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for name, args in steps:
        if name == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def test_compose_has_babelgate_and_optional_postgres_and_redis() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"babelgate", "postgres", "redis"}
    gateway = services["babelgate"]
    assert "profiles" not in gateway  # always on
    assert gateway["build"] == "."
    assert services["postgres"]["profiles"] == ["postgres"]
    assert services["redis"]["profiles"] == ["redis"]
    # Started with its profile, each is waited for; without it, not needed.
    for name in ("postgres", "redis"):
        assert gateway["depends_on"][name] == {"condition": "service_healthy",
                                               "required": False}
        assert services[name]["healthcheck"]["test"]
    volumes = gateway["volumes"]
    assert "babelgate-data:/data" in volumes
    config = next(v for v in volumes if isinstance(v, dict))
    assert (config["source"], config["target"]) == ("./babelgate.yaml", "/data/babelgate.yaml")
    assert config["bind"]["create_host_path"] is False
    assert set(compose["volumes"]) >= {"babelgate-data", "postgres-data"}
    # Keys pass through from the user's environment, never written in the file.
    for value in gateway["environment"].values():
        assert value.startswith("${") and value.endswith(":-}")
    # The URLs the README tells PostgreSQL and Redis users to configure match the services.
    pg = services["postgres"]["environment"]
    url = (f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
           f"{pg['POSTGRES_DB']}")
    readme = (ROOT / "README.md").read_text()
    assert url in readme and "redis://redis:6379/0" in readme


def _docker_answers() -> str | None:
    """None when a Docker daemon answers; else why the image test cannot run."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed: {exc}"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return "no Docker daemon: `docker info` says " + (lines[-1] if lines else "nothing")
    return None


def test_compose_config_where_docker_compose_exists(tmp_path: Path) -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                           check=False) if shutil.which("docker") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no `docker compose` plugin here: compose.yaml checked structurally only")
    work = tmp_path / "compose"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info"))
    (work / "babelgate.yaml").write_text("providers: {}\n")
    for profiles in ([], ["--profile", "postgres", "--profile", "redis"]):
        done = subprocess.run(["docker", "compose", *profiles, "config", "--services"],
                              cwd=work, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        expected = {"babelgate"} | ({"postgres", "redis"} if profiles else set())
        assert set(done.stdout.split()) == expected


BASE_VARIABLE = "BABELGATE_TEST_PYTHON_IMAGE"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _base_image() -> str:
    """The base to build on: $BABELGATE_TEST_PYTHON_IMAGE (a local stand-in, see
    scripts/docker-base.sh), else the Dockerfile's default, pulled when missing; skips
    saying why when neither is there."""
    wanted = os.environ.get(BASE_VARIABLE, "")
    if wanted:
        if _docker("image", "inspect", wanted).returncode != 0:
            pytest.skip(f"{BASE_VARIABLE}={wanted} is not an image in the local Docker")
        return wanted
    default = next(args.partition("=")[2] for name, args in instructions()
                   if name == "ARG" and args.startswith("PYTHON_IMAGE="))
    if _docker("image", "inspect", default).returncode == 0:
        return default
    pulled = _docker("pull", default, timeout=600)
    if pulled.returncode != 0:
        lines = (pulled.stderr or pulled.stdout).strip().splitlines()
        pytest.skip(f"the base image {default} cannot be pulled here "
                    f"({lines[-1] if lines else 'no answer'}); scripts/docker-base.sh makes "
                    f"a local stand-in, named by {BASE_VARIABLE}")
    return default


class FakeUpstreamProcess:
    """A fake OpenAI upstream as its own process (python -m tests.fakes), listening where a
    container reaches the host: the bridge network's gateway address."""

    def __init__(self, host: str, key: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes", "--protocol", "openai", "--host", host,
             "--port", "0", "--api-key", key],
            cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        first = self.process.stderr.readline()  # "fake openai listening on http://..."
        assert "listening on" in first, first
        said = urlsplit(first.split()[-1])  # it names 127.0.0.1 whatever its host
        self.base_url = f"http://{host}:{said.port}{said.path}"

    def seen(self) -> list[str]:
        """The request lines it logged, once it has stopped."""
        self.process.terminate()
        _, rest = self.process.communicate(timeout=20)
        return rest.splitlines()


@pytest.mark.skipif(_docker_answers() is not None, reason=str(_docker_answers()))
def test_the_image_builds_runs_as_non_root_serves_a_request_and_becomes_healthy(
        tmp_path: Path) -> None:
    base = _base_image()
    tag = f"babelgate-test:{uuid.uuid4().hex[:8]}"
    name = f"babelgate-test-{uuid.uuid4().hex[:8]}"
    # Host networking for the build's pip, which must reach the package index whatever the
    # daemon's bridge may reach (a daemon run without its iptables rules has no NAT).
    build = _docker("build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
                    "-t", tag, str(ROOT), timeout=1500)
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    upstream = FakeUpstreamProcess(_host_seen_from(tag), "sk-upstream-secret")
    config = tmp_path / "babelgate.yaml"
    config.write_text(f"providers:\n  up: {{type: openai, base_url: '{upstream.base_url}', "
                      "api_key: '${UP_KEY}'}\nroutes:\n  default: up/test-model\n")
    config.chmod(0o644)  # read by the image's unprivileged user
    port = _free_port()
    try:
        assert _docker("run", "--rm", tag, "id", "-u").stdout.strip() not in ("", "0")
        started = _docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                          "-e", "UP_KEY=sk-upstream-secret",
                          "-v", f"{config}:/data/babelgate.yaml:ro", tag)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        health = _wait_json(url + "/health", 90)
        assert [p["name"] for p in health["providers"]] == ["up"], health
        answer = _post_json(url + "/v1/chat/completions", {
            "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        assert answer["choices"][0]["message"]["content"] == "Fake reply.", answer
        assert answer["usage"]["total_tokens"] > 0
        state = ""
        deadline = time.monotonic() + 120  # the first healthcheck runs after its interval
        while time.monotonic() < deadline and state not in ("healthy", "unhealthy"):
            time.sleep(2)
            state = _docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        assert state == "healthy", _docker("logs", name).stderr[-3000:]
        # The database is in the /data volume, written by the unprivileged user.
        listing = _docker("exec", name, "ls", "-ln", "/data/babelgate").stdout
        assert "babelgate.db" in listing and " 10001 " in listing, listing
        logs = _docker("logs", name)
        assert "sk-upstream-secret" not in logs.stdout + logs.stderr
    finally:
        _docker("rm", "-f", "-v", name)
        _docker("rmi", "-f", tag)
        seen = upstream.seen()
    assert "POST /v1/chat/completions" in seen, seen


def _host_seen_from(tag: str) -> str:
    """This machine's address as a container on the default network reaches it: the
    container's default gateway (its routing table), whatever the daemon's bridge setup."""
    table = _docker("run", "--rm", tag, "cat", "/proc/net/route").stdout.splitlines()
    for row in table[1:]:
        fields = row.split()
        if len(fields) > 2 and fields[1] == "00000000":  # the default route
            return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    raise AssertionError(f"no default route in the container: {table}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_json(url: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                data: dict[str, Any] = json.loads(answer.read())
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        data: dict[str, Any] = json.loads(answer.read())
        return data
