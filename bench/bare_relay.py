"""The yardstick: the fastest a Python gateway can be (see /work/shared/bench/README.md).

The project's shared bare_relay.py, reformatted only (same calls, same behaviour) so that the
benchmark runs on a machine without /work/shared: an aiohttp server on uvloop that forwards
the request bytes to one upstream with a pooled client and streams the answer back, parsing
nothing.

    python bench/bare_relay.py PORT UPSTREAM_URL
"""

import sys

import aiohttp
import uvloop
from aiohttp import web

UP = sys.argv[2]


async def on_start(app: web.Application) -> None:
    app["s"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    )


async def relay(req: web.Request) -> web.StreamResponse:
    body = await req.read()
    headers = {"content-type": "application/json"}
    async with req.app["s"].post(UP, data=body, headers=headers) as r:
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            resp = web.StreamResponse(
                status=r.status, headers={"content-type": "text/event-stream"}
            )
            await resp.prepare(req)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(status=r.status, body=await r.read(), content_type="application/json")


app = web.Application()
app.on_startup.append(on_start)
app.router.add_post("/{tail:.*}", relay)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
