"""The gateway's edge as an attacker meets it: the real gateway process, under our own
server and under the ASGI adapter (`each_server`), spoken to through raw sockets, so that
what goes over the wire is what the test reads."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote, urlsplit

import orjson
import pytest
from tests.fakes import Reply

from conftest import Stack, last

pytestmark = [pytest.mark.gateway, pytest.mark.each_server,
              pytest.mark.asyncio(loop_scope="session")]


async def raw_exchange(url: str, data: bytes) -> bytes:
    """Sends `data` on a fresh connection and returns everything until the server closes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def post_bytes(path: str, body: dict[str, object]) -> bytes:
    raw = orjson.dumps(body)
    return (f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer client-key\r\nconnection: close\r\n"
            f"content-length: {len(raw)}\r\n\r\n").encode() + raw


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_name_cannot_add_response_headers(fresh: Stack, stream: bool) -> None:
    """`provider/anything` routes straight to the provider with the client's own model name,
    which the gateway names in `x-babelgate-target`: its line breaks must not split the
    answer."""
    model = "gpt-up\r\nSet-Cookie: s=evil\r\n\r\nHTTP/1.1 200 OK"
    fresh.oa.queue(Reply(text="fine"))
    wire = await raw_exchange(fresh.gw.url, post_bytes("/v1/chat/completions", {
        "model": f"oa/{model}", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }))
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    lines = head.split(b"\r\n")[1:]
    names = [line.partition(b":")[0].lower() for line in lines]
    assert b"set-cookie" not in names
    for line in lines:  # every line a header of ours: nothing smuggled in between
        assert re.fullmatch(rb"[a-z-]+: [!-~][ -~]*", line), line
    (target,) = [line.partition(b": ")[2] for line in lines
                 if line.lower().startswith(b"x-babelgate-target:")]
    assert re.fullmatch(rb"[ -~]+", target), target
    assert unquote(target.decode()) == f"oa/{model}"
    assert last(fresh.oa).body["model"] == model  # the upstream still got the name as sent
    assert b"fine" in body
