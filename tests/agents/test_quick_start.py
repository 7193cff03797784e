"""The README's quick start, followed as written, in a copy of this checkout with a HOME of its
own: `make install`, then (in a network namespace of its own, so the quick start's fixed port
8080 is free whatever else runs on this machine) the activation, the provider key and
`babelgate claude` with the real Claude Code, which completes a one-tool task against a fake
upstream standing in for the provider (BABELGATE_<NAME>_URL, the only line added).

The block is read from README.md, so the test follows the README as it stands. Agent
arguments are added to the last line (`-p ... --output-format json`): the quick start's
interactive session is the same launch with a terminal. Marked `agent` (it needs the cached
CLIs) and `packaging` (make install fetches the serving dependencies from PyPI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.agents.harness import AGENT_CACHE, PROMPT, agent_binary
from tests.conftest import ROOT

from babelgate.config import ENV_PROVIDERS, url_variable

pytestmark = [pytest.mark.agent, pytest.mark.packaging]

FAKE_PORT = 18101  # inside the namespace: nothing else listens there


def quick_start_lines() -> list[str]:
    """The commands of the first ```sh block under "## Quick start", comments removed."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start\n"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    lines = []
    for raw in block.splitlines():
        command = raw.split("  #", 1)[0].strip()
        if command:
            lines.append(command)
    return lines


def copy_checkout(target: Path) -> None:
    """What a clone of this checkout holds: tracked files and new ones not ignored."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
        capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def namespace_problem() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


def user_env(home: Path) -> dict[str, str]:
    """A new user's shell: their HOME, Claude Code on PATH, pip's own settings kept (and the
    machine's pip cache, to spare the index; the cold figure is in the report of the walk)."""
    keep = {k: v for k, v in os.environ.items()
            if k.startswith("PIP_") or k in ("LANG", "SSL_CERT_FILE", "HTTPS_PROXY",
                                               "HTTP_PROXY", "NO_PROXY")}
    system_path = os.pathsep.join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(
        os.pathsep) if not p.startswith(str(Path(sys.executable).parent)))
    return {
        **keep,
        "HOME": str(home),
        "PATH": f"{AGENT_CACHE / 'node_modules' / '.bin'}{os.pathsep}{system_path}",
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR",
                                        str(Path.home() / ".cache" / "pip")),
        # The user's own Claude Code settings, as the other agent tests have them.
        "IS_SANDBOX": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_COLOR": "1",
    }


@pytest.mark.skipif(agent_binary("claude") is None, reason="run scripts/install-agents.sh")
@pytest.mark.skipif(namespace_problem() is not None, reason=str(namespace_problem()))
def test_the_readme_quick_start_gives_a_working_claude_code(tmp_path: Path) -> None:
    lines = quick_start_lines()
    assert lines[0] == "make install" and lines[-1] == "babelgate claude", lines
    key_line = next(line for line in lines if re.fullmatch(r"export \w+=\S+", line))
    variable, key = key_line.removeprefix("export ").split("=", 1)
    spec = next(p for p in ENV_PROVIDERS if p.variable == variable)
    checkout, home, dumps = tmp_path / "babelgate", tmp_path / "home", tmp_path / "requests"
    checkout.mkdir()
    home.mkdir()
    copy_checkout(checkout)
    token = f"tok-{os.getpid()}-{time.monotonic_ns()}"
    (checkout / "marker.txt").write_text(token + "\n")
    env = user_env(home)

    began = time.monotonic()
    install = subprocess.run(shlex.split(lines[0]), cwd=checkout, env=env, capture_output=True,
                             text=True, timeout=900, check=False)
    installed = time.monotonic()
    assert install.returncode == 0, (install.stdout + install.stderr)[-4000:]
    assert "activate" in install.stdout  # it says how to put babelgate on PATH
    # Only what serving needs: none of the test tools.
    site = next((checkout / ".venv" / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("pytest*")) and not list(site.glob("playwright*"))

    claude_args = shlex.join(["-p", PROMPT, "--output-format", "json",
                              "--dangerously-skip-permissions"])
    script = "\n".join([
        "ip link set lo up",
        f"(cd {shlex.quote(str(ROOT))} && exec {shlex.quote(sys.executable)} -m tests.fakes "
        f"--protocol {spec.type} --port {FAKE_PORT} --api-key {shlex.quote(key)} "
        f"--preset {spec.preset} --dump {shlex.quote(str(dumps))}) 2>/dev/null &",
        f"for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{FAKE_PORT}) 2>/dev/null "
        "&& break; sleep 0.1; done",
        f"export {url_variable(spec.name)}=http://127.0.0.1:{FAKE_PORT}/v1",
        *lines[1:-1],
        f"{lines[-1]} {claude_args}",
        "status=$?",
        "babelgate stop >&2",
        "kill %1",
        "exit $status",
    ])
    run = subprocess.run(["unshare", "-n", "bash", "-c", script], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    finished = time.monotonic()
    explain = f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, explain
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert token in str(result.get("result")), explain
    assert "starting the gateway in the background" in run.stderr, explain
    seen = "".join(p.read_text() for p in sorted(dumps.glob("*.json")))
    assert token in seen  # the tool's output went to the provider on the second turn
    print(f"quick start: make install {installed - began:.1f} s, then babelgate claude to "
          f"its answer {finished - installed:.1f} s")
