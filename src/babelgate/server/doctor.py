"""`babelgate doctor` and `POST /v1/test-connection`: is each provider reachable and usable?

What it promises: `diagnose(settings)` checks the configuration, then for each provider in
order: name resolution, TCP, TLS (https only), authentication, the model list (where the
protocol has one), a one-token completion, a streamed one, and with `deep` a tool-call round
trip (a forced call, then its result sent back). Each check is ok, failed (with a hint
naming what to fix: the env var behind the key, the config field) or skipped (with why);
after a failed step the steps that need it are skipped. Requests go out exactly as the
gateway's own would (the same Provider headers, route, proxy and TLS settings). Nothing
reported contains a key: upstream text is masked by the provider's `redact`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from babelgate.canonical import GatewayError
from babelgate.claude_code.provider import ClaudeCodeProvider
from babelgate.config import Settings
from babelgate.providers.http import HttpClient
from babelgate.providers.provider import Provider
from babelgate.providers.proxy import open_tunnel

DEFAULT_TIMEOUT = 20.0
PROMPT = "Reply with the single word OK."
# How each protocol's stream says it ended.
STREAM_END = {"openai": b"[DONE]", "anthropic": b"message_stop",
              "openai-responses": b"response.completed", "gemini": b"finishReason"}
Progress = Callable[[str, str], None]  # (provider, check name) as each check starts
# The checks without which no request can reach the upstream: the later ones are skipped.
CONNECTING = frozenset({"name resolution", "tcp", "tls", "proxy", "tunnel", "authentication"})


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "failed", "skipped"
    detail: str = ""
    hint: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ProviderReport:
    name: str
    type: str
    base_url: str
    model: str | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)


@dataclass(frozen=True)
class Report:
    config: Check
    providers: tuple[ProviderReport, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.config.status == "ok" and all(p.ok for p in self.providers)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "config": asdict(self.config),
                "providers": [{**asdict(p), "ok": p.ok} for p in self.providers]}


class Failed(Exception):
    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


def key_variable(settings: Settings, name: str) -> str | None:
    """The environment variable the provider's key comes from, when the file says
    `api_key: ${VAR}` (or the environment discovery named it)."""
    source = Path(settings.source) if settings.source else None
    if source is not None and source.is_file():
        try:
            import yaml

            raw = yaml.safe_load(source.read_text())
            value = str(((raw or {}).get("providers") or {}).get(name, {}).get("api_key", ""))
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            value = ""
        found = re.search(r"\$\{?(\w+)", value)
        return found.group(1) if found else None
    guess = f"{name.upper()}_API_KEY"
    return guess


def model_for(settings: Settings, name: str) -> str | None:
    """The first model a route sends to this provider."""
    for targets in settings.routes.values():
        for target in targets:
            provider, _, model = target.partition("/")
            if provider == name and model and "*" not in model:
                return model
    return None


def _bodies(kind: str, model: str, stream: bool) -> dict[str, Any]:
    message = [{"role": "user", "content": PROMPT}]
    if kind == "anthropic":
        body: dict[str, Any] = {"model": model, "max_tokens": 1, "messages": message}
    elif kind == "openai-responses":
        body = {"model": model, "input": PROMPT, "max_output_tokens": 16}
    elif kind == "gemini":
        return {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {"maxOutputTokens": 1}}
    else:
        body = {"model": model, "messages": message, "max_tokens": 1}
    if stream:
        body["stream"] = True
    return body


def models_url(provider: Provider) -> str | None:
    base = provider.base_url
    return {"openai": f"{base}/models", "openai-responses": f"{base}/models",
            "anthropic": f"{base}/v1/models",
            "gemini": f"{base}/v1beta/models"}.get(provider.type)


class Doctor:
    def __init__(self, settings: Settings, providers: dict[str, Provider], http: HttpClient,
                 *, deep: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 progress: Progress | None = None,
                 key_vars: dict[str, str | None] | None = None) -> None:
        self.settings = settings
        self.key_vars = key_vars or {}
        self.providers = providers
        self.http = http
        self.deep = deep
        self.timeout = timeout
        self.progress = progress
        # The authentication check's completion, which the completion check then reports.
        self._answered: dict[str, tuple[int, bytes, float]] = {}

    def key_hint(self, name: str) -> str:
        var = self.key_vars.get(name)
        if var:
            return f"the key was refused: check {var}"
        return f"the key was refused: check providers.{name}.api_key in {self.settings.source}"

    async def provider(self, name: str) -> ProviderReport:
        provider = self.providers[name]
        model = model_for(self.settings, name)
        checks: list[Check] = []
        parts = urlsplit(provider.base_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxied = provider.route is not None and provider.route.proxy is not None
        steps: list[tuple[str, Callable[[], Any]]] = []
        if isinstance(provider, ClaudeCodeProvider):  # a local program: does it run?
            steps.append(("claude code cli", lambda: self._cli(name, provider)))
        elif proxied:
            # The upstream's name and TCP connection are the proxy's business: check the
            # proxy is there, then that it opens a tunnel to the upstream (TLS inside it).
            steps += [("proxy", lambda: self._proxy(name, provider)),
                      ("tunnel", lambda: self._tunnel(name, provider, host, port,
                                                      parts.scheme == "https"))]
        else:
            steps += [("name resolution", lambda: self._resolve(name, host, port)),
                      ("tcp", lambda: self._tcp(name, host, port))]
            if parts.scheme == "https":
                steps.append(("tls", lambda: self._tls(name, provider, host, port)))
        if not isinstance(provider, ClaudeCodeProvider):
            steps += [("authentication", lambda: self._auth(name, provider, model)),
                      ("model list", lambda: self._models(name, provider, model)),
                      ("completion", lambda: self._complete(name, provider, model, False)),
                      ("stream", lambda: self._complete(name, provider, model, True))]
        if self.deep and not isinstance(provider, ClaudeCodeProvider):
            steps.append(("tool call", lambda: self._tool_round_trip(name, provider, model)))
        failed = False
        for check_name, run in steps:
            if failed:
                checks.append(Check(check_name, "skipped", "an earlier check failed"))
                continue
            if self.progress is not None:
                self.progress(name, check_name)
            started = time.perf_counter()
            try:
                detail = await asyncio.wait_for(run(), self.timeout)
                status = "skipped" if detail.startswith("skipped: ") else "ok"
                checks.append(Check(check_name, status, detail.removeprefix("skipped: "),
                                    seconds=round(time.perf_counter() - started, 3)))
            except Failed as exc:
                failed = check_name in CONNECTING
                checks.append(Check(check_name, "failed", provider.redact(exc.detail),
                                    exc.hint, round(time.perf_counter() - started, 3)))
            except TimeoutError:
                failed = True
                checks.append(Check(
                    check_name, "failed", f"no answer within {self.timeout:g} s",
                    f"the upstream is too slow or unreachable: check providers.{name}.base_url "
                    f"(and the network); raise --timeout if it is just slow",
                    round(time.perf_counter() - started, 3)))
        return ProviderReport(name, provider.type, provider.base_url, model, tuple(checks))

    async def _cli(self, name: str, provider: ClaudeCodeProvider) -> str:
        """The CLI starts and says its version (`claude --version`)."""
        try:
            process = await asyncio.create_subprocess_exec(
                provider.binary, "--version", env=provider.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            raise Failed(f"cannot start {provider.binary_name!r}: {exc.strerror}",
                         f"install Claude Code, or set providers.{name}.binary to its path "
                         f"in {self.settings.source}") from None
        try:
            out, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        said = out.decode(errors="replace").strip()[-300:]
        if process.returncode != 0:
            raise Failed(f"{provider.binary_name} --version exited with status "
                         f"{process.returncode}: {said}", "run it by hand to see why")
        return said

    async def _resolve(self, name: str, host: str, port: int) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                                 type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Failed(f"cannot resolve {host}: {exc}",
                         f"check the host in providers.{name}.base_url") from None
        return ", ".join(sorted({str(info[4][0]) for info in infos}))

    async def _tcp(self, name: str, host: str, port: int) -> str:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise Failed(f"cannot connect to {host}:{port}: {exc.strerror or exc}",
                         f"is the server running? check providers.{name}.base_url") from None
        writer.close()
        return f"{host}:{port} connected"

    async def _tls(self, name: str, provider: Provider, host: str, port: int) -> str:
        route = provider.route
        context = route.tls if route is not None and route.tls is not None else (
            ssl.create_default_context())
        try:
            _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                      server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            raise Failed(f"TLS handshake with {host} failed: {exc}",
                         f"check providers.{name}.ca_file (a private CA) or the URL's "
                         f"scheme in providers.{name}.base_url") from None
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        return str(version)

    async def _proxy(self, name: str, provider: Provider) -> str:
        assert provider.route is not None and provider.route.proxy is not None
        proxy = provider.route.proxy
        try:
            _, writer = await asyncio.open_connection(proxy.host, proxy.port)
        except OSError as exc:
            raise Failed(f"cannot connect to the proxy {proxy.shown}: {exc.strerror or exc}",
                         f"is the proxy running? check providers.{name}.proxy (or HTTPS_PROXY, "
                         f"HTTP_PROXY, ALL_PROXY and NO_PROXY in the environment)") from None
        writer.close()
        return (f"{proxy.shown} connected; the upstream's name resolution and TCP are the "
                f"proxy's job")

    async def _tunnel(self, name: str, provider: Provider, host: str, port: int,
                      tls: bool) -> str:
        route = provider.route
        assert route is not None and route.proxy is not None
        context = None
        if tls:
            context = route.tls if route.tls is not None else ssl.create_default_context()
        try:
            held = await open_tunnel(route.proxy, host, port, _Held, context)
        except ssl.SSLError as exc:
            raise Failed(f"TLS handshake with {host} through {route.proxy.shown} failed: {exc}",
                         f"check providers.{name}.ca_file (a private CA, or a proxy that "
                         f"inspects TLS)") from None
        except OSError as exc:
            raise Failed(f"{route.proxy.shown} did not open a tunnel to {host}:{port}: {exc}",
                         f"the proxy cannot reach the upstream (or refuses it): check "
                         f"providers.{name}.base_url and the proxy's rules") from None
        ssl_object = held.transport.get_extra_info("ssl_object")
        held.transport.close()
        version = f", {ssl_object.version()}" if ssl_object is not None else ""
        return f"{route.proxy.shown} opened a tunnel to {host}:{port}{version}"

    async def _get_models(self, provider: Provider) -> tuple[int, bytes] | None:
        url = models_url(provider)
        if url is None:
            return None
        headers = provider.headers()
        context = provider.route.tls if provider.route is not None else None

        def fetch() -> tuple[int, bytes]:
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout,
                                            context=context) as answer:
                    return int(answer.status), bytes(answer.read())
            except urllib.error.HTTPError as exc:
                return int(exc.code), exc.read()

        try:
            return await asyncio.to_thread(fetch)
        except (OSError, ValueError) as exc:
            raise Failed(f"GET {url} failed: {exc}",
                         f"check providers.{self.name_of(provider)}.base_url") from None

    def name_of(self, provider: Provider) -> str:
        return provider.name

    async def _auth(self, name: str, provider: Provider, model: str | None) -> str:
        """A real request decides: the one-token completion (kept for the next check), else
        the model list when no route names a model."""
        if model is not None:
            started = time.perf_counter()
            status, body = await self._post(provider, model, False)
            self._answered[name] = (status, body, time.perf_counter() - started)
        else:
            answer = await self._get_models(provider)
            if answer is None:
                return "skipped: no model list and no route naming a model to try"
            status, body = answer
        if status in (401, 403):
            raise Failed(f"HTTP {status}: {_excerpt(body)}", self.key_hint(name))
        return f"key accepted (HTTP {status})"

    async def _models(self, name: str, provider: Provider, model: str | None) -> str:
        answer = await self._get_models(provider)
        if answer is None or answer[0] == 404:
            return "skipped: this upstream has no model list"
        status, body = answer
        if status != 200:
            raise Failed(f"HTTP {status}: {_excerpt(body)}",
                         f"check providers.{name}.base_url")
        try:
            data = orjson.loads(body)
            items = data.get("data") or data.get("models") or []
            ids = [str(i.get("id") or i.get("name", "")).removeprefix("models/")
                   for i in items]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise Failed("the model list is not JSON",
                         f"check providers.{name}.base_url (a path missing?)") from None
        listed = f"{len(ids)} models"
        if model and ids and model not in ids:
            return f"{listed}; {model} is not among them"
        return listed

    async def _post(self, provider: Provider, model: str, stream: bool,
                    body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        payload = orjson.dumps(body or _bodies(provider.type, model, stream))
        url = provider.url(model, stream)
        try:
            response = await self.http.post(url, payload, provider.headers(),
                                             timeout=self.timeout, upstream=provider.name,
                                             route=provider.route)
            if not stream or response.status != 200:
                return response.status, await response.read()
            chunks = [chunk async for chunk in response.iter_chunks()]
            return response.status, b"".join(chunks)
        except GatewayError as exc:
            raise Failed(provider.redact(exc.message), _stream_hint(provider.name, stream)
                         ) from None

    async def _complete(self, name: str, provider: Provider, model: str | None,
                        stream: bool) -> str:
        if model is None:
            return "skipped: no route names a model of this provider"
        kept = None if stream else self._answered.pop(name, None)
        if kept is not None:
            status, body, took = kept
        else:
            started = time.perf_counter()
            status, body = await self._post(provider, model, stream)
            took = time.perf_counter() - started
        if status in (401, 403):
            raise Failed(f"HTTP {status}: {_excerpt(body)}", self.key_hint(name))
        if status == 404:
            raise Failed(f"HTTP 404: {_excerpt(body)}",
                         f"is {model} a model of {name}? check the routes in "
                         f"{self.settings.source}")
        if status != 200:
            raise Failed(f"HTTP {status}: {_excerpt(body)}",
                         f"the upstream refused a minimal request to {model}; see its message")
        if stream and STREAM_END[provider.type] not in body:
            raise Failed("the stream broke off before its end",
                         _stream_hint(name, True))
        return f"{model} answered in {took:.2f} s"

    async def _tool_round_trip(self, name: str, provider: Provider, model: str | None) -> str:
        if model is None:
            return "skipped: no route names a model of this provider"
        first = _tool_request(provider.type, model)
        status, body = await self._post(provider, model, False, first)
        if status != 200:
            raise Failed(f"HTTP {status}: {_excerpt(body)}",
                         f"{model} refused a request with tools: pick a model with tool use")
        try:
            follow = _tool_follow_up(provider.type, first, orjson.loads(body))
        except (KeyError, IndexError, TypeError, ValueError, orjson.JSONDecodeError):
            follow = None
        if follow is None:
            raise Failed("the model answered without calling the tool",
                         f"{model} does not call tools when asked: pick another for agents")
        status, body = await self._post(provider, model, False, follow)
        if status != 200:
            raise Failed(f"HTTP {status} on the tool result: {_excerpt(body)}",
                         f"{model} refused the tool's result; see its message")
        return "a tool was called and its result answered"


class _Held(asyncio.Protocol):
    """Keeps the tunnel's transport, to read its TLS version and close it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


def _tool_request(kind: str, model: str) -> dict[str, Any]:
    ask = "What time is it? Use the clock tool."
    schema = {"type": "object", "properties": {}}
    if kind == "anthropic":
        return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": ask}],
                "tools": [{"name": "clock", "description": "the time", "input_schema": schema}],
                "tool_choice": {"type": "tool", "name": "clock"}}
    if kind == "openai-responses":
        return {"model": model, "input": ask, "max_output_tokens": 64,
                "tools": [{"type": "function", "name": "clock", "parameters": schema}],
                "tool_choice": {"type": "function", "name": "clock"}}
    if kind == "gemini":
        return {"contents": [{"role": "user", "parts": [{"text": ask}]}],
                "tools": [{"functionDeclarations": [{"name": "clock",
                                                     "description": "the time"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
                "generationConfig": {"maxOutputTokens": 64}}
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": ask}],
            "tools": [{"type": "function", "function": {"name": "clock", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": "clock"}}}


def _tool_follow_up(kind: str, first: dict[str, Any], answer: Any) -> dict[str, Any] | None:
    """The second request: the call and its result appended; None when no call came back."""
    result = "12:00"
    if kind == "anthropic":
        calls = [b for b in answer["content"] if b.get("type") == "tool_use"]
        if not calls:
            return None
        return {**first, "tool_choice": {"type": "auto"}, "messages": [
            *first["messages"], {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0]["id"],
                                          "content": result}]}]}
    if kind == "openai-responses":
        calls = [i for i in answer["output"] if i.get("type") == "function_call"]
        if not calls:
            return None
        return {**first, "tool_choice": "auto", "input": [
            {"role": "user", "content": first["input"]}, calls[0],
            {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": result}]}
    if kind == "gemini":
        parts = answer["candidates"][0]["content"]["parts"]
        calls = [p for p in parts if "functionCall" in p]
        if not calls:
            return None
        return {**first, "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}, "contents": [
            *first["contents"], {"role": "model", "parts": parts},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "clock", "response": {"time": result}}}]}]}
    message = answer["choices"][0]["message"]
    if not message.get("tool_calls"):
        return None
    call = message["tool_calls"][0]
    return {**first, "tool_choice": "auto", "messages": [
        *first["messages"], {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": result}]}


def _stream_hint(name: str, stream: bool) -> str:
    if stream:
        return (f"the stream was cut: a proxy or load balancer buffering or cutting "
                f"event streams? check providers.{name}.proxy and what sits in between")
    return f"the connection failed: check providers.{name}.base_url and the network"


def _excerpt(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return text[:300]


async def diagnose(settings: Settings, only: str | None = None, *, deep: bool = False,
                   timeout: float = DEFAULT_TIMEOUT,
                   progress: Progress | None = None) -> Report:
    """Every check, for every provider (or only `only`)."""
    from babelgate.server.gateway import build_providers

    if only is not None and only not in settings.providers:
        names = ", ".join(settings.providers) or "none"
        return Report(Check("configuration", "failed", f"no provider named {only!r}",
                            f"configured providers: {names}"))
    if not settings.providers:
        return Report(Check("configuration", "failed", "no provider configured",
                            "add one to babelgate.yaml, or export a provider's key "
                            "(DEEPSEEK_API_KEY, OPENAI_API_KEY, ...)"))
    config = Check("configuration", "ok", f"{settings.source}: "
                   f"{_count(len(settings.providers), 'provider')}, "
                   f"{_count(len(settings.routes), 'route')}")
    # The file is read again for the `${VAR}` behind each key: off the event loop.
    key_vars = await asyncio.to_thread(
        lambda: {name: key_variable(settings, name) for name in settings.providers})
    providers = build_providers(settings)
    http = HttpClient()
    try:
        doctor = Doctor(settings, providers, http, deep=deep, timeout=timeout,
                        progress=progress, key_vars=key_vars)
        wanted = [only] if only else list(providers)
        reports = [await doctor.provider(name) for name in wanted]
    finally:
        await http.close()
        for provider in providers.values():
            provider.close()
    return Report(config, tuple(reports))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
