"""The Dockerfile and compose.yaml: checked for what the README promises (a slim Python base, a
non-root user, the data directory a volume, a healthcheck on /health; PostgreSQL and Redis as
optional profiles), and the image built and run where a Docker daemon answers."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

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
    assert len(base) == 1 and base[0].startswith("python:3.") and base[0].endswith("-slim")
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


@pytest.mark.skipif(_docker_answers() is not None, reason=str(_docker_answers()))
def test_the_image_builds_runs_as_non_root_and_becomes_healthy() -> None:
    tag = f"babelgate-test:{uuid.uuid4().hex[:8]}"
    name = f"babelgate-test-{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True,
                           text=True, timeout=900, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        uid = subprocess.run(["docker", "run", "--rm", tag, "id", "-u"], capture_output=True,
                             text=True, timeout=120, check=True).stdout.strip()
        assert uid != "0"
        subprocess.run(["docker", "run", "-d", "--name", name, tag], check=True,
                       capture_output=True, timeout=120)
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True, text=True, timeout=30, check=False).stdout.strip()
            if state in ("healthy", "unhealthy"):
                break
            time.sleep(2)
        assert state == "healthy", subprocess.run(["docker", "logs", name], capture_output=True,
                                                  text=True, check=False).stderr[-3000:]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
