"""Credentials: where a provider's key comes from, and which key the next request carries.

One source per provider (the configuration allows exactly one):
- `StaticKeys`: `api_key`, or `api_keys` taken in turn (round robin); a conversation that a
  key served stays on that key while it may serve (`pick_for`; the provider's prompt cache).
  A key the upstream refuses (401, 402, 403, 429) rests for a while and the next key serves; a
  rate limit's `Retry-After` sets how long. When every key rests, the one that wakes first
  serves anyway: a request is never stranded by resting keys. Which keys rest (and which are
  used up, and which key each conversation is on) is kept by a `KeyStates`: its own until
  routing gives it one (server/gateway.py), which keeps it across reloads and shows the rests
  in /v1/quota.
- `FileKey`: `api_key_file`, plain text or JSON with `access_token` or `api_key`; re-read
  when its mtime (or size) changes, looked at no more than once per `check_every` seconds.
- `CommandKey`: `api_key_command`, its stdout stripped, kept for `ttl` seconds and run again
  in the background before then; a failing run keeps the last good key and logs why.

What this module promises:
- `pick()` is synchronous and cheap (a comparison, at most a `stat` once a second); each
  key's outgoing header dict is built once, when the key is first seen, never per request;
- `refused()` is told what the upstream said about a key and answers which key to retry
  with: another of `api_keys`, or a file/command value read anew after a 401 (once);
- no value leaves this module except inside the headers it built: reprs show `#index`,
  log lines name the provider and the source, and `secrets()` lists every value served so
  far (bounded) so that the provider can mask each of them in what upstreams echo;
- `close()` stops what a source runs in the background (a discarded provider set, a
  reload); nothing else here needs stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from babelgate.canonical import GatewayError

log = logging.getLogger("babelgate")

Clock = Callable[[], float]
HeaderBuilder = Callable[[str], dict[str, str]]

# Statuses that say "not with this key": refused, unpaid, forbidden, rate limited.
REFUSED_STATUSES = frozenset({401, 402, 403, 429})
REST_SECONDS = 60.0  # how long a refused key of `api_keys` rests, unless Retry-After says
MAX_REST_SECONDS = 3600.0  # a Retry-After longer than this is taken as this
CHECK_EVERY = 1.0  # seconds between two looks at a key file's mtime
COMMAND_TIMEOUT = 30.0  # seconds a key command may run before it counts as failed
KEPT_SECRETS = 16  # past values kept for redaction (a file rotated every hour: 16 hours)
MAX_KEY_FILE_BYTES = 1 << 20  # a key file larger than this is not a key file


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Key:
    """One credential as a request carries it. `headers` is built once per key and only ever
    copied (`Provider.headers`), never changed."""

    index: int  # position among the provider's `api_keys`; 0 for other sources
    value: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Key(#{self.index})"


class Credentials:
    """A provider's source of keys. `bind` is called once by the provider before use."""

    kind = ""  # the configuration field the source comes from

    def __init__(self) -> None:
        self.provider = ""
        self._build: HeaderBuilder = lambda value: {}
        self._seen: list[str] = []  # every value served, newest last, for redaction

    def bind(self, provider: str, build: HeaderBuilder) -> None:
        """Name the provider (for log lines) and say how a key becomes request headers."""
        self.provider = provider
        self._build = build
        self._rebuild()

    def _rebuild(self) -> None:
        """Build the Keys of the values known so far (called once `_build` is known)."""

    def _key(self, index: int, value: str) -> Key:
        if value and value not in self._seen:
            self._seen.append(value)
            del self._seen[:-KEPT_SECRETS]
        return Key(index, value, self._build(value))

    # How many times one request may be sent with this source's keys: each refused key is
    # swapped at most so often (a file or command: one read anew).
    most_sends = 2

    def pick(self) -> Key | None:
        """The key for the next request; None while the source has none yet (`wait`)."""
        raise NotImplementedError

    def pick_for(self, conversation: str | None) -> Key | None:
        """`pick`, for a request of `conversation` (a digest naming it, or None): a source of
        several keys gives the key that served it before, while that key may serve."""
        return self.pick()

    def served(self, key: Key, conversation: str) -> None:
        """`key` answered a request of `conversation`: its next requests go there too."""

    async def wait(self) -> Key:
        """The key, once the source has one; a GatewayError saying why when it has none."""
        key = self.pick()
        if key is None:
            raise GatewayError("authentication", f"provider {self.provider} has no api key",
                               upstream=self.provider)
        return key

    async def refused(self, key: Key, status: int, retry_after: float | None) -> Key | None:
        """The upstream refused a request carrying `key` with `status`: the key to send the
        same request with now, or None when no other key is worth a try."""
        return None

    def secrets(self) -> tuple[str, ...]:
        """Every value this source has served (the newest KEPT_SECRETS), for redaction."""
        return tuple(self._seen)

    def describe(self) -> str:
        """What /health shows about the source: its kind, never a value."""
        return self.kind

    def close(self) -> None:
        """Stop background work (a command's refresh). Idempotent."""


class KeyStates(Protocol):
    """What is known of each key of `api_keys`, by its place in the list."""

    def usable(self, index: int) -> bool:
        """Whether the key may serve now: not resting, not used up."""
        ...

    def wakes(self, index: int) -> tuple[bool, float]:
        """When no key is usable, the one with the least of these serves: a key with quota
        left before a used-up one, then the one whose rest ends first."""
        ...

    def rest(self, index: int, seconds: float, reason: str) -> None:
        """The key rests for `seconds` (`reason`: what the upstream answered)."""
        ...

    def stuck(self, conversation: str) -> int | None:
        """The key that last served `conversation`, if any is remembered."""
        ...

    def keep(self, conversation: str, index: int) -> None:
        """Key `index` served `conversation`: remember it."""
        ...


class LocalKeyStates:
    """The rests of a source's keys, kept by the source itself (no routing: a provider made
    outside a gateway). Nothing is used up here; that is routing's to say."""

    def __init__(self, count: int, clock: Clock) -> None:
        self._until = [0.0] * count  # clock time each key rests until
        self._clock = clock

    def usable(self, index: int) -> bool:
        return self._until[index] <= self._clock()

    def wakes(self, index: int) -> tuple[bool, float]:
        return False, self._until[index]

    def rest(self, index: int, seconds: float, reason: str) -> None:
        self._until[index] = max(self._until[index], self._clock() + seconds)

    # Conversations are remembered by routing only (it bounds and expires what it keeps).
    def stuck(self, conversation: str) -> int | None:
        return None

    def keep(self, conversation: str, index: int) -> None:
        pass


class StaticKeys(Credentials):
    """`api_key`, or `api_keys` taken in turn; refused keys rest (see the module docstring)."""

    def __init__(self, values: tuple[str, ...], *, rest_seconds: float = REST_SECONDS,
                 max_rest: float = MAX_REST_SECONDS, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self.kind = "api_keys" if len(values) > 1 else "api_key"
        self._values = values or ("",)
        self._keys: tuple[Key, ...] = ()
        self._rest_seconds = rest_seconds
        self._max_rest = max_rest
        # Which keys rest or are used up: routing's (server/gateway.py sets it for several
        # `api_keys`), else this source's own.
        self.states: KeyStates = LocalKeyStates(len(self._values), clock)
        self._next = 0
        self.most_sends = len(self._values)

    def _rebuild(self) -> None:
        self._keys = tuple(self._key(i, v) for i, v in enumerate(self._values))

    def pick(self) -> Key:
        keys = self._keys
        if len(keys) == 1:
            return keys[0]
        # Every key rests (or is used up): the one that wakes first serves rather than
        # nobody, one with quota left first.
        return self._awake() or keys[min(range(len(keys)), key=self.states.wakes)]

    def pick_for(self, conversation: str | None) -> Key:
        if conversation is not None and len(self._keys) > 1:
            index = self.states.stuck(conversation)
            if index is not None and self.states.usable(index):
                return self._keys[index]
        return self.pick()

    def served(self, key: Key, conversation: str) -> None:
        if len(self._keys) > 1:
            self.states.keep(conversation, key.index)

    def _awake(self) -> Key | None:
        """The next key in turn that neither rests nor is used up, if any."""
        keys, usable = self._keys, self.states.usable
        count = len(keys)
        for step in range(count):
            index = (self._next + step) % count
            if usable(index):
                self._next = index + 1
                return keys[index]
        return None

    async def refused(self, key: Key, status: int, retry_after: float | None) -> Key | None:
        if len(self._keys) == 1:
            return None
        seconds = self._rest_seconds
        if status == 429 and retry_after is not None:
            # At least a second: "retry-after: 0" must not bring the key straight back.
            seconds = max(min(retry_after, self._max_rest), 1.0)
        self.rest(key.index, seconds, f"refused (HTTP {status})")
        log.warning("provider %s: key #%d of api_keys refused (HTTP %d); it rests %.0f s",
                    self.provider, key.index, status, seconds)
        return self._awake()

    def rest(self, index: int, seconds: float, reason: str = "resting") -> None:
        """Rest key `index` for `seconds`."""
        if 0 <= index < len(self._values):
            self.states.rest(index, seconds, reason)

    def describe(self) -> str:
        return f"api_keys ({len(self._values)})" if len(self._values) > 1 else self.kind


class FileKey(Credentials):
    """`api_key_file`: the key another tool keeps in a file, followed as it changes."""

    kind = "api_key_file"

    def __init__(self, path: str, *, check_every: float = CHECK_EVERY,
                 clock: Clock = time.monotonic) -> None:
        super().__init__()
        self.path = os.path.expanduser(path)
        self._check_every = check_every
        self._clock = clock
        self._checked = float("-inf")
        self._stamp: tuple[int, int, int] | None = None  # mtime_ns, size, inode
        self._value: str | None = None
        self._current: Key | None = None
        self._problem = "not read yet"

    def _rebuild(self) -> None:
        self._look(force=True)

    def pick(self) -> Key | None:
        now = self._clock()
        if now - self._checked >= self._check_every:
            self._checked = now
            self._look()
        return self._current

    async def wait(self) -> Key:
        key = self.pick()
        if key is None:
            raise GatewayError("authentication", f"provider {self.provider} has no api key: "
                               f"api_key_file {self.path} {self._problem}",
                               upstream=self.provider)
        return key

    async def refused(self, key: Key, status: int, retry_after: float | None) -> Key | None:
        if status != 401:
            return None
        self._checked = self._clock()
        self._look(force=True)
        current = self._current
        return current if current is not None and current.value != key.value else None

    def _look(self, force: bool = False) -> None:
        """Read the file if it changed (or `force`). A stat and, rarely, a read of a small
        local file: microseconds, cheaper than handing them to a thread."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._trouble(f"cannot be read ({exc.strerror})")
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            self._trouble(f"cannot be read ({exc.strerror})")
            return
        value, problem = key_from_text(raw)
        if value is None:
            self._trouble(problem)
            return
        if value != self._value:
            if self._value is not None:
                log.info("provider %s: api_key_file %s changed; its new key serves",
                         self.provider, self.path)
            self._value = value
            self._current = self._key(0, value)
        self._problem = ""

    def _trouble(self, problem: str) -> None:
        """Keep the last good key; say what is wrong once per new problem."""
        if problem != self._problem:
            kept = "; the last key read stays in use" if self._current is not None else ""
            log.warning("provider %s: api_key_file %s %s%s", self.provider, self.path,
                        problem, kept)
        self._problem = problem


def key_from_text(raw: bytes) -> tuple[str | None, str]:
    """The key in a key file's bytes, or None and what is wrong (never quoting the file)."""
    if len(raw) > MAX_KEY_FILE_BYTES:
        return None, f"is larger than {MAX_KEY_FILE_BYTES} bytes"
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    if text.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None, "starts with '{' but is not valid JSON"
        for name in ("access_token", "api_key"):
            found = data.get(name) if isinstance(data, dict) else None
            if isinstance(found, str) and found.strip():
                text = found.strip()
                break
        else:
            return None, "is JSON without a string access_token or api_key"
    return _one_line(text)


def _one_line(text: str) -> tuple[str | None, str]:
    if not text:
        return None, "is empty"
    if "\n" in text or "\r" in text:
        return None, "holds more than one line (a key is one line)"
    return text, ""


class CommandKey(Credentials):
    """`api_key_command`: a shell command that prints the key (a vault, a CLI's token)."""

    kind = "api_key_command"

    def __init__(self, command: str, ttl: float = 300.0, *, timeout: float = COMMAND_TIMEOUT,
                 refresh_at: float = 0.8, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self.command = command
        self.ttl = ttl
        self._timeout = timeout
        self._refresh_at = refresh_at  # share of ttl after which the background run starts
        self._clock = clock
        self._current: Key | None = None
        self._stale_at = float("-inf")  # clock time at which a new run is due
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._problem = "has not run yet"
        self._closed = False
        self.runs = 0

    def pick(self) -> Key | None:
        if self._clock() >= self._stale_at and self._task is None and not self._closed:
            # A safety net (the timer below normally runs it first); no loop running means
            # no request either (a provider made by a script): nothing to start then.
            with contextlib.suppress(RuntimeError):
                _ = self._start()
        return self._current

    async def wait(self) -> Key:
        key = self.pick()
        if key is None:
            await self._run_shared()
            key = self._current
        if key is None:
            raise GatewayError("authentication", f"provider {self.provider} has no api key: "
                               f"its api_key_command {self._problem}", upstream=self.provider)
        return key

    async def refused(self, key: Key, status: int, retry_after: float | None) -> Key | None:
        if status != 401:
            return None
        if self._current is key:  # nobody ran it since this request's key was picked
            await self._run_shared()
        current = self._current
        return current if current is not None and current.value != key.value else None

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # ------------------------------------------------------------------ running the command
    def _start(self) -> asyncio.Task[None]:
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(self._run())
        return task

    async def _run_shared(self) -> None:
        """Run the command, or wait for the run under way (several 401s at once run it
        once); a caller cancelled while waiting does not cancel the run."""
        await asyncio.shield(self._start())

    async def _run(self) -> None:
        try:
            value, problem = await self._execute()
        finally:
            self._task = None
        self.runs += 1
        now = self._clock()
        if value is None:
            retry = min(30.0, self.ttl * (1 - self._refresh_at))
            if problem != self._problem or self._current is None:
                kept = "; the last good key stays in use" if self._current else ""
                log.warning("provider %s: api_key_command %s%s", self.provider, problem, kept)
            self._problem = problem
            self._stale_at = now + retry
        else:
            if self._current is None or value != self._current.value:
                self._current = self._key(0, value)
            self._problem = ""
            self._stale_at = now + self.ttl * self._refresh_at
        self._schedule(self._stale_at - now)

    def _schedule(self, delay: float) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            _ = self._start()

    async def _execute(self) -> tuple[str | None, str]:
        """The command's key, or None and what went wrong (stderr's last line, masked)."""
        try:
            process = await asyncio.create_subprocess_shell(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        except OSError as exc:
            return None, f"could not start ({exc.strerror})"
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            return None, f"did not finish within {self._timeout:g} s"
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
            raise
        if process.returncode != 0:
            return None, f"failed (exit status {process.returncode}){self._said(err)}"
        try:
            text = out.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None, "printed something that is not UTF-8 text"
        value, problem = _one_line(text)
        return value, (f"printed a key that {problem.removeprefix('is ')}"
                       if value is None else "")

    def _said(self, err: bytes) -> str:
        """The last line the command wrote to stderr, with every key we know masked."""
        lines = err.decode("utf-8", "replace").strip().splitlines()
        if not lines:
            return ""
        line = lines[-1][:200]
        for secret in self._seen:
            line = line.replace(secret, "***")
        return f": {line}"


def credentials_from(
    api_key: str | None = None,
    api_keys: list[str] | tuple[str, ...] | None = None,
    api_key_file: str | None = None,
    api_key_command: str | None = None,
    api_key_ttl: float = 300.0,
) -> Credentials:
    """The source the configuration names (it allows one); a plain key otherwise."""
    if api_keys:
        return StaticKeys(tuple(api_keys))
    if api_key_file:
        return FileKey(api_key_file)
    if api_key_command:
        return CommandKey(api_key_command, api_key_ttl)
    return StaticKeys((api_key or "",))
