"""The one HTTP client every provider shares, and the map from transport failures to
GatewayError.

aiohttp's pooled client, measured against httpx under the load a gateway sees
(bench/http_clients.py: 45 KB POSTs, 32 at a time, one core, uvloop): aiohttp 7,400-8,400
req/s, httpx 0.28 340-450 req/s. It is also the bare-relay yardstick's client, so the benchmark
compares our own work. One ClientSession per process keeps connections to each upstream alive
between requests. Transport exceptions are mapped once, here, from a table.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

import aiohttp

from babelgate.canonical import ErrorKind, GatewayError

# Most specific first: isinstance checks run in order.
_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], ErrorKind, str], ...] = (
    (aiohttp.ServerTimeoutError, "timeout", "the upstream did not answer in time"),
    (asyncio.TimeoutError, "timeout", "the upstream did not answer in time"),
    (aiohttp.ClientConnectorError, "connection", "could not connect to the upstream"),
    (aiohttp.ServerDisconnectedError, "connection", "the upstream closed the connection"),
    (aiohttp.ClientPayloadError, "connection", "the upstream's response was cut off"),
    (aiohttp.ClientError, "connection", "the upstream request failed"),
    (OSError, "connection", "the upstream request failed"),
)


def transport_error(exc: BaseException, upstream: str) -> GatewayError:
    """A GatewayError for a transport-level failure talking to `upstream`."""
    for exc_type, kind, message in _TRANSPORT_ERRORS:
        if isinstance(exc, exc_type):
            detail = str(exc).strip()
            text = f"{message} ({upstream}): {detail}" if detail else f"{message} ({upstream})"
            return GatewayError(kind, text, upstream=upstream)
    raise exc


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream response. Call `close()` (or read it to the end) when done."""

    status: int
    headers: Mapping[str, str]
    _response: aiohttp.ClientResponse
    upstream: str

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(exc, self.upstream) from exc
        finally:
            self._response.release()

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, chunk by chunk, without buffering."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(exc, self.upstream) from exc
        finally:
            self._response.release()

    def close(self) -> None:
        self._response.close()


@functools.lru_cache(maxsize=64)  # one per configured timeout; ClientTimeout is immutable
def _timeouts(timeout: float) -> aiohttp.ClientTimeout:
    """`timeout` bounds silence (connecting, waiting for the answer, any gap between two
    reads), never the whole exchange: an agent's stream may rightly last many minutes."""
    return aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 15), sock_read=timeout)


class HttpClient:
    """A pooled HTTP client; create it inside the running event loop."""

    def __init__(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60),
            # Bodies are passed through as bytes; no cookie jar, no automatic decompression
            # of the request side.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
        )

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float,
        upstream: str,
    ) -> UpstreamResponse:
        """Send a POST and return once the status line and headers are in."""
        try:
            response = await self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=_timeouts(timeout),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(exc, upstream) from exc
        return UpstreamResponse(response.status, response.headers, response, upstream)

    async def close(self) -> None:
        await self._session.close()
