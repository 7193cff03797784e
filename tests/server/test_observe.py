"""The daily log file, the stderr log and /metrics of a real gateway, over real HTTP: whole,
streamed and failed requests and requests refused before routing each leave their line, no
key reaches any line, and the counters move by what the requests used."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.core import Usage

from conftest import Stack

pytestmark = [pytest.mark.gateway]

PROVIDER_KEY = "sk-oa-OBSERVE-SECRET-7e7e"
ANTHROPIC_KEY = "sk-ant-OBSERVE-SECRET-8f8f"
CLIENT_KEY = "client-OBSERVE-SECRET-9a9a"
ROUTES = {"claude-x": "oa/gpt-up", "gpt-x": "oa/gpt-up", "claude-pass": "an/claude-up",
          "fallback-x": ["oa/gpt-up", "an/claude-up"]}
HEADERS = {"content-type": "application/json", "x-api-key": CLIENT_KEY,
           "anthropic-version": "2023-06-01", "user-agent": "claude-cli/2.0.0 (external)"}


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic]]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as oa, \
            FakeAnthropic(api_key=ANTHROPIC_KEY) as an:
        yield oa, an


async def start(factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic],
                logs: dict[str, Any], metrics: bool = True) -> Gateway:
    oa, an = upstreams
    return await factory({"oa": oa, "an": an}, routes=ROUTES,  # type: ignore[arg-type]
                         extra={"logs": logs, "metrics": metrics})


def message(model: str, text: str = "Hi", stream: bool = False) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": 100, "stream": stream,
                         "messages": [{"role": "user", "content": text}]})


async def post(gw: Gateway, body: bytes, path: str = "/v1/messages",
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST `body` with the client's HEADERS, and `headers` over them."""
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + path, data=body, headers={**HEADERS, **(headers or {})}) as resp:
        return resp.status, await resp.read()


async def lines_in(directory: Path, count: int, timeout: float = 5.0) -> list[str]:
    """Today's file's lines, once it has `count` of them (lines are written in batches)."""
    deadline = time.monotonic() + timeout
    path = directory / f"babelgate-{time.strftime('%Y-%m-%d')}.log"
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.05)


def field(line: str, name: str) -> str:
    for part in line.split(" | "):
        if part.startswith(name + "="):
            return part[len(name) + 1:]
    raise AssertionError(f"no {name}= in {line}")


async def scrape(gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


async def test_daily_log_lines_for_whole_streamed_failed_and_refused_requests(
        gateway_factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic],
        tmp_path: Path) -> None:
    oa, _ = upstreams
    logs = tmp_path / "logs"
    gw = await start(gateway_factory, upstreams, {"dir": str(logs)}, metrics=False)
    oa.queue(Reply(text="whole", usage=Usage(input_tokens=10, output_tokens=20)))
    assert (await post(gw, message("claude-x")))[0] == 200
    oa.queue(Reply(text="streamed", usage=Usage(input_tokens=7, output_tokens=3)))
    status, body = await post(gw, message("claude-x", stream=True))
    assert status == 200 and b"message_stop" in body
    oa.queue(Reply(status=400, error=f"bad request, key {PROVIDER_KEY}"))
    assert (await post(gw, message("claude-x")))[0] == 400
    assert (await post(gw, message("no-such-model")))[0] == 404
    assert (await post(gw, b"{not json"))[0] == 400
    lines = await lines_in(logs, 5)
    assert len(lines) == 5, lines
    whole, streamed, failed, unknown, bad_json = lines
    assert " | INFO | REQUEST | model=claude-x | target=oa/gpt-up | input_tokens=10 | "\
           "output_tokens=20 | total_tokens=30 | cost=unknown | ms=" in whole
    assert field(whole, "status") == "success" and field(whole, "client") == "claude-code"
    assert field(whole, "endpoint") == "/v1/messages" and field(whole, "stream") == "false"
    assert field(whole, "route") == "claude-x"
    assert field(streamed, "stream") == "true" and field(streamed, "output_tokens") == "3"
    assert int(field(streamed, "ttft_ms")) >= 0
    assert " | WARNING | REQUEST | " in failed
    assert field(failed, "status") == "error" and field(failed, "error") == "invalid_request"
    assert field(failed, "http_status") == "400"
    assert field(unknown, "target") == "-" and field(unknown, "error") == "not_found"
    assert field(unknown, "model") == "no-such-model"
    assert field(bad_json, "http_status") == "400" and field(bad_json, "model") == ""
    ids = [field(line, "request_id") for line in lines]
    assert len(set(ids)) == 5
    # The stderr log: endpoint, status and request id; the upstream's error at WARNING; the
    # refused requests too.
    await asyncio.sleep(0.3)
    err = gw.log()
    assert "INFO babelgate /v1/messages model=claude-x target=oa/gpt-up rule=- " \
           "route=claude-x in=10 cache_read=0 out=20 status=200 ms=" in err
    assert f"request_id={ids[0]}" in err
    assert "WARNING babelgate /v1/messages model=claude-x target=oa/gpt-up rule=- " \
           "route=claude-x error=invalid_request status=400 ms=" in err
    assert "model=no-such-model status=404 error=not_found ms=" in err
    assert f"request_id={ids[4]}" in err
    for text in (*lines, err):
        assert PROVIDER_KEY not in text and CLIENT_KEY not in text and "SECRET" not in text


async def test_json_lines_and_bodies_with_keys_redacted(
        gateway_factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic],
        tmp_path: Path) -> None:
    oa, _ = upstreams
    logs = tmp_path / "logs"
    gw = await start(gateway_factory, upstreams,
                     {"dir": str(logs), "format": "json", "bodies": True}, metrics=False)
    oa.queue(Reply(text=f"the key was {PROVIDER_KEY}",
                   usage=Usage(input_tokens=5, output_tokens=6)))
    leaky = f"my keys: {PROVIDER_KEY} {ANTHROPIC_KEY} and {CLIENT_KEY}"
    assert (await post(gw, message("claude-x", leaky)))[0] == 200
    lines = [orjson.loads(line) for line in await lines_in(logs, 3)]
    events = [(line["event"], line.get("what")) for line in lines]
    assert sorted(events, key=str) == sorted(
        [("BODY", "request"), ("REQUEST", None), ("BODY", "response")], key=str)
    record = next(line for line in lines if line["event"] == "REQUEST")
    assert record["input_tokens"] == 5 and record["output_tokens"] == 6
    assert record["cost"] is None and record["target"] == "oa/gpt-up"
    bodies = [line["body"] for line in lines if line["event"] == "BODY"]
    assert any("my keys: [redacted] [redacted] and [redacted]" in b for b in bodies)
    assert any("the key was [redacted]" in b for b in bodies)
    text = (logs / f"babelgate-{time.strftime('%Y-%m-%d')}.log").read_text()
    assert "SECRET" not in text


async def test_metrics_count_what_the_requests_used(
        gateway_factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic],
        tmp_path: Path) -> None:
    oa, an = upstreams
    gw = await start(gateway_factory, upstreams, {})
    before = await scrape(gw)
    labels = {"protocol": "anthropic", "provider": "oa", "model": "gpt-up"}
    for _ in range(3):
        oa.queue(Reply(text="ok", usage=Usage(input_tokens=10, output_tokens=20)))
        assert (await post(gw, message("claude-x")))[0] == 200
    oa.queue(Reply(text="streamed", usage=Usage(input_tokens=7, output_tokens=3)))
    assert (await post(gw, message("claude-x", stream=True)))[0] == 200
    # A fallback: the first target fails (a 500 is worth another try), the second answers.
    oa.queue(Reply(status=500, error="down"))
    an.queue(Reply(text="from anthropic", usage=Usage(input_tokens=4, output_tokens=2)))
    assert (await post(gw, message("fallback-x")))[0] == 200
    assert (await post(gw, message("no-such-model")))[0] == 404
    after = await scrape(gw)

    def moved(name: str, **extra: str) -> float:
        return value(after, name, **extra) - value(before, name, **extra)

    assert moved("babelgate_requests_total", **labels, status="200") == 4
    assert moved("babelgate_requests_total", provider="an", model="claude-up",
                 status="200") == 1
    assert moved("babelgate_requests_total", provider="oa", status="500") == 0  # not final
    assert moved("babelgate_requests_total", provider="none", status="404") == 1
    assert moved("babelgate_upstream_errors_total", provider="oa", kind="api_error") == 1
    assert moved("babelgate_tokens_total", provider="oa", kind="input") == 37
    assert moved("babelgate_tokens_total", provider="oa", kind="output") == 63
    assert moved("babelgate_tokens_total", provider="an", kind="output") == 2
    assert moved("babelgate_request_duration_seconds_count", provider="oa") == 4
    assert moved("babelgate_time_to_first_token_seconds_count", provider="oa") == 1
    assert moved("babelgate_unpriced_attempts_total", provider="oa") == 4
    assert value(after, "babelgate_open_streams") == 0
    assert ("process_resident_memory_bytes", ()) in after


async def test_open_streams_are_counted_while_open(
        gateway_factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, _ = upstreams
    gw = await start(gateway_factory, upstreams, {})
    oa.queue(Reply(text="slow " * 10, chunk_delay=0.3))
    task = asyncio.create_task(post(gw, message("claude-x", stream=True)))
    deadline = time.monotonic() + 5
    seen = 0.0
    while time.monotonic() < deadline and not seen:
        seen = value(await scrape(gw), "babelgate_open_streams")
        await asyncio.sleep(0.05)
    assert seen == 1
    assert (await task)[0] == 200
    assert value(await scrape(gw), "babelgate_open_streams") == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_metrics_off_is_a_404_in_openai_shape(fresh: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            fresh.gw.url + "/metrics") as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"].startswith("no endpoint GET /metrics")


async def test_records_reach_the_file_and_metrics_after_a_reload(
        gateway_factory: GatewayFactory, upstreams: tuple[FakeOpenAI, FakeAnthropic],
        tmp_path: Path) -> None:
    oa, _ = upstreams
    logs = tmp_path / "logs"
    gw = await start(gateway_factory, upstreams, {"dir": str(logs)})
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/admin/reload") as resp:
        assert resp.status == 200, await resp.text()
    oa.queue(Reply(text="after", usage=Usage(input_tokens=2, output_tokens=1)))
    assert (await post(gw, message("claude-x")))[0] == 200
    lines = await lines_in(logs, 1)
    assert len(lines) == 1 and field(lines[0], "output_tokens") == "1"
    after = await scrape(gw)
    assert value(after, "babelgate_requests_total", provider="oa", status="200") == 1
