"""`type: claude-code`: a provider that is a local program, not an HTTP upstream.

Its attempts do not render a body for a codec: the gateway asks the runtime
(claude_code/runtime.py) for the turn's canonical events, which every inbound codec
encodes (`local = True` tells the gateway so). Everything per request that can be decided
at start-up is decided here once: the CLI's path, its environment, the fixed part of its
command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from babelgate.config import ProviderConfig
from babelgate.protocols import get_codec
from babelgate.providers.credentials import StaticKeys
from babelgate.providers.presets import DEFAULT_QUIRKS
from babelgate.providers.provider import Provider

from .chunking import Chunking
from .pool import ProcessPool
from .process import resolve_binary

# Claude Code's own traffic that a gateway has no use for (telemetry, update checks, error
# reports); a provider's `env` may set them otherwise.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
_SECRET_NAMES = ("KEY", "TOKEN", "SECRET", "PASSWORD")


class ClaudeCodeProvider(Provider):
    type = "claude-code"
    local = True  # served by a process of ours, not over HTTP (server/gateway.py)

    def __init__(self, name: str, config: ProviderConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        # Not Provider.__init__: no base URL, no codec of its own, no key of its own (the
        # CLI's login, or what `env` gives it). The Anthropic codec stands in where code
        # that is not the request path asks for one.
        self.name = name
        self.preset = None
        self.base_url = ""
        self.quirks = DEFAULT_QUIRKS["anthropic"]
        self.timeout = config.timeout
        self.codec = get_codec("anthropic")
        self.route = None
        self._extra_headers = {}
        self.keys = StaticKeys(("",))
        self.keys.bind(name, self._build_headers)
        self.tools = tuple(config.tools)
        self.permission_mode = config.permission_mode
        self.chunking: Chunking = config.chunking
        base = dict(os.environ if environ is None else environ)
        # As root the CLI refuses to skip permissions unless told it is sandboxed, and only
        # `1` tells it so (an inherited IS_SANDBOX=yes does not).
        sandbox = {"IS_SANDBOX": "1"} if os.geteuid() == 0 else {}
        self.env = {**base, **QUIET_ENV, **sandbox, **config.env}
        self.binary_name = config.binary
        self.binary = resolve_binary(config.binary, self.env)
        self._secrets = tuple(value for key, value in config.env.items()
                              if len(value) >= 8 and any(s in key.upper() for s in _SECRET_NAMES))
        self.pool = ProcessPool(name, config.max_processes, config.idle_timeout,
                                config.queue_timeout)
        self._fixed = self._fixed_arguments()

    def _fixed_arguments(self) -> list[str]:
        argv = [self.binary, "-p", "--input-format", "stream-json",
                "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                "--tools", ",".join(self.tools)]
        if self.tools:  # the tools it may use run without asking (nobody could answer)
            argv += ["--allowedTools", ",".join(self.tools)]
        if self.permission_mode != "default":
            argv += ["--permission-mode", self.permission_mode]
        return argv

    def command(self, model: str, *, session: str | None, resume: bool,
                system: str | None) -> list[str]:
        """The CLI's command line for one process: `session` is the CLI's session id (None:
        a one-off that keeps nothing); `resume`: that session has turns already."""
        argv = [*self._fixed, "--model", model]
        if session is None:
            argv.append("--no-session-persistence")
        elif resume:
            argv += ["--resume", session]
        else:
            argv += ["--session-id", session]
        if system:
            argv += ["--append-system-prompt", system]
        return argv

    def url(self, model: str, stream: bool) -> str:
        return ""  # nothing is sent over HTTP

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "binary": self.binary_name,
                "tools": list(self.tools), "permission_mode": self.permission_mode,
                "processes": self.pool.stats()}

    def close(self) -> None:
        self.pool.retire()

    async def shutdown(self) -> None:
        await self.pool.close()
