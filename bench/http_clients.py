"""Which pooled HTTP client for upstream calls: babelgate's own, aiohttp and httpx, same load.

    python bench/http_clients.py URL [N] [CONCURRENCY]

POSTs the Claude Code body (built by bench/bodies.py) N times (default 6000), CONCURRENCY at
a time (default 32), with each client on uvloop, and prints requests per second for each
(babelgate's own is src/babelgate/providers/http.py). Point URL at the canned nginx upstream
of bench/nginx.conf (the JSON port), pin this process to one core (`taskset -c 1`), nginx to
the other. httpx is not a
dependency of babelgate: install it into the environment that runs this (`pip install httpx`);
a client that is not installed is reported as skipped. Loopback only; bounded by N.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bodies  # bench/ is not a package: imported by path

HEADERS = {"content-type": "application/json", "authorization": "Bearer k"}
WARM_UP = 200


async def drive(one: Callable[[], Awaitable[None]], count: int, concurrency: int) -> float:
    for _ in range(WARM_UP):
        await one()
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def with_aiohttp(url: str, body: bytes, count: int, concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with session.post(url, data=body, headers=HEADERS) as response:
                await response.read()

        return await drive(one, count, concurrency)


async def with_babelgate(url: str, body: bytes, count: int, concurrency: int) -> float:
    from babelgate.providers.http import HttpClient

    client = HttpClient()

    async def one() -> None:
        response = await client.post(url, body, HEADERS, timeout=60, upstream="bench")
        await response.read()

    try:
        return await drive(one, count, concurrency)
    finally:
        await client.close()


async def with_httpx(url: str, body: bytes, count: int, concurrency: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one() -> None:
            response = await client.post(url, content=body, headers=HEADERS)
            response.read()

        return await drive(one, count, concurrency)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: http_clients.py URL [N] [CONCURRENCY]")
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    body = orjson.dumps(bodies.claude_code(False))
    uvloop.install()
    clients = (("babelgate", with_babelgate), ("aiohttp", with_aiohttp), ("httpx", with_httpx))
    for name, run in clients:
        try:
            rate = asyncio.run(run(url, body, count, concurrency))
        except ImportError:
            print(f"{name}: skipped (not installed)")
            continue
        print(f"{name}: {rate:,.0f} req/s")


if __name__ == "__main__":
    main()
