"""Upstreams that answer 200 with something that is not an answer (an HTML page, a huge
non-JSON body, JSON cut short, JSON of the wrong shape, a gzip bomb): the client gets a 502 in
its own protocol's error format, never a 500, and the gateway keeps serving."""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI, Reply

from conftest import Stack

pytestmark = [pytest.mark.gateway, pytest.mark.asyncio(loop_scope="session")]

ANTHROPIC = {"content-type": "application/json", "x-api-key": "client-key",
             "anthropic-version": "2023-06-01"}
OPENAI = {"content-type": "application/json", "authorization": "Bearer client-key"}

# (client path, client model): each client protocol, translated and passed through.
CLIENTS = {
    "anthropic-to-openai": ("/v1/messages", "gpt-client"),
    "anthropic-pass-through": ("/v1/messages", "claude-client"),
    "openai-to-anthropic": ("/v1/chat/completions", "claude-client"),
    "openai-pass-through": ("/v1/chat/completions", "gpt-client"),
    "responses-to-openai": ("/v1/responses", "gpt-client"),
}
GARBAGE: dict[str, Any] = {
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ten-megabytes-not-json": b"<!-- " + b"x" * (10 << 20) + b" -->",
    "truncated-json": b'{"id": "msg_1", "type": "message", "content": [{"type": "te',
    "json-not-an-object": b'["a", "list"]',
}


def body(path: str, model: str, stream: bool) -> dict[str, Any]:
    if path == "/v1/responses":
        return {"model": model, "input": "Hi", "stream": stream, "store": False}
    return {"model": model, "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "Hi"}]}


async def post(stack: Stack, path: str, data: dict[str, Any]) -> tuple[int, bytes]:
    return await post_to(stack.gw.url, path, data)


def fake_for(stack: Stack, model: str) -> Any:
    return stack.oa if model == "gpt-client" else stack.an


def assert_error_in_format(path: str, raw: bytes, words: str) -> None:
    data = orjson.loads(raw)
    if path == "/v1/messages":
        assert data["type"] == "error", data
        message = data["error"]["message"]
    else:
        message = data["error"]["message"]
    assert words in message, message


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("client", list(CLIENTS))
async def test_a_200_that_is_not_json_is_a_502(
    fresh: Stack, client: str, garbage: str, stream: bool
) -> None:
    path, model = CLIENTS[client]
    # Sent as a whole body with a JSON content type, also to a stream request (some upstreams
    # answer streams so): nothing here is an event stream.
    fake_for(fresh, model).queue(Reply(raw=GARBAGE[garbage]))
    status, raw = await post(fresh, path, body(path, model, stream))
    assert status == 502, raw[:300]
    assert_error_in_format(path, raw, "upstream")
    assert len(raw) < 2000  # the client is told, not sent the garbage back


WRONG_SHAPES = {
    "gpt-client": [{"id": "x", "object": "chat.completion", "choices": "none"},
                   {"id": "x", "choices": [{"index": 0, "message": 5}]},
                   {"id": "x", "choices": [{"message": {"content": ["a"]}}], "usage": []}],
    "claude-client": [{"id": "x", "type": "message", "content": "none"},
                      {"id": "x", "type": "message", "content": [5], "usage": "many"},
                      {"id": "x", "type": "message", "content": [{"type": "text", "text": 3}]}],
}


@pytest.mark.parametrize("shape", [0, 1, 2])
@pytest.mark.parametrize("client", ["anthropic-to-openai", "openai-to-anthropic",
                                    "responses-to-openai"])
async def test_json_of_the_wrong_shape_translated_is_never_a_500(
    fresh: Stack, client: str, shape: int
) -> None:
    # The codecs read an answer's fields leniently (a field of the wrong type reads as
    # absent: the third shape is an answer), but an answer whose main list is not a list of
    # objects, or whose message is not an object, is no answer: a 502, never an empty 200.
    path, model = CLIENTS[client]
    fake_for(fresh, model).queue(Reply(raw=WRONG_SHAPES[model][shape]))
    status, raw = await post(fresh, path, body(path, model, False))
    if shape < 2:
        assert status == 502, raw[:300]
        assert_error_in_format(path, raw, "shape its protocol does not define")
    else:
        assert status == 200, raw[:300]


@pytest.mark.parametrize("shape", [0, 1, 2])
@pytest.mark.parametrize("client", ["anthropic-pass-through", "openai-pass-through"])
async def test_json_of_the_wrong_shape_passed_through_is_never_a_500(
    fresh: Stack, client: str, shape: int
) -> None:
    # Passed through, the upstream's body is the answer as it is; reading its usage for the
    # log must not turn it into a 500.
    path, model = CLIENTS[client]
    fake_for(fresh, model).queue(Reply(raw=WRONG_SHAPES[model][shape]))
    status, raw = await post(fresh, path, body(path, model, False))
    assert status == 200, raw[:300]
    assert orjson.loads(raw) == WRONG_SHAPES[model][shape]


BAD_EVENTS = {
    "gpt-client": [b'data: {"id": "x", "choices": "none"}\n\n', b"data: [DONE]\n\n"],
    "claude-client": [b'event: message_start\ndata: {"type": "message_start", '
                      b'"message": "none"}\n\n'],
}


@pytest.mark.parametrize("client", ["anthropic-to-openai", "openai-to-anthropic",
                                    "responses-to-openai"])
async def test_a_stream_of_wrongly_shaped_events_is_never_an_internal_error(
    fresh: Stack, client: str
) -> None:
    path, model = CLIENTS[client]
    fake_for(fresh, model).queue(Reply(raw=BAD_EVENTS[model]))
    status, raw = await post(fresh, path, body(path, model, True))
    if status == 200:  # read leniently as an empty answer, or begun and ended by an error
        assert b"internal gateway error" not in raw, raw[:500]
    else:
        assert status == 502, raw[:300]
        assert_error_in_format(path, raw, "upstream")


# ---------------------------------------------------------------- a gzip bomb


@functools.cache  # compressing 400 MB takes a second or two: once per session
def gzip_bomb(size: int) -> bytes:
    """`size` bytes of JSON-looking padding, gzipped to about a thousandth of it."""
    compressor = zlib.compressobj(9, wbits=31)
    parts = [compressor.compress(b'{"pad": "')]
    block = b" " * (1 << 20)
    parts += [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.compress(b'"}') + compressor.flush()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = int(next(line.split()[1] for line in status.splitlines()
                  if line.startswith("VmHWM:")))
    return kb / 1024


BOMB_WAYS = {
    "json": (False, lambda bomb: bomb, 0.0),
    "stream-in-one-write": (True, lambda bomb: bomb, 0.0),
    # In small writes, each inflating to less than the limit: a decoder would keep them all,
    # waiting for the end of an event that never comes.
    "stream-trickled": (True, lambda bomb: [bomb[i:i + 8192] for i in range(0, len(bomb), 8192)],
                        0.002),
}


@pytest.mark.parametrize("way", list(BOMB_WAYS))
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"],
                         ids=["translated", "pass-through"])
async def test_a_gzip_bomb_is_cut_and_the_gateway_stays_small(
    gateway_factory: GatewayFactory, path: str, way: str
) -> None:
    stream, shape, delay = BOMB_WAYS[way]
    bomb = gzip_bomb(400 << 20)  # ~400 KB that inflate to 400 MB
    assert len(bomb) < 600_000
    async with FakeOpenAI() as fake:
        # A gateway of its own: its peak memory is this test's alone.
        gw = await gateway_factory(fake, model="gpt-up", routes={"bomb": "up/gpt-up"})
        before = peak_rss_mb(gw.process.pid)
        for _ in range(2):
            fake.queue(Reply(raw=shape(bomb), headers={"content-encoding": "gzip"},
                             chunk_delay=delay))
            status, raw = await post_to(gw.url, path, body(path, "bomb", stream))
            if status == 200:  # the stream had begun: it ends with the error
                assert stream and b"larger than babelgate accepts" in raw, raw[:300]
            else:
                assert status == 502, raw[:300]
                assert_error_in_format(path, raw, "larger than babelgate accepts")
        peak = peak_rss_mb(gw.process.pid)
        assert len(fake.requests) == 2
        # Still serving.
        status, raw = await post_to(gw.url, path, body(path, "bomb", stream))
        assert status == 200 and b"Fake reply." in raw
    assert peak < 300, f"peak {peak:.0f} MB (at start {before:.0f} MB)"


async def post_to(url: str, path: str, data: dict[str, Any]) -> tuple[int, bytes]:
    headers = ANTHROPIC if path == "/v1/messages" else OPENAI
    async with aiohttp.ClientSession() as session, session.post(
        url + path, data=orjson.dumps(data), headers=headers
    ) as resp:
        return resp.status, await resp.read()


def _deep(levels: int) -> str:
    """JSON text of objects in lists, `levels` of each (orjson writes only 254 levels)."""
    return '{"a": [' * levels + '"bottom"' + "]}" * levels


# Tool arguments nested 300 levels (150 objects in 150 lists): orjson reads that much (1,024
# levels), and writing the client's answer around it cannot (254 levels). Sent as bytes.
DEEP_ANSWERS = {
    "gpt-client": (
        '{"id": "x", "object": "chat.completion", "model": "m", "choices": [{"index": 0, '
        '"finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, '
        '"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Read", '
        '"arguments": ' + orjson.dumps(_deep(150)).decode() + "}}]}}]}").encode(),
    "claude-client": (
        '{"id": "x", "type": "message", "role": "assistant", "model": "m", '
        '"stop_reason": "tool_use", "content": [{"type": "tool_use", "id": "toolu_1", '
        '"name": "Read", "input": ' + _deep(150) + "}]}").encode(),
}


@pytest.mark.parametrize("client", ["anthropic-to-openai", "openai-to-anthropic"])
async def test_an_answer_nested_too_deep_to_translate_is_the_upstreams_502(
    fresh: Stack, client: str
) -> None:
    # The client's request is fine: its 400 ("request body nests too deep") would blame it.
    path, model = CLIENTS[client]
    fake_for(fresh, model).queue(Reply(raw=DEEP_ANSWERS[model]))
    status, raw = await post(fresh, path, body(path, model, False))
    assert status == 502, raw[:300]
    assert_error_in_format(path, raw, "nested too deep")
    assert b"request body" not in raw
