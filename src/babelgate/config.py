"""Configuration: babelgate.yaml, or providers discovered from environment variables.

What this module promises:
- `load_settings()` returns a validated `Settings` or raises `ConfigError`; every error names
  the field path and the file, with a hint on how to fix it, and never shows an api_key.
- `${VAR}` and `${VAR:-default}` expand in every string value of the file (`$${` is a literal
  `${`); an unset variable without a default is a ConfigError naming the variable, the field
  and the file (`${VAR:-}` asks for an empty value explicitly).
- Routes are normalised: every route maps to a non-empty list of targets, and every target
  names a configured provider (`provider`, `provider/*` or `provider/model`). A rule's `to`
  is normalised and checked the same way; its `set` and `remove` name only fields an edit may
  touch (babelgate.canonical.edits), with values of their type.
- Without a file, providers come from well-known API-key variables, with default routes that
  send Claude model names somewhere sensible (see docs/configuration.md).
Configuration is read at start-up and again on a reload (server/reload.py); nothing here
runs per request.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from babelgate.canonical.edits import EditError, check_removable, settable_value
from babelgate.providers.presets import PRESET_NAMES
from babelgate.providers.proxy import parse_proxy, proxy_from_env

DEFAULT_CONFIG_FILE = "babelgate.yaml"
ENV_SOURCE = "environment"

NO_PROVIDER_HINT = (
    "babelgate has no upstream provider configured. Set an API key in the environment "
    "before starting it (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, DEEPSEEK_API_KEY, "
    "MOONSHOT_API_KEY, ZHIPU_API_KEY, XAI_API_KEY, OPENROUTER_API_KEY, SILICONFLOW_API_KEY, "
    "or OLLAMA_BASE_URL for a local Ollama), or write a babelgate.yaml (`babelgate init` "
    "creates an example) and start it with `babelgate serve --config babelgate.yaml`."
)

ProviderType = Literal["openai", "anthropic", "gemini", "openai-responses", "claude-code"]
# The permission modes Claude Code's --permission-mode takes (2.1), and `default`: no flag.
PermissionMode = Literal[
    "default", "acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"
]
Chunking = Literal["token", "word", "sentence", "message"]
# Fields only a `type: claude-code` provider reads (claude_code/): refused on the others.
_CLAUDE_CODE_FIELDS = ("binary", "env", "tools", "permission_mode", "max_processes",
                       "idle_timeout", "queue_timeout", "chunking")


class ConfigError(Exception):
    """The configuration cannot be used. The message names the field and the file."""


# ---------------------------------------------------------------------------- models


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Seconds open streams get to finish after SIGTERM; then they end with an error event.
    shutdown_timeout: int = Field(default=10, ge=0)
    # Megabytes of memory for request pieces kept for reuse across turns
    # (protocols/reuse.py), about 1 MB per 85 KB of request JSON. 0 turns reuse off.
    reuse_mb: float = Field(default=40, ge=0)
    # One reuse table for every caller even once gateway keys exist; by default each key
    # gets a partition of its own, so no caller can time another's pieces.
    reuse_shared: bool = False
    # Megabytes of an upstream's answer held in memory at once (a whole body, or a compressed
    # piece once inflated): past it the answer fails as the upstream's fault (502).
    upstream_body_mb: float = Field(default=64, gt=0)
    # What one client may take of the server (server/http.py Limits; docs/configuration.md).
    max_head_kb: float = Field(default=64, gt=0)
    max_body_mb: float = Field(default=64, gt=0)
    keepalive_timeout: float = Field(default=75, gt=0)
    head_timeout: float = Field(default=30, gt=0)
    body_timeout: float = Field(default=120, gt=0)
    max_connections: int = Field(default=10_000, ge=1)
    max_pipelined: int = Field(default=64, ge=0)
    max_unsent_kb: float = Field(default=256, gt=0)
    # Seconds a streaming client waits for its upstream to begin before its stream is opened
    # and kept alive (server/keepalive.py); 0 never opens it early.
    stream_keepalive: float = Field(default=5, ge=0)
    # Seconds between two looks at the configuration file's modification time; an edit is
    # applied once the file has held still for one such interval (server/reload.py). 0 stops
    # watching (SIGHUP and POST /admin/reload still reload).
    reload_poll: float = Field(default=1, ge=0)


# A quota window: a calendar period or a rolling duration ("5h", "90s", "1h30m", "2d").
_DURATION = r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+"
_WINDOW = re.compile(rf"daily|weekly|monthly|{_DURATION}")
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d"
# The reset point of each calendar window, in the gateway's local time.
_RESET = {
    "daily": re.compile(_CLOCK),
    "weekly": re.compile(rf"(?:mon|tue|wed|thu|fri|sat|sun)(?: {_CLOCK})?", re.I),
    "monthly": re.compile(rf"(?:[1-9]|[12]\d|3[01])(?: {_CLOCK})?"),
}
DEFAULT_RESET = {"daily": "00:00", "weekly": "mon 00:00", "monthly": "1 00:00"}


class QuotaConfig(BaseModel):
    """When a provider says its quota or balance is used up, it rests until `window` resets
    (docs/configuration.md, "Quota windows")."""

    model_config = ConfigDict(extra="forbid")

    # daily | weekly | monthly (reset at `reset`, local time) or a rolling duration counted
    # from the first refusal.
    window: str = "daily"
    # daily: "HH:MM"; weekly: "mon 00:00"; monthly: day of month "1 00:00" (a day past the
    # month's end means its last day). None: the window's default (DEFAULT_RESET).
    reset: str | None = None
    # More refusals that mean "used up": HTTP status codes, or substrings of the message
    # (case-insensitive).
    on: list[int | str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _on_is_a_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on` as the boolean true: {on: [...]} arrives keyed by True.
        if isinstance(data, dict) and True in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        value = value.strip().lower()
        if not _WINDOW.fullmatch(value):
            raise ValueError(
                f"window {value!r} is not daily, weekly, monthly or a duration such as 5h, "
                "90s, 1h30m"
            )
        return value

    @model_validator(mode="after")
    def _check_reset(self) -> QuotaConfig:
        pattern = _RESET.get(self.window)
        if self.reset is None:
            return self
        if pattern is None:
            raise ValueError(
                f"reset {self.reset!r} applies to daily, weekly and monthly windows only; a "
                f"rolling window ({self.window}) counts from the first refusal"
            )
        if not pattern.fullmatch(self.reset.strip()):
            raise ValueError(
                f"reset {self.reset!r} does not fit a {self.window} window; write it like "
                f"{DEFAULT_RESET[self.window]!r}"
            )
        return self


class RetryConfig(BaseModel):
    """Retries of one target before the next is tried (routing/retry.py)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=2, ge=1, le=20)  # tries per target, the first included
    backoff: float = Field(default=0.5, ge=0)  # seconds before the first retry; doubles
    max_backoff: float = Field(default=8, ge=0)  # cap, also on the upstream's Retry-After


class CooldownConfig(BaseModel):
    """A target that keeps failing rests (routing/health.py)."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=3, ge=1)  # consecutive failures before it rests
    seconds: float = Field(default=30, gt=0)  # how long it rests before one probe request


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ProviderType
    # openai: includes /v1 as in the OpenAI SDK; anthropic: no /v1; claude-code: none (the
    # CLI finds its upstream itself, or through ANTHROPIC_BASE_URL in `env`).
    base_url: str = ""
    # repr=False keeps credentials out of reprs, logs and tracebacks. At most one of the
    # four key sources (providers/credentials.py says how each behaves).
    api_key: str | None = Field(default=None, repr=False)
    api_keys: list[str] | None = Field(default=None, repr=False, min_length=1)
    api_key_file: str | None = None  # plain text, or JSON with access_token / api_key
    api_key_command: str | None = Field(default=None, repr=False)  # may hold a secret
    api_key_ttl: float = Field(default=300, gt=0)  # seconds a command's key is kept
    preset: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)  # clamp for the client's max_tokens
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: float = Field(default=600, gt=0)
    quota: QuotaConfig | None = None  # None: a used-up quota rests it an hour (routing/quota)
    # Share of a route's requests (routing/plan.py): a route with a weighted provider among its
    # targets spreads its conversations; the others weigh 1. None: plain fallback order.
    weight: float | None = Field(default=None, gt=0)
    # http://, socks5:// or socks5h:// (user:pass@ allowed); else HTTPS_PROXY & co. apply.
    proxy: str | None = Field(default=None, repr=False)
    ca_file: str | None = None  # PEM bundle the upstream's TLS certificate is checked against
    # type: claude-code (the local Claude Code CLI as a backend; babelgate.claude_code).
    binary: str = "claude"  # a name on PATH or a path
    env: dict[str, str] = Field(default_factory=dict, repr=False)  # may hold a key
    tools: list[str] = Field(default_factory=list)  # the CLI's own tools; []: plain chat
    permission_mode: PermissionMode = "default"
    max_processes: int = Field(default=4, ge=1)
    idle_timeout: float = Field(default=600, gt=0)  # an idle session's process is stopped
    queue_timeout: float = Field(default=5, ge=0)  # a request waits this long for a process
    chunking: Chunking = "token"  # how the CLI's text is cut into the client's deltas

    @model_validator(mode="after")
    def _claude_code_fields(self) -> ProviderConfig:
        if self.type == "claude-code":
            return self
        if not self.base_url:
            raise ValueError("base_url is required for this type")
        given = [name for name in _CLAUDE_CODE_FIELDS if name in self.model_fields_set]
        if given:
            raise ValueError(f"{', '.join(given)}: only a type: claude-code provider reads "
                             f"{'these' if len(given) > 1 else 'this'}")
        return self

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        given = [name for name in _KEY_SOURCES if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one key source, not {' and '.join(given)}")
        return self

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for index, key in enumerate(value):
                if not key.strip():
                    raise ValueError(f"entry {index} is empty (is its ${{VAR}} set?)")
        return value

    @field_validator("api_key_file", "api_key_command")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value:
            parse_proxy(value)  # its ValueError never quotes the password
        return value or None

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = os.path.expanduser(value)
        try:
            ssl.create_default_context(cafile=path)
        except FileNotFoundError:
            raise ValueError(f"file {path} not found") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{path} is not a readable PEM CA bundle ({exc})") from None
        return path

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # Paths are joined as base_url + "/chat/completions": a trailing slash would double.
        return value.rstrip("/")

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESET_NAMES:
            known = ", ".join(PRESET_NAMES)
            raise ValueError(f"unknown preset {value!r}; known presets: {known}")
        return value


_KEY_SOURCES = ("api_key", "api_keys", "api_key_file", "api_key_command")


class StorageConfig(BaseModel):
    """Where babelgate keeps state: gateway keys, Responses conversations for
    previous_response_id, and what other parts add (storage/migrations.py)."""

    model_config = ConfigDict(extra="forbid")

    # sqlite:///path/to/file.db or postgresql://user@host/db (storage/url.py).
    url: str | None = None
    # Shorthand for a SQLite url. Neither: $XDG_DATA_HOME/babelgate/babelgate.db, else
    # ~/.local/share/babelgate/babelgate.db
    path: str | None = None
    responses_ttl_days: float = Field(default=30, gt=0)
    # Seconds between two prunes of expired responses while the gateway runs.
    responses_prune_interval_s: float = Field(default=3600, gt=0)
    # Seconds between two batched writes of usage records (books/store.py); and how many
    # records may wait in memory for the database before the oldest are dropped.
    usage_flush_interval_s: float = Field(default=0.5, gt=0)
    usage_max_queue: int = Field(default=100_000, ge=1)
    # Seconds between two reads of what the other processes on this database learnt: quota
    # marks (and, with `redis:`, resting targets) made by another worker or instance
    # (server/shared_routing.py).
    routing_refresh_interval_s: float = Field(default=0.5, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
                ("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> StorageConfig:
        if self.url and self.path:
            raise ValueError("give storage.url or storage.path, not both")
        return self


class PriceConfig(BaseModel):
    """A model's prices in USD per million tokens (`prices:` in babelgate.yaml). Cache
    prices default to the input price, reasoning to the output price."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    reasoning: float | None = Field(default=None, ge=0)


class AuthConfig(BaseModel):
    """Gateway keys (`babelgate keys`): the gateway is open until the first key exists."""

    model_config = ConfigDict(extra="forbid")

    # Refuse to start while no key exists, instead of serving open.
    required: bool = False
    # Seconds between two checks of the database for keys created or revoked elsewhere.
    refresh_interval_s: float = Field(default=0.5, gt=0)


class RuleCondition(BaseModel):
    """A rule's `if`: every condition given must hold; none given matches every request
    (babelgate.routing.rules says how each is read off a request)."""

    model_config = ConfigDict(extra="forbid")

    background: StrictBool | None = None  # the client's small/fast model calls
    thinking: StrictBool | None = None  # reasoning requested
    image: StrictBool | None = None  # an image anywhere in the conversation
    long_context: StrictInt | None = Field(default=None, ge=0)  # estimated input tokens above
    web_search: StrictBool | None = None  # a hosted web-search tool offered
    tools: StrictBool | None = None  # any tool offered (`false`: none)
    model: str | None = None  # glob on the client's model name
    user_agent: str | None = None  # glob on the User-Agent header
    header: dict[str, str] = Field(default_factory=dict)  # header name -> value glob


class RuleConfig(BaseModel):
    """One entry of `rules`: conditions, and what to do with a request that meets them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None  # shown in x-babelgate-route and the log; else the position
    when: RuleCondition = Field(default_factory=RuleCondition, alias="if")
    to: list[str] | None = None  # targets, like a route's; None: the routes decide
    system_prepend: str | None = None
    system_append: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)  # checked in _check_rules
    remove: list[str] = Field(default_factory=list)
    max_tokens: StrictInt | None = Field(default=None, gt=0)  # lower max_tokens to this

    @field_validator("when", mode="before")
    @classmethod
    def _empty_if(cls, value: Any) -> Any:
        return {} if value is None else value  # `if:` with nothing after it

    @field_validator("to", mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("remove", mode="before")
    @classmethod
    def _one_field(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class LogsConfig(BaseModel):
    """The daily log file: one line per upstream attempt (server/daily_log.py)."""

    model_config = ConfigDict(extra="forbid")

    # None (the default): no file; the access log still goes to stderr.
    dir: str | None = None
    keep_days: int = Field(default=30, ge=1)  # files of older days are deleted
    format: Literal["text", "json"] = "text"
    max_mb: float = Field(default=10, gt=0)  # a day's file past this size rotates to .1, .2...
    backups: int = Field(default=5, ge=0)  # rotated files kept per day
    # Request and response bodies in the file, keys redacted. Off: metadata only.
    bodies: bool = False


class ClaudeCodeConfig(BaseModel):
    """What every `type: claude-code` provider shares: where projects live (`claude_code:`)."""

    model_config = ConfigDict(extra="forbid")

    # Existing directories (and everything under them) a project may name as its `path`.
    roots: list[str] = Field(default_factory=list)
    # Where projects without a `path` get their directory; None: $XDG_DATA_HOME/babelgate/
    # projects, else ~/.local/share/babelgate/projects.
    projects_dir: str | None = None
    # The most sessions and projects one owner (a gateway key; without keys, the gateway)
    # may hold: a create beyond is a 409 until some are deleted. Nothing expires on its own.
    max_sessions: int = Field(default=1000, ge=1)
    max_projects: int = Field(default=100, ge=1)


class Settings(BaseModel):
    server: ServerConfig
    providers: dict[str, ProviderConfig]
    routes: dict[str, list[str]]  # normalised: a single target string becomes a one-item list
    source: str  # "path/to/file.yaml" or "environment" (for /health and errors)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    rules: list[RuleConfig] = Field(default_factory=list)  # checked in order before routes
    # "provider/model" or "model" -> prices overriding the shipped table (books/prices.py).
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    metrics: bool = False  # GET /metrics in Prometheus text format (server/metrics.py)
    retry: RetryConfig | None = None  # None: one try per target
    cooldown: CooldownConfig | None = None  # None: failing targets never rest
    auth: AuthConfig = Field(default_factory=AuthConfig)
    # redis://host:port/db: the keys' limits and budgets counted in Redis, shared exactly by
    # every instance and worker using it (babelgate.limits); None: counted per process.
    redis: str | None = None
    claude_code: ClaudeCodeConfig = Field(default_factory=ClaudeCodeConfig)


def _check_redis(value: str | None) -> str | None:
    if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


class _FileConfig(BaseModel):
    """The shape of babelgate.yaml (Settings without `source`)."""

    model_config = ConfigDict(extra="forbid")

    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, list[str]] = Field(default_factory=dict)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    metrics: bool = False
    rules: list[RuleConfig] = Field(default_factory=list)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    retry: RetryConfig | None = None
    cooldown: CooldownConfig | None = None

    @field_validator("rules", mode="before")
    @classmethod
    def _no_rules(cls, value: Any) -> Any:
        return [] if value is None else value  # `rules:` with nothing after it
    auth: AuthConfig = Field(default_factory=AuthConfig)
    redis: str | None = None
    claude_code: ClaudeCodeConfig = Field(default_factory=ClaudeCodeConfig)

    _redis_url = field_validator("redis")(_check_redis)

    @field_validator("routes", mode="before")
    @classmethod
    def _one_target_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


# ---------------------------------------------------------------------------- loading


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from `path`; without one, from ./babelgate.yaml if it exists, else from
    environment variables (`env`, default os.environ)."""
    env = os.environ if env is None else env
    if path is None:
        if Path(DEFAULT_CONFIG_FILE).is_file():
            return _load_file(Path(DEFAULT_CONFIG_FILE), env)
        return settings_from_env(env)
    return _load_file(Path(path), env)


def _load_file(path: Path, env: Mapping[str, str]) -> Settings:
    where = str(path)
    raw = _read_yaml(path)
    try:
        data = expand_env(raw, env)
    except UnsetVariable as exc:
        raise ConfigError(
            f"{exc.field}: the environment variable {exc.name} is not set ({where}); set "
            f"it before starting babelgate, or write ${{{exc.name}:-default}} for a default"
        ) from None
    try:
        parsed = _FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    _check_routes(parsed.routes, parsed.providers, where)
    _check_env_proxies(parsed.providers, env, where)
    _check_rules(parsed.rules, parsed.providers, where)
    return Settings(
        server=parsed.server, providers=parsed.providers, routes=parsed.routes, source=where,
        storage=parsed.storage, rules=parsed.rules, prices=parsed.prices,
        logs=parsed.logs, metrics=parsed.metrics,
        retry=parsed.retry, cooldown=parsed.cooldown, auth=parsed.auth, redis=parsed.redis,
        claude_code=parsed.claude_code,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found; check the path, or run `babelgate init` to write an "
            "example configuration"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML{_yaml_position(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping with server, providers and routes"
        )
    return data


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    if mark is None:
        return f": {problem}" if problem else ""
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"


# ---------------------------------------------------------------------------- ${VAR} expansion

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(Exception):
    """`${name}` without a default, at `field`, while `name` is not set in the environment.
    An empty key sent upstream would fail much later with the upstream's "invalid key"."""

    def __init__(self, name: str, field: str) -> None:
        super().__init__(name)
        self.name = name
        self.field = field


def expand_env(value: Any, env: Mapping[str, str], field: str = "") -> Any:
    """`${VAR}` / `${VAR:-default}` expanded in every string inside `value` (keys are left
    alone). As in the shell, the default applies when VAR is unset or empty. `${VAR}` with VAR
    unset raises UnsetVariable naming the dotted `field` it was in; set but empty expands to
    ""."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        return _VAR.sub(lambda m: _substitute(m, env, field), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{field}.{k}" if field else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def _substitute(match: re.Match[str], env: Mapping[str, str], field: str) -> str:
    name, default = match.group(1), match.group(2)
    if name is None:  # "$${" escapes a literal "${"
        return "${"
    found = env.get(name)
    if found is None and default is None:
        raise UnsetVariable(name, field or "(top level)")
    if not found and default is not None:
        return default
    return found or ""


# ---------------------------------------------------------------------------- errors

_HINTS = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def _describe(exc: ValidationError, where: str) -> str:
    """One line per problem: `field.path: what is wrong in file; hint`."""
    # A misspelt key usually also leaves a required one missing: report the typo first.
    errors = sorted(exc.errors(), key=lambda err: err["type"] != "extra_forbidden")
    lines = [_describe_one(err, where) for err in errors]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in {where}:\n" + "\n".join(f"  {line}" for line in lines)


def _describe_one(err: Mapping[str, Any], where: str) -> str:
    loc = tuple(str(part) for part in err["loc"])
    field = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        known = ", ".join(_known_fields(loc[:-1]))
        return f"{field}: unknown field in {where}; remove it or fix the spelling (known: {known})"
    if kind == "missing":
        return f"{field}: required field is missing in {where}; add it"
    # Pydantic's message never includes the input, so no secret can leak through it.
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{field}: {message} in {where}; {_hint_for(loc)}"


# Top-level sections and the model of each, for the names an unknown field is told of.
_SECTIONS: dict[str, type[BaseModel]] = {
    "server": ServerConfig, "storage": StorageConfig, "logs": LogsConfig, "auth": AuthConfig,
    "retry": RetryConfig, "cooldown": CooldownConfig, "claude_code": ClaudeCodeConfig,
}


def _known_fields(parent: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = _FileConfig
    if len(parent) == 1 and parent[0] in _SECTIONS:
        model = _SECTIONS[parent[0]]
    elif len(parent) == 2 and parent[0] == "providers":
        model = ProviderConfig
    elif len(parent) == 2 and parent[0] == "rules":
        model = RuleConfig
    elif len(parent) == 3 and parent[0] == "rules" and parent[2] == "if":
        model = RuleCondition
    elif len(parent) == 2 and parent[0] == "prices":
        model = PriceConfig
    elif len(parent) == 3 and parent[0] == "providers" and parent[2] == "quota":
        model = QuotaConfig
    return [field.alias or name for name, field in model.model_fields.items()]


def _hint_for(loc: tuple[str, ...]) -> str:
    last = loc[-1] if loc else ""
    hints = {
        "type": "use one of: openai, anthropic, gemini, openai-responses, claude-code",
        "base_url": "for example https://api.openai.com/v1 (openai) or "
        "https://api.anthropic.com (anthropic)",
        "preset": "pick a known preset or remove the field",
        "port": "use a port number between 1 and 65535",
        "max_tokens": "use a positive whole number, or remove the field",
        "timeout": "use a positive number of seconds",
        "api_key_ttl": "use a positive number of seconds",
        "api_keys": "a list of keys, e.g. [\"${KEY_1}\", \"${KEY_2}\"]",
        "proxy": "for example http://127.0.0.1:3128 or socks5h://user:pass@127.0.0.1:1080",
        "ca_file": "the path of a PEM file holding the CA certificate(s)",
        "responses_ttl_days": "use a positive number of days",
        "responses_prune_interval_s": "use a positive number of seconds",
        "reload_poll": "use a number of seconds, or 0 to stop watching the file",
        "input": "USD per million tokens, a number >= 0",
        "output": "USD per million tokens, a number >= 0",
        "cache_read": "USD per million tokens, a number >= 0, or remove the field",
        "cache_write": "USD per million tokens, a number >= 0, or remove the field",
        "reasoning": "USD per million tokens, a number >= 0, or remove the field",
        "keep_days": "use a whole number of days, 1 or more",
        "format": "use text or json",
        "max_mb": "use a positive number of megabytes",
        "backups": "use a whole number, 0 or more",
        "metrics": "use true or false",
        "window": "use daily, weekly, monthly or a duration such as 5h or 90s",
        "reset": "daily: \"00:00\", weekly: \"mon 00:00\", monthly: \"1 00:00\"",
        "attempts": "use a whole number from 1 (no retry) to 20",
        "failures": "use a whole number of consecutive failures, 1 or more",
        "url": "for example sqlite:///var/lib/babelgate/babelgate.db or "
        "postgresql://babelgate@127.0.0.1:5432/babelgate",
        "required": "use true or false",
        "refresh_interval_s": "use a positive number of seconds",
        "redis": "for example redis://127.0.0.1:6379/0",
        "permission_mode": "use default, acceptEdits, auto, bypassPermissions, manual, "
        "dontAsk or plan (Claude Code's names)",
        "chunking": "use token, word, sentence or message",
        "max_processes": "use a whole number, 1 or more",
        "idle_timeout": "use a positive number of seconds",
        "queue_timeout": "use a number of seconds, 0 or more",
        "roots": "a list of existing directories projects may use",
    }
    if last in hints:
        return hints[last]
    if loc and loc[0] == "routes":
        return "a route maps a model pattern to 'provider/model' or a list of them"
    if loc and loc[0] == "rules":
        return "see the rules section of docs/configuration.md"
    return "see docs/configuration.md"


def _check_routes(
    routes: Mapping[str, list[str]], providers: Mapping[str, ProviderConfig], where: str
) -> None:
    for pattern, targets in routes.items():
        if not pattern:
            raise ConfigError(f"routes: an empty route pattern in {where}; name a model pattern")
        if not targets:
            raise ConfigError(
                f"routes.{pattern}: no target in {where}; give 'provider/model' or a list"
            )
        _check_targets(f"routes.{pattern}", targets, providers, where)


def _check_targets(
    field: str, targets: list[str], providers: Mapping[str, ProviderConfig], where: str
) -> None:
    known = ", ".join(providers) or "(none configured)"
    for target in targets:
        provider = target.split("/", 1)[0]
        if provider not in providers:
            raise ConfigError(
                f"{field}: target {target!r} names provider {provider!r}, which "
                f"is not configured in {where}; use one of: {known} "
                "(written 'provider/model', or 'provider' for the client's own model name)"
            )


def _check_rules(
    rules: list[RuleConfig], providers: Mapping[str, ProviderConfig], where: str
) -> None:
    for index, rule in enumerate(rules):
        _check_edits(index, rule, where)
        if rule.to is None:
            continue
        if not rule.to:
            raise ConfigError(
                f"rules.{index}.to: no target in {where}; give 'provider/model' or a list, or "
                "leave `to` out to let the routes decide"
            )
        _check_targets(f"rules.{index}.to", rule.to, providers, where)


def _check_edits(index: int, rule: RuleConfig, where: str) -> None:
    """`set` and `remove` name fields an edit may touch, with values of their type (what
    they become is made by routing.rules at start-up, through the same function)."""
    hint = "see the rules section of docs/configuration.md"
    for name, value in rule.set.items():
        try:
            settable_value(name, value)
        except EditError as exc:
            raise ConfigError(f"rules.{index}.set.{name}: {exc} in {where}; {hint}") from None
    for position, name in enumerate(rule.remove):
        try:
            check_removable(name)
        except EditError as exc:
            raise ConfigError(
                f"rules.{index}.remove.{position}: {exc} in {where}; {hint}") from None


def _check_env_proxies(
    providers: Mapping[str, ProviderConfig], env: Mapping[str, str], where: str
) -> None:
    """A proxy variable (HTTPS_PROXY...) that a provider would use must be one babelgate can
    use: found here, as a configuration error, rather than when the providers are built."""
    for name, provider in providers.items():
        if provider.proxy is None and provider.base_url:
            try:
                proxy_from_env(provider.base_url, env)
            except ValueError as exc:
                raise ConfigError(
                    f"providers.{name}: the environment's proxy is unusable ({exc}); fix the "
                    f"variable, or give the provider a `proxy:` in {where}"
                ) from None


# ---------------------------------------------------------------------------- environment


@dataclasses.dataclass(frozen=True, slots=True)
class _EnvProvider:
    """A provider discovered from one environment variable, and its default models for the
    Claude families (haiku, sonnet, opus) and for everything else."""

    name: str
    variable: str
    type: ProviderType
    base_url: str
    preset: str | None
    models: Mapping[str, str]  # keys: haiku, sonnet, opus, default
    own_names: tuple[str, ...] = ()  # model-name globs this provider serves under its own name


def _family(haiku: str, sonnet: str, opus: str, default: str | None = None) -> dict[str, str]:
    return {"haiku": haiku, "sonnet": sonnet, "opus": opus, "default": default or sonnet}


# Discovery order is priority order: the first provider found gets Claude model names when
# ANTHROPIC_API_KEY is not set, and the `default` route.
ENV_PROVIDERS: tuple[_EnvProvider, ...] = (
    _EnvProvider(
        "anthropic",
        "ANTHROPIC_API_KEY",
        "anthropic",
        "https://api.anthropic.com",
        None,
        _family("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"),
        ("claude-*",),
    ),
    _EnvProvider(
        "openai",
        "OPENAI_API_KEY",
        "openai",
        "https://api.openai.com/v1",
        None,
        _family("gpt-5-mini", "gpt-5", "gpt-5"),
        ("gpt-*", "o[0-9]*", "codex-*"),
    ),
    _EnvProvider(
        "gemini",
        "GEMINI_API_KEY",
        "gemini",
        "https://generativelanguage.googleapis.com",
        None,
        _family("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-*",),
    ),
    _EnvProvider(
        "deepseek",
        "DEEPSEEK_API_KEY",
        "openai",
        "https://api.deepseek.com/v1",
        "deepseek",
        _family("deepseek-chat", "deepseek-chat", "deepseek-reasoner"),
        ("deepseek-*",),
    ),
    _EnvProvider(
        "kimi",
        "MOONSHOT_API_KEY",
        "openai",
        "https://api.moonshot.ai/v1",
        "kimi",
        _family("kimi-k2.5", "kimi-k2.5", "kimi-k2-thinking"),
        ("kimi-*", "moonshot-*"),
    ),
    _EnvProvider(
        "glm",
        "ZHIPU_API_KEY",
        "openai",
        "https://open.bigmodel.cn/api/paas/v4",
        "glm",
        _family("glm-4.5-air", "glm-4.6", "glm-4.6"),
        ("glm-*",),
    ),
    _EnvProvider(
        "grok",
        "XAI_API_KEY",
        "openai",
        "https://api.x.ai/v1",
        "grok",
        _family("grok-3-mini", "grok-4", "grok-4"),
        ("grok-*",),
    ),
    _EnvProvider(
        "openrouter",
        "OPENROUTER_API_KEY",
        "openai",
        "https://openrouter.ai/api/v1",
        "openrouter",
        _family(
            "anthropic/claude-haiku-4.5", "anthropic/claude-sonnet-4.5", "anthropic/claude-opus-4.1"
        ),
    ),
    _EnvProvider(
        "siliconflow",
        "SILICONFLOW_API_KEY",
        "openai",
        "https://api.siliconflow.cn/v1",
        "siliconflow",
        _family(
            "deepseek-ai/DeepSeek-V3.2", "deepseek-ai/DeepSeek-V3.2", "deepseek-ai/DeepSeek-R1"
        ),
    ),
    _EnvProvider(
        "ollama",
        "OLLAMA_BASE_URL",
        "openai",
        "",
        "ollama",
        _family("qwen3-coder", "qwen3-coder", "qwen3-coder"),
    ),
)


def url_variable(name: str) -> str:
    """The variable that, when set, replaces a provider's address (a proxy, a test server),
    in environment mode and in the files `babelgate init` writes. Not ANTHROPIC_BASE_URL and
    the like: those often point the agents at babelgate itself."""
    return f"BABELGATE_{name.upper()}_URL"


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Providers for every well-known variable that is set (non-empty), with default routes.
    No variable set: no providers and no routes."""
    found = [p for p in ENV_PROVIDERS if env.get(p.variable, "").strip()]
    providers = {p.name: _env_provider_config(p, env[p.variable].strip(),
                                              env.get(url_variable(p.name), "").strip())
                 for p in found}
    _check_env_proxies(providers, env, ENV_SOURCE)
    return Settings(
        server=ServerConfig(), providers=providers, routes=_env_routes(found), source=ENV_SOURCE
    )


def _env_provider_config(spec: _EnvProvider, value: str, url: str) -> ProviderConfig:
    if spec.name == "ollama":  # the variable holds the server's URL; Ollama needs no key
        return ProviderConfig(type="openai", base_url=ollama_v1_url(value), preset="ollama")
    return ProviderConfig(type=spec.type, base_url=url or spec.base_url, api_key=value,
                          preset=spec.preset)


def ollama_v1_url(url: str) -> str:
    """Ollama's OpenAI-compatible base: `<url>/v1` unless the URL already ends in /v1."""
    url = url.rstrip("/")
    if "://" not in url:
        url = "http://" + url  # OLLAMA_HOST-style values ("localhost:11434") are common
    return url if url.endswith("/v1") else url + "/v1"


def _env_routes(found: list[_EnvProvider]) -> dict[str, list[str]]:
    """Own-name globs first (gpt-* to OpenAI...), then Claude families, then `default`."""
    if not found:
        return {}
    routes: dict[str, list[str]] = {}
    for spec in found:
        for pattern in spec.own_names:
            routes.setdefault(pattern, [spec.name])
    first = found[0]
    if first.name != "anthropic":  # with Anthropic, claude-* already goes there by name
        routes["claude-*haiku*"] = [f"{first.name}/{first.models['haiku']}"]
        routes["claude-*opus*"] = [f"{first.name}/{first.models['opus']}"]
        routes["claude-*"] = [f"{first.name}/{first.models['sonnet']}"]
    routes["default"] = [f"{first.name}/{first.models['default']}"]
    return routes
