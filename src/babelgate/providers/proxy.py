"""Reaching an upstream through a proxy: which proxy (a provider's `proxy:`, else the
environment as curl reads it), and the two handshakes that open a tunnel through one.

What this module promises:
- `proxy_from_env(url, env)` follows curl: `https_proxy`/`HTTPS_PROXY` for https URLs,
  `http_proxy`/`HTTP_PROXY` for http ones, `all_proxy`/`ALL_PROXY` for both, the lower-case
  name first; `no_proxy`/`NO_PROXY` lists hosts that go direct (`*`, host names matching
  themselves and their subdomains, a leading dot allowed, IP addresses and CIDR ranges, each
  optionally with `:port`). curl ignores upper-case HTTP_PROXY (a CGI program sees request
  headers under that name); a gateway is no CGI program, and the issue asks for it.
- `open_tunnel` connects to the proxy, asks it for a tunnel to host:port (HTTP CONNECT, or
  SOCKS5 with `socks5h://` leaving name resolution to the proxy and `socks5://` resolving
  here), starts TLS inside the tunnel when asked, and hands the transport to the caller's
  protocol. An `http://` proxy is always asked for a tunnel, for http upstreams too: one
  code path, and the request head stays the same as without a proxy.
- Decisions are made once per provider at start-up (the base URL does not change); nothing
  here runs per request, only per new connection.
- A proxy's user name and password never appear in `shown`, reprs or errors.

Why our own handshakes rather than a library (python-socks, aiohttp-socks): each is a few
dozen lines on the asyncio transport our client already uses, and those libraries bring
their own socket/stream layer that our protocol-based connections would have to adapt to.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast
from urllib.parse import unquote, urlsplit

SCHEMES = ("http", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 1080, "socks5": 1080, "socks5h": 1080}  # curl's default, for all
MAX_PROXY_HEAD = 16 << 10  # bytes of a CONNECT answer's head; proxies send a few hundred

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class ProxyError(ConnectionError):
    """The proxy refused or broke the tunnel; the message says which proxy and why."""


@dataclass(frozen=True, slots=True)
class Proxy:
    scheme: str  # one of SCHEMES
    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def shown(self) -> str:
        """The proxy as logs and /health show it: no user name or password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """A proxy URL (`http://`, `socks5://`, `socks5h://`, optional `user:pass@`; no scheme
    means http, as in curl). ValueError says what is wrong, without the password."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"proxy scheme {scheme!r} is not supported; use http://, socks5:// "
                         "or socks5h://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the proxy's port is not a number between 0 and 65535") from None
    if not parts.hostname:
        raise ValueError("the proxy URL names no host")
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme],
                 unquote(parts.username or ""), unquote(parts.password or ""))


def proxy_from_env(url: str, env: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment gives for `url`, or None (direct): see the module docstring.
    A malformed variable raises ValueError naming the variable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if bypassed(host, port, _first(env, "no_proxy", "NO_PROXY")):
        return None
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = env.get(name, "").strip()
        if value:
            try:
                return parse_proxy(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    return None


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name)
        if value is not None:
            return value
    return ""


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether `host`:`port` is in a NO_PROXY list (commas or spaces between entries)."""
    for entry in no_proxy.replace(",", " ").split():
        if _matches(host, port, entry.strip().lower()):
            return True
    return False


def _matches(host: str, port: int, entry: str) -> bool:
    if entry == "*":
        return True
    entry_host, entry_port = _split_port(entry)
    if entry_port is not None and entry_port != port:
        return False
    address = _address(host)
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry_host, strict=False)
        except ValueError:
            return False
    entry_host = entry_host.lstrip(".")
    return bool(entry_host) and (host == entry_host or host.endswith("." + entry_host))


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host[:port]`, `[v6][:port]`, or a bare IPv6 address/range (no port then)."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# ---------------------------------------------------------------------------- the tunnel


class _Handshake(asyncio.Protocol):
    """Reads a proxy's answers during the handshake; replaced by the caller's protocol once
    the tunnel is open."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool | None:
        self.ended = self.ended or ProxyError("the proxy closed the connection")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = self.ended or exc or ProxyError("the proxy closed the connection")
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _more(self) -> None:
        if self.ended is not None:
            raise self.ended
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self._more()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def until(self, mark: bytes, limit: int) -> bytes:
        while (end := self.buffer.find(mark)) < 0:
            if len(self.buffer) > limit:
                raise ProxyError("the proxy's answer is too long")
            await self._more()
        data = bytes(self.buffer[: end + len(mark)])
        del self.buffer[: end + len(mark)]
        return data

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def open_tunnel(
    proxy: Proxy,
    host: str,
    port: int,
    protocol_factory: Callable[[], _P],
    tls: ssl.SSLContext | None,
) -> _P:
    """A connection to host:port through `proxy`, TLS inside it when `tls` is given, carried
    by a new protocol from `protocol_factory` (whose `connection_made` has been called)."""
    loop = asyncio.get_running_loop()
    transport, handshake = await loop.create_connection(_Handshake, proxy.host, proxy.port)
    try:
        if proxy.scheme == "http":
            await _http_connect(handshake, proxy, host, port)
        else:
            await _socks5(handshake, proxy, host, port)
        if tls is not None:
            upgraded = await loop.start_tls(transport, handshake, tls, server_hostname=host)
            if upgraded is None:  # only when the loop has no TLS support at all
                raise ProxyError("TLS could not be started inside the tunnel")
            transport = upgraded
    except BaseException:
        transport.close()
        raise
    protocol = protocol_factory()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _http_connect(handshake: _Handshake, proxy: Proxy, host: str, port: int) -> None:
    target = _authority(host, port)
    # Header names as curl spells them: some proxies (pproxy) match them case-sensitively.
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.username or proxy.password:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        head += f"Proxy-Authorization: Basic {token}\r\n"
    handshake.write((head + "\r\n").encode("latin-1"))
    answer = await handshake.until(b"\r\n\r\n", MAX_PROXY_HEAD)
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProxyError(f"proxy {proxy.shown} answered CONNECT with something that is not "
                         "HTTP")
    status = int(fields[1])
    if status // 100 != 2:
        hint = "; check the user and password in the proxy URL" if status == 407 else ""
        raise ProxyError(f"proxy {proxy.shown} refused the tunnel to {target}: "
                         f"{status_line[len(fields[0]) + 1:][:100]}{hint}")


_SOCKS_REPLIES = {
    1: "general failure", 2: "connection not allowed by its rules",
    3: "network unreachable", 4: "host unreachable", 5: "connection refused",
    6: "TTL expired", 7: "command not supported", 8: "address type not supported",
}


async def _socks5(handshake: _Handshake, proxy: Proxy, host: str, port: int) -> None:
    """RFC 1928 CONNECT, with RFC 1929 user/password authentication when the URL has one."""
    login = bool(proxy.username or proxy.password)
    handshake.write(b"\x05\x02\x00\x02" if login else b"\x05\x01\x00")
    version, method = await handshake.exactly(2)
    if version != 5:
        raise ProxyError(f"proxy {proxy.shown} does not speak SOCKS5")
    if method == 2 and login:
        user, password = proxy.username.encode(), proxy.password.encode()
        handshake.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        _, status = await handshake.exactly(2)
        if status != 0:
            raise ProxyError(f"proxy {proxy.shown} refused the user name and password")
    elif method != 0:
        wanted = "a user name and password" if not login else "a method babelgate lacks"
        raise ProxyError(f"proxy {proxy.shown} asks for {wanted} (SOCKS5 method {method})")
    handshake.write(b"\x05\x01\x00" + await _socks_address(proxy, host, port))
    version, reply, _, kind = await handshake.exactly(4)
    if reply != 0:
        why = _SOCKS_REPLIES.get(reply, f"reply {reply}")
        raise ProxyError(f"proxy {proxy.shown} could not reach {_authority(host, port)}: "
                         f"{why}")
    length = {1: 4, 4: 16}.get(kind)
    if length is None:
        length = (await handshake.exactly(1))[0]
    await handshake.exactly(length + 2)  # the address the proxy bound: not needed


async def _socks_address(proxy: Proxy, host: str, port: int) -> bytes:
    """DST.ADDR and DST.PORT: the name itself for socks5h, an address resolved here for
    socks5 (as curl does)."""
    address = _address(host)
    if address is None and proxy.scheme == "socks5":
        loop = asyncio.get_running_loop()
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not found:
            raise ProxyError(f"cannot resolve {host}")
        address = ipaddress.ip_address(found[0][4][0])
    tail = port.to_bytes(2, "big")
    if address is None:
        name = host.encode("idna")
        return b"\x03" + bytes([len(name)]) + name + tail
    kind = b"\x01" if address.version == 4 else b"\x04"
    return kind + address.packed + tail
