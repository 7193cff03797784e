"""One running Claude Code CLI: a user line in, its output lines out.

The CLI runs as `claude -p --input-format stream-json --output-format stream-json ...` with
stdin left open, so one process serves a session's turns one after another (each turn ends
with a `result` line). Its stderr is kept (the last few KB) to explain a process that died.
`stop()` ends it (stdin closed, then SIGTERM, then SIGKILL); `kill()` ends it at once, for a
turn that must not go on (a client that left, a process that went silent). Whoever started
it waits for its exit (`exited`): asyncio reaps the child, so none is left a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from babelgate.canonical import GatewayError

# The longest output line accepted: a tool's result in an `user` line can be large, but a
# line past this is a CLI gone wrong, not something to hold.
MAX_LINE = 32 * 2**20
_STDERR_KEPT = 4096


class CliProcess:
    __slots__ = ("_stderr", "_stderr_task", "cwd", "key", "last_used", "model", "process")

    def __init__(self, process: asyncio.subprocess.Process, key: str | None, model: str,
                 cwd: str) -> None:
        self.process = process
        self.key = key  # the session it serves; None: a one-off request
        self.model = model
        self.cwd = cwd
        self.last_used = time.monotonic()
        self._stderr = b""
        self._stderr_task = asyncio.create_task(self._keep_stderr())

    @classmethod
    async def start(cls, argv: Sequence[str], env: Mapping[str, str], cwd: str,
                    key: str | None, model: str, binary_name: str) -> CliProcess:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=MAX_LINE, start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise GatewayError(
                "api_error", f"cannot start the Claude Code CLI {binary_name!r}: {exc.strerror}"
                " (set the provider's `binary` to its path)", status=502) from None
        return cls(process, key, model, cwd)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, line: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(orjson.dumps(line) + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise self.died() from None

    async def read(self, timeout: float) -> dict[str, Any]:
        """The next output line; a GatewayError when the CLI is silent for `timeout`
        seconds (it is killed then) or ends."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            raw = await asyncio.wait_for(stdout.readline(), timeout)
        except TimeoutError:
            self.kill()
            raise GatewayError(
                "timeout", f"Claude Code produced nothing for {timeout:g} s (the provider's "
                "`timeout`); its process was stopped", status=504) from None
        except (ValueError, asyncio.LimitOverrunError):
            self.kill()
            raise GatewayError("connection", "Claude Code wrote an output line larger than "
                               f"babelgate accepts ({MAX_LINE} bytes)", status=502) from None
        if not raw:
            raise await self._ended()
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}  # not a stream-json line (a warning printed to stdout): skipped
        return line if isinstance(line, dict) else {}

    async def _ended(self) -> GatewayError:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 1)
        return self.died()

    def died(self) -> GatewayError:
        code = self.process.returncode
        said = self._stderr.decode(errors="replace").strip()[-800:]
        how = f"exited with status {code}" if code is not None else "closed its output"
        return GatewayError("connection", f"Claude Code {how}" + (f": {said}" if said else ""),
                            status=502)

    async def _keep_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self._stderr = (self._stderr + chunk)[-_STDERR_KEPT:]

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)  # its own group: what it started goes too

    async def stop(self, grace: float = 3.0) -> None:
        """End the process (its session can be resumed later) and wait for its exit."""
        if self.alive:
            stdin = self.process.stdin
            if stdin is not None:
                stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, 15)
                try:
                    await asyncio.wait_for(self.process.wait(), grace)
                except TimeoutError:
                    self.kill()
        await self.exited()

    async def exited(self) -> int:
        code = await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._stderr_task
        return code


def resolve_binary(binary: str, env: Mapping[str, str]) -> str:
    """`binary` as a path: as given when it names one, else found on the PATH of `env`."""
    if os.sep in binary:
        return str(Path(binary).expanduser())
    for folder in (env.get("PATH") or os.defpath).split(os.pathsep):
        candidate = Path(folder) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return binary  # not found: starting it says so
