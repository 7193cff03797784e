"""Where a project's directory may be: the path rules of POST /v1/projects.

- Without `path`, the gateway makes a directory of its own under `projects_dir` (named by
  the project's id, so names never collide) and deletes it with the project.
- With `path`, it must be an existing directory at or under one of `claude_code.roots`
  (after resolving symlinks and `..`, so a link cannot lead out of a root). The gateway
  never deletes such a directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from babelgate.canonical import GatewayError, invalid

MAX_NAME = 200


def check_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("`name` is required: a non-empty string", "name")
    if len(value) > MAX_NAME:
        raise invalid(f"`name` is longer than {MAX_NAME} characters", "name")
    # PostgreSQL refuses a NUL in text: that would be the database's 500, not the client's 400.
    if "\x00" in value:
        raise invalid("`name` must not contain NUL", "name")
    return value.strip()


def allowed_path(value: object, roots: Sequence[Path]) -> Path:
    """The resolved directory `value` names, if the operator's roots allow it."""
    if not isinstance(value, str) or not value.strip():
        raise invalid("`path` must be a non-empty string (or leave it out to have the "
                      "gateway create the project's directory)", "path")
    if not roots:
        raise GatewayError("permission", "a project may name an existing `path` only under "
                           "a directory the operator allows (`claude_code.roots` in the "
                           "gateway's configuration), and none is configured", param="path")
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        raise invalid("`path` must be absolute", "path")
    try:
        resolved = path.resolve()
        is_dir = resolved.is_dir()
    except (ValueError, OSError):  # a NUL in it, a name too long, a loop of links
        raise invalid(f"`path` {value[:200]!r} cannot be a directory's path", "path") from None
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise GatewayError("permission", f"`path` {value[:200]!r} is not under an allowed root "
                           f"(claude_code.roots: {allowed})", param="path")
    if not is_dir:
        raise invalid(f"`path` {value[:200]!r} is not an existing directory", "path")
    return resolved


def resolved_roots(roots: Sequence[str]) -> tuple[Path, ...]:
    return tuple(Path(os.path.expanduser(root)).resolve() for root in roots)
