"""The shared core of the strict fake upstreams.

A fake is a real aiohttp server on loopback. It promises:
- every request is recorded (`fake.requests`), including the ones it rejects
  (`fake.rejections` says why), before anything else happens;
- a request is answered only after it passed the protocol's validation, as strict as the real
  provider, with the provider's own error shape;
- the answer is the next queued `Reply`, or, when none is queued, what the default agent brain
  (`brain`) decides, so a real agent can finish a small task against the fake.

`Reply` is protocol-neutral: each protocol module renders it in its own wire format. Protocol
modules implement only validation and rendering (`Protocol` hooks); all I/O lives here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import orjson
from aiohttp import web

JSON = dict[str, Any]

# One secret per process run would break a fake restarted between two requests of a test
# (the `python -m tests.fakes` mode); a fixed secret keeps signatures verifiable anywhere.
_SECRET = b"babelgate-fake-upstream-signing-key"


class Invalid(Exception):
    """A request the real provider would refuse; rendered in the protocol's error shape."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


@dataclass
class ToolCall:
    """One tool call of a scripted reply. `arguments` as a str is sent verbatim (broken JSON
    on purpose, for instance); `id` is made up in the protocol's style when None."""

    name: str
    arguments: JSON | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class Usage:
    """Token numbers of a scripted reply, in neutral terms; None means "estimate it".
    `input_tokens` is the whole prompt, cached tokens included (each fake converts, e.g.
    Anthropic's input_tokens excludes cache reads)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int | None = None


@dataclass
class Reply:
    """A scripted answer that every fake can render in its own format.

    - `text`, `tool_calls`, `reasoning`: the content (reasoning becomes Anthropic thinking with
      a signature, OpenAI `reasoning_content`, Gemini thought parts, a Responses reasoning item).
    - `stop`: "end", "max_tokens", "refusal"; "tool" is implied by tool calls.
    - `status` >= 400 answers with that error in the protocol's error shape (`error` = message),
      or with `raw` (a dict) as the error body when given.
    - `delay` before answering; `chunk_delay` between stream events.
    - `cut_stream_after=N`: send N stream events then drop the connection.
    - `raw`: sent instead of rendering. A dict/list-of-dicts for a JSON body (non-streaming),
      a str/bytes body verbatim, or a list of events for streams: dicts are framed the
      protocol's way (`event:` from their "type" where the protocol names events), str/bytes
      items are written as they are.
    - `headers`: extra response headers (e.g. retry-after).
    """

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    usage: Usage | None = None
    stop: str = "end"
    status: int = 200
    error: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    cut_stream_after: int | None = None
    raw: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Resolved:
    """A Reply with every blank filled in: ids made, JSON arguments encoded, usage counted."""

    text: str | None
    reasoning: str | None
    calls: list[tuple[str, str, str]]  # (id, name, arguments JSON text)
    stop: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    model: str


@dataclass
class RecordedRequest:
    """What the fake received: `body` is the parsed JSON (None if it was not JSON); header
    names are lowercased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Conversation:
    """What the default brain needs to know, extracted by each protocol from its request."""

    last_user_text: str = ""
    tool_results: list[str] = field(default_factory=list)  # results in the latest user turn
    tools: dict[str, JSON] = field(default_factory=dict)  # offered tool name -> JSON schema
    wants_reasoning: bool = False


# ---------------------------------------------------------------- small shared helpers


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + os.urandom(n).hex()[:n]


def sign(text: str) -> str:
    """A signature bound to `text`: changing one byte of the text invalidates it."""
    mac = hmac.new(_SECRET, text.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"fakesig1" + mac).decode()


def verify(text: str, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(text), signature)


def opaque_token() -> str:
    """A self-verifying opaque blob (Gemini thoughtSignature, encrypted reasoning)."""
    nonce = os.urandom(12)
    mac = hmac.new(_SECRET, nonce, hashlib.sha256).digest()[:16]
    return base64.b64encode(b"fakeopq1" + nonce + mac).decode()


def opaque_ok(token: object) -> bool:
    if not isinstance(token, str):
        return False
    try:  # Google reads bytes fields in either base64 alphabet (the SDKs resend URL-safe)
        blob = base64.b64decode(token.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        return False
    if len(blob) != 36 or not blob.startswith(b"fakeopq1"):
        return False
    nonce, mac = blob[8:20], blob[20:]
    return hmac.compare_digest(hmac.new(_SECRET, nonce, hashlib.sha256).digest()[:16], mac)


def estimate_tokens(value: Any) -> int:
    """A rough count (4 characters per token) of a JSON value or string."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return max(1, len(text) // 4)


def pieces(text: str, size: int = 12) -> list[str]:
    """Split text into stream-sized pieces (at least one, possibly empty)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


_MARKER = re.compile(r"RUN<<(.+?)>>", re.S)
SHELL_TOOLS = ("Bash", "shell", "exec_command", "shell_command", "local_shell", "run_shell_command")


def _shell_arguments(schema: JSON, command: str) -> JSON:
    """Arguments for a shell-like tool, in the shape its schema asks for."""
    props = schema.get("properties") or {}
    key = "command" if "command" in props or "cmd" not in props else "cmd"
    kind = (props.get(key) or {}).get("type")
    value: Any = ["bash", "-lc", command] if kind == "array" else command
    args: JSON = {key: value}
    if "description" in (schema.get("required") or []):
        args["description"] = "Run the requested command"
    return args


def brain(conv: Conversation) -> Reply:
    """The default agent: run the marked command with the shell tool, then report its output."""
    thought = (
        "The user wants a command run; I will use the shell tool." if conv.wants_reasoning else None
    )
    if conv.tool_results:
        return Reply(
            text="The command printed: " + conv.tool_results[-1].strip(), reasoning=thought
        )
    match = _MARKER.findall(conv.last_user_text)
    shell = next((name for name in SHELL_TOOLS if name in conv.tools), None)
    if match and shell:
        args = _shell_arguments(conv.tools[shell], match[-1].strip())
        return Reply(text=None, tool_calls=[ToolCall(shell, args)], reasoning=thought)
    return Reply(text="Fake reply.", reasoning=thought)


def resolve(reply: Reply, body: Any, call_prefix: str, model: str) -> Resolved:
    calls = []
    for call in reply.tool_calls:
        args = (
            call.arguments
            if isinstance(call.arguments, str)
            else orjson.dumps(call.arguments).decode()
        )
        calls.append((call.id or new_id(call_prefix), call.name, args))
    usage = reply.usage or Usage()
    produced = (reply.text or "") + (reply.reasoning or "") + "".join(c[2] for c in calls)
    reasoning = usage.reasoning_tokens
    if reasoning is None:
        reasoning = estimate_tokens(reply.reasoning) if reply.reasoning else 0
    return Resolved(
        text=reply.text,
        reasoning=reply.reasoning,
        calls=calls,
        stop="tool" if calls and reply.stop == "end" else reply.stop,
        input_tokens=usage.input_tokens
        if usage.input_tokens is not None
        else estimate_tokens(body),
        output_tokens=usage.output_tokens
        if usage.output_tokens is not None
        else estimate_tokens(produced),
        cached_tokens=usage.cached_tokens,
        cache_creation_tokens=usage.cache_creation_tokens,
        reasoning_tokens=reasoning,
        model=model,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- the server


class FakeUpstream:
    """Base class of the four fakes. Subclasses set `protocol` and implement the hooks below.

    Use in-process: `async with FakeOpenAI() as fake: ...` (or `await fake.start()`), then
    `fake.queue(Reply(...))`, point the gateway at `fake.base_url`, read `fake.requests`.
    """

    protocol: ClassVar[str] = ""
    call_prefix: ClassVar[str] = "call_"
    base_path: ClassVar[str] = ""  # appended to the url to make the configured base_url

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        modes: tuple[str, ...] | list[str] = (),
        preset: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.modes = set(modes)
        self.preset = preset
        self.requests: list[RecordedRequest] = []
        self.rejections: list[tuple[int, str]] = []
        self._queue: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.scheme = "http"  # "https" once started with a TLS context

    # -- public interface

    def queue(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    def provider_config(self, **extra: Any) -> JSON:
        """The gateway's provider entry pointing at this fake."""
        config: JSON = {"type": self.protocol, "base_url": self.base_url, "api_key": self.api_key}
        if self.preset:
            config["preset"] = self.preset
        config.update(extra)
        return config

    def bodies(self, path_part: str = "") -> list[Any]:
        """Parsed bodies of recorded requests whose path contains `path_part`."""
        return [r.body for r in self.requests if path_part in r.path]

    async def start(self, host: str = "127.0.0.1", port: int = 0,
                    tls: ssl.SSLContext | None = None) -> Self:
        """Listen on `host`:`port` (0: any free one); over TLS with `tls`, a server context."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        self.scheme = "https" if tls is not None else "http"
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- hooks for the protocol modules

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def auth_error(self, request: web.Request) -> str | None:
        """None when the request carries the right credentials, else the message."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, param: str | None) -> JSON:
        raise NotImplementedError

    def view(self, body: JSON) -> Conversation:
        """What the brain sees in a request body (also handy for assertions: `tool_results`)."""
        raise NotImplementedError

    def frame(self, event: JSON) -> bytes:
        """One stream event (a dict) in the protocol's SSE framing."""
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def trailer(self) -> list[bytes]:
        """Frames after the last event (OpenAI Chat's `[DONE]`)."""
        return []

    # -- request handling shared by all protocols

    async def record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        rec = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            raw,
        )
        self.requests.append(rec)
        return rec

    def error(
        self,
        status: int,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self.rejections.append((status, message))
        return web.Response(
            status=status,
            body=orjson.dumps(self.error_body(status, message, param)),
            content_type="application/json",
            headers=headers,
        )

    async def admit(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        """Record, check auth and JSON; a Response means "answer this and stop"."""
        rec = await self.record(request)
        problem = self.auth_error(request)
        if problem is not None:
            return rec, self.error(401, problem)
        if not isinstance(rec.body, dict):
            return rec, self.error(400, "The request body is not valid JSON.")
        return rec, None

    def next_reply(self, conv: Conversation) -> Reply:
        return self._queue.popleft() if self._queue else brain(conv)

    async def answer(
        self, request: web.Request, reply: Reply, stream: bool, render_json: Any, render_events: Any
    ) -> web.StreamResponse:
        """Send `reply`: error, raw, JSON or stream. The render callables are only called when
        needed, so a raw or error reply never depends on the protocol renderer."""
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status >= 400 and isinstance(reply.raw, dict):
            # A provider-specific error body (e.g. with a `code`), sent with the status.
            return web.Response(
                status=reply.status,
                body=orjson.dumps(reply.raw),
                content_type="application/json",
                headers=reply.headers,
            )
        if reply.status >= 400:
            return self.error(
                reply.status, reply.error or f"Scripted error {reply.status}", headers=reply.headers
            )
        if reply.raw is not None:
            return await self._send_raw(request, reply, stream)
        if not stream:
            return web.Response(
                body=orjson.dumps(render_json()),
                content_type="application/json",
                headers=reply.headers,
            )
        frames = [self.frame(e) for e in render_events()] + self.trailer()
        return await self.send_events(request, reply, frames)

    async def send_events(
        self, request: web.Request, reply: Reply, frames: list[bytes]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            }
        )
        await resp.prepare(request)
        for index, chunk in enumerate(frames):
            if reply.cut_stream_after is not None and index >= reply.cut_stream_after:
                # Drop the connection mid-body: the client sees an incomplete chunked stream.
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(chunk)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        await resp.write_eof()
        return resp

    async def _send_raw(
        self, request: web.Request, reply: Reply, stream: bool
    ) -> web.StreamResponse:
        raw = reply.raw
        if isinstance(raw, str | bytes):
            data = raw.encode() if isinstance(raw, str) else raw
            if stream:
                return await self.send_events(request, reply, [data])
            return web.Response(body=data, content_type="application/json", headers=reply.headers)
        if stream and isinstance(raw, list):
            frames = [
                self.frame(e) if isinstance(e, dict) else (e.encode() if isinstance(e, str) else e)
                for e in raw
            ]
            return await self.send_events(request, reply, frames)
        return web.Response(
            body=orjson.dumps(raw), content_type="application/json", headers=reply.headers
        )

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return self.error(404, f"Unknown path {request.method} {request.path}")


def now() -> int:
    return int(time.time())
