"""`babelgate keys` as a user runs it (a real subprocess), for the CLI and auth tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

KEY_SHAPE = re.compile(r"^bg-[A-Za-z0-9_-]{43}$")
ROOT = Path(__file__).resolve().parent.parent


def storage_config(directory: Path, storage: dict[str, str]) -> Path:
    """A configuration file with nothing but `storage:`."""
    path = directory / "keys.yaml"
    path.write_text(yaml.safe_dump({"storage": storage}))
    return path


def keys_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "babelgate", "keys", *args, "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def create(config: Path, name: str, *args: str) -> str:
    """A new key, as `keys create` printed it."""
    result = keys_cli(config, "create", name, *args)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert KEY_SHAPE.match(key), result.stdout
    return key
